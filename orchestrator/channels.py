"""Mailboxes and the one request/reply helper every actor uses.

- `open_mailbox(size)` opens a bounded channel pair; the size is the documented buffer of an
  edge, never infinite (the router ↔ chat control edge opens its own with ``math.inf``).
- `call(send_to, make_request)` is the request/reply dance: a one-shot reply channel of size 1
  goes inside the request; the responder answers with `reply_nowait`; a responder that dies
  closes the channel and the caller gets `ResponderGone` at once instead of a timeout.
- `try_send` is the shedding send for edges that must never block (router → chat): it says
  whether the message went in, and counts what was shed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final, Generic, TypeVar, final

import trio

from orchestrator.errors import OrchestratorError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ResponderGone", "ShedCounter", "call", "open_mailbox", "reply_nowait", "try_send"]

logger: Final = logging.getLogger(__name__)

T = TypeVar("T")
RequestT = TypeVar("RequestT")
ReplyT = TypeVar("ReplyT")


@final
class ResponderGone(OrchestratorError):
    """The responder closed the reply channel without answering (it crashed or was stopped)."""


@final
class open_mailbox(tuple["trio.MemorySendChannel[T]", "trio.MemoryReceiveChannel[T]"]):
    """Open a bounded mailbox of `size` messages (0 = rendezvous): ``open_mailbox[Msg](8)``.

    A function in spirit, spelled as a class (like `trio.open_memory_channel`) so that the
    message type can be given in brackets.

    Raises:
        ValueError: `size` is negative.
    """

    def __new__(  # type: ignore[misc]  # returns the channel pair, not an instance
        cls, size: int
    ) -> tuple[trio.MemorySendChannel[T], trio.MemoryReceiveChannel[T]]:
        if size < 0:
            raise ValueError(f"mailbox size must be >= 0, got {size}")
        return trio.open_memory_channel[T](size)


async def call(
    send_to: trio.MemorySendChannel[RequestT],
    make_request: Callable[[trio.MemorySendChannel[ReplyT]], RequestT],
) -> ReplyT:
    """Send the request built by `make_request(reply_to)` and wait for its single reply.

    The wait is bounded by the caller's cancel scope only. Cancelling the caller closes the
    reply channel; the responder's `reply_nowait` then does nothing.

    Raises:
        ResponderGone: the reply channel closed without a reply.
        trio.BrokenResourceError: nobody reads `send_to` any more.
    """
    reply_send, reply_receive = trio.open_memory_channel[ReplyT](1)
    with reply_receive:
        with reply_send:
            request = make_request(reply_send.clone())
        await send_to.send(request)
        try:
            return await reply_receive.receive()
        except trio.EndOfChannel:
            raise ResponderGone("the responder closed the reply channel unanswered") from None


def reply_nowait(reply_to: trio.MemorySendChannel[T], reply: T) -> bool:
    """Answer a request; returns False if the requester is gone (cancelled or gave up).

    Never blocks: the reply channel has room for exactly one answer.
    """
    try:
        reply_to.send_nowait(reply)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    except trio.WouldBlock:
        logger.error("a reply channel was full: the request was answered twice")
        return False
    return True


@final
class ShedCounter(Generic[T]):
    """Counts messages a never-blocking edge had to shed, for ``statistics()``."""

    def __init__(self) -> None:
        self.shed = 0


def try_send(channel: trio.MemorySendChannel[T], message: T, counter: ShedCounter[T]) -> bool:
    """``send_nowait`` that returns False (and counts) instead of raising when full.

    Raises:
        trio.BrokenResourceError: the receiver is gone (the caller decides what that means).
    """
    try:
        channel.send_nowait(message)
    except trio.WouldBlock:
        counter.shed += 1
        return False
    return True
