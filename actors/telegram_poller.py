"""The poller: getUpdates long poll → the router, exactly once from the user's view.

Updates are handled in ``update_id`` order. Each is decoded on its own (one that does not
decode is logged, traced and skipped without holding back the rest), checked against the
`UpdateLedger` (a redelivered update is skipped) and handed to the router with a ``handled``
event. The chat sets it once the message is in its session file (the router, for what it
answers itself); only then is the update recorded in the ledger, and the ledger persisted
once per batch. The offset that confirms a batch at Telegram advances only after that, so a
SIGKILL at any point leaves every update either in a session file or at Telegram, never in
memory only. The other window (saved by the chat, ledger not yet written) is closed by the
chat: its session file keeps the update ids of its latest prompts (`actors.chat`).

A chat that does not take an update within `HANDLED_WAIT` (it hangs) does not stop polling:
the batch is then confirmed anyway, as if taken. At a stop the poller learns, within
`STOP_GRACE`, which of the updates handed off were taken, and records those.

Faults never crash the loop, except a bad token:

- 5xx, HTML or malformed bodies, timeouts, connection errors → exponential backoff with
  jitter (`BACKOFF_INITIAL` up to `BACKOFF_MAX`), offset unchanged; logged at once, then
  once a minute while it lasts, and its end once (`orchestrator.outage`);
- 429 → wait ``retry_after``;
- 409 (another poller or a webhook) → an error line naming the cause (logged as an outage
  is), then backoff;
- 401 → `TelegramUnauthorized` propagates: the bot stops with a "bad token" message.

A message sent while the bot could not fetch updates (it was down, or cut off from Telegram)
that waited there longer than ``sessions.stale_after`` is handed over marked `late`
(`InboundMessage.late`): its chat offers it with a button instead of running it
(`actors.chat_late`), since what was asked hours ago may no longer be wanted. "Sent while
the bot could not fetch it" means after the moment the bot last had every update
(`UpdateLedger.caught_up`, kept across restarts); a message from before that moment came late
for another reason and runs as usual, which also keeps a fake Telegram's fixed or zero
``date`` from counting as late. Telegram's ``date`` is compared with this machine's clock: a
clock that is off by minutes shifts the line by as much.

A disk that refuses the ledger (full, read-only, over quota) does not stop polling either:
the ledger stays correct in memory, so nothing is handled twice while the process lives, and
the offset still confirms each batch once the chats took it, so Telegram does not redeliver
it after a restart. What is lost is the guard for the one window in between: updates taken
but not yet confirmed when the process dies come again on the next start (a prompt among
them is still recognised by its chat; a command runs again). That is the
price of serving on; the alternative (stop acknowledging, or stop) would stop every chat.
The failure is logged at once and then at most once a minute (`orchestrator.disk.DiskTrouble`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import msgspec
import trio

from orchestrator import disk
from orchestrator.errors import (
    TelegramBadRequest,
    TelegramConflict,
    TelegramRetryAfter,
    TelegramTransientError,
)
from orchestrator.messages import InboundCallback, InboundMessage, TraceRecord
from orchestrator.outage import Outage, Recovery
from orchestrator.supervision import backoff_delay
from orchestrator.wire.telegram import decode_update, decode_update_id
from orchestrator.wire.telegram_to_router import to_router_message
from orchestrator.words import plural

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Collection

    from orchestrator.messages import RouterMsg
    from orchestrator.ports import TelegramApi, TraceEmit
    from orchestrator.update_ledger import UpdateLedger

__all__ = ["ALLOWED_UPDATES", "BACKOFF_INITIAL", "BACKOFF_MAX", "run"]

logger: Final = logging.getLogger(__name__)

ALLOWED_UPDATES: Final = ("message", "edited_message", "callback_query", "my_chat_member")

BACKOFF_INITIAL: Final = 1.0
"""Seconds before the first retry after a network or server error."""

BACKOFF_MAX: Final = 10.0
"""Cap on the retry delay: a long outage is retried every 5 to 10 s, so the bot answers again
within seconds once Telegram or the network is back (a failed getUpdates costs nothing)."""

PREVIEW_CHARS: Final = 200

HANDLED_WAIT: Final = 30.0
"""Seconds the poller waits for the chats to take a batch before confirming it anyway (a
chat that hangs must not stop every other chat's updates)."""

STOP_GRACE: Final = 2.0
"""Seconds, at a stop, to learn which updates already handed off the chats took."""


async def run(
    api: TelegramApi,
    out: trio.MemorySendChannel[RouterMsg],
    *,
    ledger: UpdateLedger,
    bot_username: str,
    poll_seconds: int,
    limit: int,
    rng: random.Random,
    trace: TraceEmit,
    preview_chars: int = PREVIEW_CHARS,
    allowed_users: Collection[int] | None = None,
    recovery: Recovery | None = None,
    stale_after: float = 0.0,
    wall_clock: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Poll until cancelled.

    A message sent after `ledger.caught_up` that reaches the router more than `stale_after`
    seconds (by `wall_clock`) after it was sent is marked late (0: never). The one wall clock
    of the bot's actors: Telegram's ``date`` is Unix time, which trio's clock is not.

    The end of an outage, its first poll that goes through after failures, is told to
    `recovery`: the sender's waiting replies go at once.

    The trace of an update from a user outside `allowed_users` carries ids and the text's
    length only, never the text (None: every user is allowed, as in tests of one chat).

    Inbox: none (Telegram).
    Emits: `RouterMsg` to `out`, in update_id order.
    Backpressure: ``await out.send`` blocks when the router is behind, and the next poll
        waits until the chats took the batch (at most `HANDLED_WAIT`); the poller then stops
        polling and Telegram keeps the updates (nothing is confirmed before it is taken).
    Shutdown: cancelled by the root (stop intake first); updates not taken stay
        unconfirmed and come back on the next start. The ledger is written once more, with
        when the bot last had every update (what the next start draws the late line at).
        Closes `out` on exit, which tells the router to drain.

    Raises:
        TelegramUnauthorized: the token was rejected.
    """
    polling = _Polling(
        api=api,
        out=out,
        ledger=ledger,
        bot_username=bot_username,
        poll_seconds=poll_seconds,
        limit=limit,
        rng=rng,
        trace=trace,
        preview_chars=preview_chars,
        allowed_users=None if allowed_users is None else frozenset(allowed_users),
        outage=Outage(logger, "getUpdates", "getUpdates failed", recovery),
        trouble=disk.DiskTrouble(f"the update ledger {ledger.path}"),
        stale_after=stale_after,
        wall_clock=wall_clock,
    )
    with out:
        task_status.started()
        try:
            await _poll(polling)
        finally:
            with trio.CancelScope(shield=True):  # keeps when the bot last had every update
                await _persist(ledger, polling.trouble, stopping=True)


@dataclass(frozen=True)
class _Polling:
    """One poller's arguments and helpers, fixed for its life."""

    api: TelegramApi
    out: trio.MemorySendChannel[RouterMsg]
    ledger: UpdateLedger
    bot_username: str
    poll_seconds: int
    limit: int
    rng: random.Random
    trace: TraceEmit
    preview_chars: int
    allowed_users: frozenset[int] | None
    outage: Outage
    trouble: disk.DiskTrouble
    stale_after: float
    wall_clock: Callable[[], float]


async def _poll(polling: _Polling) -> None:
    offset: int | None = None
    outage = polling.outage
    while True:
        polled_at = polling.wall_clock()
        try:
            raws = await polling.api.get_updates(
                offset=offset,
                poll_seconds=polling.poll_seconds,
                limit=polling.limit,
                allowed_updates=ALLOWED_UPDATES,
            )
        except TelegramRetryAfter as error:
            logger.warning("getUpdates: flood control, waiting %g s", error.retry_after)
            await trio.sleep(error.retry_after)
            continue
        except TelegramConflict as error:
            delay = _backoff(outage.attempts, polling.rng)
            cause = (
                f"conflict: {error.description}. Another instance of this bot is polling "
                "with the same token (or a webhook is set)"
            )
            outage.failed(cause, delay, level=logging.ERROR)
            await trio.sleep(delay)
            continue
        except (TelegramTransientError, TelegramBadRequest) as error:
            delay = _backoff(outage.attempts, polling.rng)
            outage.failed(error, delay)
            await trio.sleep(delay)
            continue
        outage.succeeded()
        late = _late_line(polling)  # drawn where the bot had caught up before this poll
        if len(raws) < polling.limit:  # it returned all Telegram held when it was sent
            polling.ledger.caught_up_at(polled_at)  # before the hand-off: a stop may end it
        if raws:
            offset = await _hand_off(raws, polling, offset, late)


def _late_line(polling: _Polling) -> _LateLine | None:
    """Which messages of the batch just fetched count as late (None: none can)."""
    since = polling.ledger.caught_up
    if since is None or polling.stale_after <= 0:
        return None
    return _LateLine(since=since, now=polling.wall_clock(), stale_after=polling.stale_after)


@dataclass(frozen=True)
class _LateLine:
    """A message sent after `since` (the bot had every update then) that waited more than
    `stale_after` until `now` waited at Telegram while the bot could not fetch it."""

    since: float
    now: float
    stale_after: float

    def waited(self, message: RouterMsg | None) -> int:
        """Seconds `message` waited, if it counts as late; else 0. Only what may start
        Codex counts: a command is served as usual, an edit (it carries the date of the
        message it edits) is never run, and a group's talk not for the bot is not read."""
        if not isinstance(message, InboundMessage):
            return 0
        if message.edited or message.command or not message.addressed:
            return 0
        waited = self.now - message.date
        if message.date <= self.since or waited <= self.stale_after:
            return 0
        return round(waited)


def _backoff(failures: int, rng: random.Random) -> float:
    return backoff_delay(failures, rng, initial=BACKOFF_INITIAL, maximum=BACKOFF_MAX)


async def _hand_off(
    raws: list[msgspec.Raw], polling: _Polling, offset: int | None, late: _LateLine | None
) -> int | None:
    """Hand one batch to the router; return the offset that confirms it."""
    out, ledger, trace = polling.out, polling.ledger, polling.trace
    numbered: list[tuple[int, msgspec.Raw]] = []
    for raw in raws:
        update_id = decode_update_id(raw)
        if update_id is None:
            logger.error("skipping an update without a readable update_id (%d bytes)", len(raw))
            trace(
                TraceRecord(
                    event="update", outcome="skipped", detail="no update_id", malformed=True
                )
            )
            continue
        numbered.append((update_id, raw))
    numbered.sort(key=lambda pair: pair[0])
    waiting: list[tuple[int, trio.Event]] = []
    lates = 0
    finished = False
    try:
        for update_id, raw in numbered:
            if ledger.seen(update_id):
                logger.info("update %d was handled before a restart; skipping it", update_id)
                trace(TraceRecord(event="update", update_id=update_id, outcome="duplicate"))
                continue
            try:
                message = to_router_message(decode_update(raw), polling.bot_username)
            except msgspec.DecodeError as error:
                logger.error("skipping update %d that does not decode: %s", update_id, error)
                trace(
                    TraceRecord(
                        event="update",
                        update_id=update_id,
                        outcome="skipped",
                        detail=str(error),
                        malformed=True,
                    )
                )
                ledger.record(update_id)
                continue
            strange = _from_stranger(message, polling.allowed_users)  # refused as ever
            late_by = 0 if late is None or strange else late.waited(message)
            if message is None:
                ledger.record(update_id)
            else:
                handled = trio.Event()
                if late_by:
                    lates += 1
                    message = msgspec.structs.replace(message, late=late_by)
                await out.send(msgspec.structs.replace(message, handled=handled))
                waiting.append((update_id, handled))
            trace(_update_trace(update_id, message, polling, late_by, stranger=strange))
        if lates:
            logger.info(
                "%s waited at Telegram over sessions.stale_after (%g s) while the bot could "
                "not fetch updates: offered in their chats, not run",
                plural(lates, "message"),
                polling.stale_after,
            )
        with trio.move_on_after(HANDLED_WAIT) as waited:
            for _, handled in waiting:
                await handled.wait()
        if waited.cancelled_caught:
            logger.warning(
                "a chat took over %g s to take an update; confirming the batch anyway",
                HANDLED_WAIT,
            )
        for update_id, _ in waiting:
            ledger.record(update_id)
        finished = True
    finally:
        if not finished:  # stopped (shutdown): keep what the chats took, within a grace
            with trio.move_on_after(STOP_GRACE) as grace:
                grace.shield = True
                for _, handled in waiting:
                    await handled.wait()
            for update_id, handled in waiting:
                if handled.is_set():
                    ledger.record(update_id)
        with trio.CancelScope(shield=not finished):
            await _persist(ledger, polling.trouble)
    if not numbered:
        return offset
    return numbered[-1][0] + 1


async def _persist(
    ledger: UpdateLedger, trouble: disk.DiskTrouble, *, stopping: bool = False
) -> None:
    try:
        await ledger.persist(stopping=stopping)
    except OSError as error:
        trouble.failed(error)
    else:
        trouble.succeeded()


def _update_trace(
    update_id: int, message: RouterMsg | None, polling: _Polling, late_by: int, *, stranger: bool
) -> TraceRecord:
    preview_chars = polling.preview_chars
    if isinstance(message, InboundMessage):
        if stranger:  # what a stranger writes is not ours to keep: ids and a length only
            return TraceRecord(
                event="update",
                update_id=update_id,
                chat_id=message.chat_id,
                user_id=message.user_id,
                thread_id=message.thread_id,
                outcome="stranger",
                detail=f"{len(message.text or '')} characters",
            )
        return TraceRecord(
            event="update",
            update_id=update_id,
            chat_id=message.chat_id,
            user_id=message.user_id,
            thread_id=message.thread_id,
            command=message.command,
            outcome="edited" if message.edited else "late" if late_by else "ok",
            detail=f"waited {late_by} s at Telegram" if late_by else None,
            preview=(message.text or "")[:preview_chars] if preview_chars else None,
        )
    if isinstance(message, InboundCallback):
        return TraceRecord(
            event="update",
            update_id=update_id,
            chat_id=message.chat_id,
            user_id=message.user_id,
            outcome="callback",
        )
    if message is None:
        return TraceRecord(event="update", update_id=update_id, outcome="ignored")
    return TraceRecord(
        event="update", update_id=update_id, chat_id=message.chat_id, outcome=message.status
    )


def _from_stranger(message: RouterMsg | None, allowed_users: frozenset[int] | None) -> bool:
    """Whether `message` is a text from a user outside `allowed_users` (None: all allowed)."""
    return (
        isinstance(message, InboundMessage)
        and allowed_users is not None
        and message.user_id not in allowed_users
    )
