"""The request/reply helper and the shedding send."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
import pytest
import trio
import trio.testing

from orchestrator.channels import (
    ResponderGone,
    ShedCounter,
    call,
    open_mailbox,
    reply_nowait,
    try_send,
)

if TYPE_CHECKING:
    from collections.abc import Callable


class Ask(msgspec.Struct, frozen=True):
    question: str
    reply_to: trio.MemorySendChannel[str]


def asking(question: str) -> Callable[[trio.MemorySendChannel[str]], Ask]:
    """A typed request factory (a bare lambda would leave the reply type unknown)."""

    def make(reply_to: trio.MemorySendChannel[str]) -> Ask:
        return Ask(question, reply_to)

    return make


async def test_call_returns_the_reply(autojump_clock: trio.testing.MockClock) -> None:
    send, receive = open_mailbox[Ask](0)

    async def responder() -> None:
        with receive:
            async for ask in receive:
                with ask.reply_to:
                    reply_nowait(ask.reply_to, ask.question.upper())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(responder)
        with send:
            answer = await call(send, asking("hi"))
    assert answer == "HI"


async def test_responder_crash_gives_responder_gone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    send, receive = open_mailbox[Ask](1)

    async def crashing_responder() -> None:
        ask = await receive.receive()
        with ask.reply_to:
            raise RuntimeError("worker died")

    async def supervised_responder() -> None:
        # Stands in for a supervisor: the crash is contained, the reply channel closed.
        with pytest.raises(RuntimeError, match="worker died"):
            await crashing_responder()

    outcome: list[str] = []

    async def caller() -> None:
        try:
            await call(send, asking("q"))
        except ResponderGone:
            outcome.append("responder gone")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller)
        nursery.start_soon(supervised_responder)
    assert outcome == ["responder gone"]


async def test_reply_to_a_cancelled_caller_is_ignored(
    autojump_clock: trio.testing.MockClock,
) -> None:
    send, receive = open_mailbox[Ask](1)
    with trio.move_on_after(1):
        await call(send, asking("q"))
    ask = receive.receive_nowait()
    assert reply_nowait(ask.reply_to, "late") is False


def test_try_send_sheds_and_counts() -> None:
    send, receive = open_mailbox[int](2)
    counter = ShedCounter[int]()
    assert [try_send(send, n, counter) for n in range(4)] == [True, True, False, False]
    assert counter.shed == 2
    assert receive.receive_nowait() == 0


def test_negative_mailbox_is_rejected() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        open_mailbox[int](-1)
