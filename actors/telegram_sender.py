"""The sender: the only code that sends, edits or deletes Telegram messages.

It owns flood control and delivery guarantees:

- **Order.** Each chat has a lane: a FIFO of pending items, served by one task, so messages
  of a chat arrive in the order they were sent to the sender.
- **Rate.** At most `GLOBAL_RATE` calls in any one-second window overall, and per chat one
  message or edit per `PRIVATE_SPACING` seconds in private chats, `GROUP_SPACING` in groups,
  where a final may go one spacing early, so that a result does not wait behind the
  progress edit before it: Telegram's limits (`actors.telegram_flood_control` holds the
  lanes, `turn`, and the limiter).
- **Coalescing.** `UpdateLive` of one slot waiting in a lane is replaced by the newest text
  (it keeps its place); `SendReply` and `CloseLive` are never dropped or merged. A waiting
  edit of a progress message already shown moves behind a newly queued final.
- **Priority.** Finals and callback answers take free slots of the global rate before
  progress and typing actions, so a flood slows progress, not results. Refusals to strangers
  (``stranger=True``) come last: at most `STRANGER_RATE` a second are admitted and at most
  `STRANGER_BACKLOG` wait, the rest are dropped and counted; each is tried once, and a 429 on
  one pauses only the refusals (`actors.telegram_flood_control` says why).
- **429.** The chat's lane pauses for ``retry_after`` and retries the same call; when the
  pause is longer than `LIVE_PAUSE_LIMIT`, waiting live updates are shed but the finals are
  still sent once the pause is over. A 429 on a call without a chat pauses everything.
- **Durability.** A `SendReply` is in the outbox (`actors.telegram_outbox`): its chat writes
  it while the sender already sends it (an entry the disk refused is said in the chat, once
  an hour), or it is written the moment it arrives, and it is deleted once Telegram
  accepted it and its write ended; the entries left by an earlier run
  are queued first, in order per chat. Such a reply is retried on 5xx, timeouts and
  connection errors without a limit, with backoff capped at `retry_backoff_max`, for as long
  as the process runs, and by the next start after that.
- **Errors.** 5xx and timeouts of anything else (a progress edit, a note without buttons):
  `TRANSIENT_RETRIES` retries with backoff, then the item is traced as undelivered; but the
  first showing of a live message with buttons (an approval question, a run's Cancel), a
  file (``/get``, the file an approval refers to) and the closing of a live message (its
  final text, or its deletion) are retried as a durable reply is, for `UNTIL_TAKEN_SECONDS`:
  a question lost to an outage would be denied unseen, and a close lost would leave its
  buttons behind.
  "message is not modified" is success; "message to edit not found" sends a new message;
  "can't parse entities" resends as plain text; 403 marks the chat inactive (nothing more is
  sent to it until `ChatReactivated`; what was not delivered is traced); a migrated group
  switches to its new id and the call is sent again once.
"""

from __future__ import annotations

import functools
import itertools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeVar, assert_never

import trio

from actors.telegram_deliveries import KEYBOARDS_REMEMBERED, Deliveries, GiveUp
from actors.telegram_flood_control import (
    GLOBAL_RATE,
    Lane,
    RateLimiter,
    StrangerGate,
    never,
    spaced,
    turn,
)
from orchestrator.errors import (
    TelegramBadRequest,
    TelegramChatMigrated,
    TelegramForbidden,
    TelegramRetryAfter,
    TelegramTransientError,
)
from orchestrator.messages import (
    AnswerCallback,
    ChatReactivated,
    CloseLive,
    DiskRefused,
    SendChatAction,
    SendReply,
    TraceRecord,
    UpdateLive,
)
from orchestrator.outage import Outage, Recovery
from orchestrator.recent import Recent
from orchestrator.redaction import redact_outbound
from orchestrator.supervision import backoff_delay
from orchestrator.throttle import OncePer
from orchestrator.words import plural

if TYPE_CHECKING:
    import random
    from collections.abc import Awaitable, Callable, Iterable, Sequence

    from actors.telegram_outbox import Outbox, OutboxEntry
    from orchestrator.messages import SenderMsg
    from orchestrator.ports import TelegramApi, TraceEmit

__all__ = ["LIVE_PAUSE_LIMIT", "SenderStatistics", "run"]

logger: Final = logging.getLogger(__name__)

LIVE_PAUSE_LIMIT: Final = 60.0
"""A 429 pause longer than this sheds waiting live updates (finals still go out later)."""

TRANSIENT_RETRIES: Final = 5
"""Retries of a call that failed with 5xx or a timeout before it is given up."""

RETRY_BACKOFF_INITIAL: Final = 1.0
"""Seconds before the first retry of a call that failed with 5xx or a timeout."""

RETRY_BACKOFF_MAX: Final = 30.0
"""Cap on that delay (never reached with `TRANSIENT_RETRIES` retries; a guard if it grows)."""

UNTIL_TAKEN_SECONDS: Final = 600.0
"""How long a question, a file or a live message's close (`_call`'s ``until_taken``) is
tried after its first failure, as a durable reply is: an outage that long is over for most
users, an approval question is denied by then (``sessions.approval_timeout``, 10 minutes by
default), and a call that fails for that long for a reason of its own must not stop its chat
for good."""

UNSAVED_NOTICE: Final = (
    "⚠️ The bot cannot save to its disk right now (full or read-only). It keeps answering, "
    "but a restart before that is fixed could forget this conversation's settings and queue, "
    "or lose a reply still on its way. Please tell whoever runs the bot."
)
UNSAVED_NOTICE_INTERVAL: Final = 3600.0
"""Seconds between two `UNSAVED_NOTICE`s in one chat: said once, not after every reply, and
once for a session that cannot be saved (`DiskRefused`) and a reply's entry alike."""

DURABLE_RETRY_BACKOFF_MAX: Final = 10.0
"""Default cap on the delay between tries of a durable reply: a long outage costs one call
every 5 to 10 s per waiting chat (within the global rate), and the reply goes out within
seconds once Telegram is back."""

PREVIEW_CHARS: Final = 200

T = TypeVar("T")


@dataclass
class SenderStatistics:
    """Counters for `statistics()` and tests."""

    calls: int = 0
    retries_after_429: int = 0
    coalesced: int = 0
    shed_live: int = 0
    undelivered: int = 0
    strangers_sent: int = 0
    strangers_dropped: int = 0
    """Refusals over the cap (`StrangerGate`) or failed once (never retried)."""
    strangers_429: int = 0


async def run(
    inbox: trio.MemoryReceiveChannel[SenderMsg],
    api: TelegramApi,
    *,
    max_chunks: int,
    rng: random.Random,
    trace: TraceEmit,
    commands: Sequence[tuple[str, str]] = (),
    statistics: SenderStatistics | None = None,
    global_rate: float = GLOBAL_RATE,
    chat_spacing: bool = True,
    outbox: Outbox | None = None,
    pending: Sequence[OutboxEntry] = (),
    retry_backoff_max: float = DURABLE_RETRY_BACKOFF_MAX,
    secrets: Sequence[str] = (),
    recovery: Recovery | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Deliver everything that arrives in `inbox`.

    A retry waiting out its pause goes at once when an outage ends (`recovery`: the poller's
    getUpdates goes through after failures). Its own calls do not tell it: one chat's call
    that fails for a reason of its own would then be retried after every other call's
    success, without a pause.

    Every message is redacted (`redact_outbound`, `secrets`) as it arrives, before it is split.
    `global_rate` (calls per second, 0 = unlimited) and `chat_spacing` exist for
    self-hosted Bot API servers and benchmarks; Telegram itself needs the defaults.
    With `outbox`, every `SendReply` is durable; `pending` (from `Outbox.open`) is queued
    before the first message of `inbox` is read.

    Inbox: `SenderMsg`.
    Emits: Bot API calls; `delivery` and `chat_inactive` trace records.
    Backpressure: producers block when the inbox (sized by the root) is full; live updates
        are coalesced per slot inside the lanes, so they do not pile up.
    Shutdown: on end-of-channel, every lane delivers what it holds (live updates included),
        then the sender returns; the root bounds this with a deadline. What the deadline
        cuts off stays in the outbox for the next start.
    """
    sender = _Sender(
        api,
        max_chunks,
        rng,
        trace,
        statistics or SenderStatistics(),
        global_rate=global_rate,
        chat_spacing=chat_spacing,
        outbox=outbox,
        retry_backoff_max=retry_backoff_max,
        recovery=recovery or Recovery(),
    )
    async with trio.open_nursery() as nursery:
        sender.nursery = nursery
        if commands:
            nursery.start_soon(sender.set_commands, commands)
        for entry in pending:
            sender.accept(entry.reply, nursery, entry=entry.number)
        task_status.started()
        with inbox:
            async for message in inbox:
                message = redact_outbound(message, secrets)  # before it is split or stored
                number = None
                if outbox is not None and isinstance(message, SendReply) and not message.stranger:
                    number = message.outbox_entry  # written by the chat that said it
                    if number is None:
                        number = await outbox.put(message)
                    if number is None:  # the disk refused: delivered from memory only
                        sender.tell_unsaved(message.chat_id, message.thread_id, nursery)
                sender.accept(message, nursery, entry=number)


class _Sender(Deliveries):
    """The sender's state; methods run inside `run`'s nursery (the deliveries of each kind
    of item are in `Deliveries`)."""

    def __init__(
        self,
        api: TelegramApi,
        max_chunks: int,
        rng: random.Random,
        trace: TraceEmit,
        stats: SenderStatistics,
        *,
        global_rate: float,
        chat_spacing: bool,
        outbox: Outbox | None,
        retry_backoff_max: float,
        recovery: Recovery,
    ) -> None:
        self.api = api
        self.recovery = recovery
        self.outbox = outbox
        self.retry_backoff_max = retry_backoff_max
        self.nursery: trio.Nursery | None = None
        self.chat_spacing = chat_spacing
        self.max_chunks = max_chunks
        self.rng = rng
        self.outage = Outage(logger, "sending to Telegram", "Telegram call failed")
        """Failed calls of every chat in a row: logged at once, once a minute, and at their
        end, not once per try of each waiting reply."""
        self.trace = trace
        self.stats = stats
        self.lanes: dict[int, Lane] = {}
        self.migrated: dict[int, int] = {}
        self.keyboards = Recent[tuple[int, str], tuple[int, str]](KEYBOARDS_REMEMBERED)
        self.limiter = RateLimiter(global_rate)
        self.strangers = StrangerGate()
        self.unsaved_told = OncePer[int](UNSAVED_NOTICE_INTERVAL)
        self.arrivals = itertools.count()
        """Tickets: finals are numbered as they arrive, and take rate slots in that order."""

    async def set_commands(self, commands: Sequence[tuple[str, str]]) -> None:
        """Best effort: the command menu is a convenience."""
        try:
            await self._call(None, lambda: self.api.set_my_commands(commands))
        except (GiveUp, TelegramBadRequest) as error:
            logger.warning("setMyCommands failed: %s", error)

    def _fresh_ticket(self) -> int:
        """A call outside the lanes (a callback answer, the command menu) is urgent too."""
        return next(self.arrivals)

    def lane(self, chat_id: int) -> Lane:
        chat_id = self.migrated.get(chat_id, chat_id)
        lane = self.lanes.get(chat_id)
        if lane is None:
            lane = self.lanes[chat_id] = Lane(chat_id)
        return lane

    def accept(
        self, message: SenderMsg, nursery: trio.Nursery, *, entry: int | None = None
    ) -> None:
        """Queue `message` (`entry`: its outbox entry, for a durable `SendReply`)."""
        match message:
            case SendReply(stranger=True) | AnswerCallback(stranger=True):
                if self.strangers.admit():
                    self.strangers.waiting += 1
                    nursery.start_soon(self._to_stranger, message)
                else:
                    self._stranger_dropped("over the cap")
            case SendReply() | CloseLive():
                lane = self.lane(message.chat_id)
                if lane.inactive:
                    self._trace_inactive(lane.chat_id, message)
                    self._forget([entry])
                    return
                if isinstance(message, CloseLive):
                    self._drop_live(lane, message.slot)
                # Waiting edits of progress messages already shown go behind this item: they
                # only change an older message in place, and must not hold back a result.
                edits = [
                    slot
                    for slot in lane.queue
                    if isinstance(slot, str) and slot in lane.live_message
                ]
                for slot in edits:
                    lane.queue.remove(slot)
                lane.queue.append(message)
                lane.final_tickets.append(next(self.arrivals))
                lane.final_entries.append(entry)
                lane.queue.extend(edits)
                if lane.edit_call is not None:
                    lane.edit_call.cancel()  # an edit in flight must not hold this back
                if lane.turn_wait is not None:
                    lane.turn_wait.cancel()  # its turn may come before the waiting edit's
                if lane.running:
                    self.limiter.wake()  # a progress call of this lane now waits for a final
                self._kick(lane, nursery)
            case UpdateLive():
                lane = self.lane(message.chat_id)
                if lane.inactive:
                    return
                if lane.paused_until - trio.current_time() > LIVE_PAUSE_LIMIT:
                    self.stats.shed_live += 1  # progress would be stale by the time it went out
                    return
                if message.slot in lane.live_text:
                    self.stats.coalesced += 1
                else:
                    lane.queue.append(message.slot)
                lane.live_text[message.slot] = message
                self._kick(lane, nursery)
            case SendChatAction():
                lane = self.lane(message.chat_id)
                if (
                    not lane.inactive
                    and not lane.typing  # at most one per chat, however saturated the limiter
                    and not lane.queue
                    and lane.paused_until <= trio.current_time()
                ):
                    lane.typing = True
                    nursery.start_soon(self._chat_action, lane, message)
            case AnswerCallback():
                nursery.start_soon(self._answer_callback, message)
            case ChatReactivated():
                self.lane(message.chat_id).inactive = False
            case DiskRefused():
                self.tell_unsaved(message.chat_id, message.thread_id, nursery)
            case _:
                assert_never(message)

    def tell_unsaved(self, chat_id: int, thread_id: int | None, nursery: trio.Nursery) -> None:
        """The disk refused a write for this chat (a reply's outbox entry, or its session:
        `DiskRefused`): say so in the chat, at most once an hour for both."""
        if not self.unsaved_told.due(chat_id):
            return
        notice = SendReply(
            chat_id=chat_id, thread_id=thread_id, markdown=UNSAVED_NOTICE, plain=True
        )
        self.accept(notice, nursery)

    def _drop_live(self, lane: Lane, slot: str) -> None:
        if lane.live_text.pop(slot, None) is not None:
            lane.queue.remove(slot)

    def _kick(self, lane: Lane, nursery: trio.Nursery) -> None:
        if not lane.running:
            lane.running = True
            nursery.start_soon(self._serve_lane, lane)

    async def _serve_lane(self, lane: Lane) -> None:
        """Deliver the lane's queue in order, then end (a new item starts a new task)."""
        try:
            while lane.queue and not lane.inactive:
                # Wait for the chat's turn with the item still queued, where a newer
                # progress text can replace it and a final can move ahead of it.
                due = turn(lane, final=not isinstance(lane.queue[0], str))
                if due > trio.current_time():
                    with trio.CancelScope(deadline=due) as lane.turn_wait:
                        await trio.sleep_forever()
                    lane.turn_wait = None
                    continue
                item = lane.queue.popleft()
                try:
                    if isinstance(item, str):
                        live = lane.live_text.pop(item, None)
                        if live is not None:
                            await self._live(lane, live)
                        continue
                    lane.ticket = lane.final_tickets.popleft()
                    lane.entry = lane.final_entries.popleft()
                    try:
                        if isinstance(item, SendReply):
                            await self._deliver_reply(lane, item)
                        else:
                            await self._deliver_close(lane, item)
                    except GiveUp:
                        pass  # refused for good (traced): keeping it would fail every start
                    if lane.entry is not None and self.outbox is not None:
                        kept = await self.outbox.remove(lane.entry)
                        if not kept and isinstance(item, SendReply) and self.nursery:
                            # its chat wrote it behind
                            self.tell_unsaved(item.chat_id, item.thread_id, self.nursery)
                finally:
                    lane.ticket = None
                    lane.entry = None
        finally:
            lane.running = False
            idle = not lane.queue and not lane.live_message and not lane.inactive
            if idle and lane.next_allowed < trio.current_time():
                # Nothing to remember about an idle chat: free it (a slow leak otherwise).
                self.lanes.pop(lane.chat_id, None)

    async def _chat_action(self, lane: Lane, action: SendChatAction) -> None:
        chat_id = self.migrated.get(action.chat_id, action.chat_id)
        try:
            async with self.limiter.slot(never):
                await self.api.send_chat_action(
                    chat_id, action.action, message_thread_id=action.thread_id
                )
        except (TelegramBadRequest, TelegramTransientError, TelegramChatMigrated) as error:
            logger.debug("sendChatAction failed: %s", error)
        except TelegramRetryAfter as error:
            self.lane(chat_id).paused_until = trio.current_time() + error.retry_after
        except TelegramForbidden:
            self._mark_inactive(self.lane(chat_id), None)
        finally:
            lane.typing = False

    async def _answer_callback(self, answer: AnswerCallback) -> None:
        try:
            await self._call(
                None,
                lambda: self.api.answer_callback_query(
                    answer.callback_query_id, text=answer.text, show_alert=answer.show_alert
                ),
            )
        except (GiveUp, TelegramBadRequest, TelegramForbidden) as error:
            logger.info("answerCallbackQuery failed: %s", error)

    # ------------------------------------------------------------------ the call ladder

    async def _in_chat(
        self,
        lane: Lane,
        call: Callable[[int], Awaitable[T]],
        *,
        preview: str,
        until_taken: bool = False,
    ) -> T:
        """One call in `lane`'s chat: spacing, the global rate, and the retry ladder
        (`until_taken`: as long as a durable reply's, for a while, see `_call`)."""
        migrated_once = False
        while True:
            now = trio.current_time()
            wait_until = turn(lane, final=lane.ticket is not None)
            if wait_until > now:
                await trio.sleep_until(wait_until)
            try:
                return await self._call(
                    lane, functools.partial(call, lane.chat_id), until_taken=until_taken
                )
            except TelegramChatMigrated as error:
                if migrated_once:
                    self._undelivered(lane.chat_id, str(error), preview)
                    raise GiveUp from error
                migrated_once = True
                self._migrate(lane, error.migrate_to_chat_id)
            except TelegramForbidden as error:
                self._mark_inactive(lane, preview)
                raise GiveUp from error

    async def _call(
        self, lane: Lane | None, call: Callable[[], Awaitable[T]], *, until_taken: bool = False
    ) -> T:
        """Global rate, 429 pauses and bounded retries of transient failures; retries without
        a limit for a durable reply (its outbox entry), and for `UNTIL_TAKEN_SECONDS` after
        the first failure for what is `until_taken`."""
        transient_failures = 0
        failing_since: float | None = None
        while True:
            if lane is not None and lane.paused_until > trio.current_time():
                await trio.sleep_until(lane.paused_until)
            try:
                priority = lane.priority if lane is not None else self._fresh_ticket
                async with self.limiter.slot(priority):
                    self.stats.calls += 1
                    try:
                        result = await call()
                        self.outage.succeeded()
                        return result
                    finally:
                        if lane is not None and self.chat_spacing:
                            spaced(lane, trio.current_time())
            except TelegramRetryAfter as error:
                self.stats.retries_after_429 += 1
                until = trio.current_time() + error.retry_after
                if lane is None:
                    self.limiter.paused_until = until
                else:
                    lane.paused_until = until
                    lane.next_allowed = max(lane.next_allowed, until)
                    if error.retry_after > LIVE_PAUSE_LIMIT:
                        self._shed_live(lane)
                logger.warning(
                    "flood control: waiting %g s before retrying (chat %s)",
                    error.retry_after,
                    lane.chat_id if lane else "all",
                )
                await trio.sleep_until(until)
            except TelegramTransientError as error:
                transient_failures += 1
                if failing_since is None:
                    failing_since = trio.current_time()
                still_trying = until_taken and (
                    trio.current_time() - failing_since < UNTIL_TAKEN_SECONDS
                )
                durable = still_trying or (lane is not None and lane.entry is not None)
                if transient_failures > TRANSIENT_RETRIES and not durable:
                    if lane is not None:
                        self._undelivered(lane.chat_id, str(error), "")
                    raise GiveUp from error
                delay = backoff_delay(
                    transient_failures - 1,
                    self.rng,
                    initial=RETRY_BACKOFF_INITIAL,
                    maximum=self.retry_backoff_max if durable else RETRY_BACKOFF_MAX,
                )
                self.outage.failed(error, delay)
                await self.recovery.sleep(delay)

    # ------------------------------------------------------------------ bookkeeping

    def _shed_live(self, lane: Lane) -> None:
        for slot in list(lane.live_text):
            self._drop_live(lane, slot)
            self.stats.shed_live += 1

    def _migrate(self, lane: Lane, new_chat_id: int) -> None:
        logger.info("chat %d became supergroup %d; following it", lane.chat_id, new_chat_id)
        old = lane.chat_id
        self.migrated[old] = new_chat_id
        self.lanes.pop(old, None)
        lane.chat_id = new_chat_id
        self.lanes[new_chat_id] = lane

    def _mark_inactive(self, lane: Lane, preview: str | None) -> None:
        if not lane.inactive:
            logger.warning("chat %d blocked the bot; not sending to it any more", lane.chat_id)
        lane.inactive = True
        pending = [item for item in lane.queue if not isinstance(item, str)]
        lane.queue.clear()
        lane.final_tickets.clear()
        self._forget(lane.final_entries)  # traced below; a blocked chat gets nothing later
        lane.final_entries.clear()
        lane.live_text.clear()
        self.trace(
            TraceRecord(
                event="chat_inactive",
                chat_id=lane.chat_id,
                outcome="blocked",
                detail=f"{plural(len(pending), 'more message')} not delivered",
                preview=(preview or "")[:PREVIEW_CHARS] or None,
            )
        )
        for item in pending:
            self._trace_inactive(lane.chat_id, item)

    def _forget(self, entries: Iterable[int | None]) -> None:
        """Delete these outbox entries in the background (they will not be delivered)."""
        if self.outbox is None or self.nursery is None:
            return
        for entry in entries:
            if entry is not None:
                self.nursery.start_soon(self.outbox.remove, entry)

    def _trace_inactive(self, chat_id: int, item: SendReply | CloseLive) -> None:
        text = item.markdown if isinstance(item, SendReply) else (item.final_text or "")
        self.trace(
            TraceRecord(
                event="delivery",
                chat_id=chat_id,
                outcome="chat_inactive",
                preview=text[:PREVIEW_CHARS] or None,
            )
        )

    def _undelivered(self, chat_id: int, why: str, preview: str) -> None:
        self.stats.undelivered += 1
        logger.error("could not deliver a message to chat %d: %s", chat_id, why)
        self.trace(
            TraceRecord(
                event="delivery",
                chat_id=chat_id,
                outcome="failed",
                detail=why[:300],
                preview=preview[:PREVIEW_CHARS] or None,
            )
        )
