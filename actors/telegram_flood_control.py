"""Flood control for the sender: per-chat lanes and the global rate limiter.

Telegram's limits for bots: about 30 calls per second across all chats, one message or edit
per second in a private chat, 20 per minute in a group; a call beyond them gets 429 with
``retry_after``.
This module holds the state that keeps the sender under those limits:

- `Lane`: one chat's pending items in order, its live (coalescing) slots, and when the chat
  may next be called (spacing after a call, a 429 pause; `turn`, `spaced`);
- `RateLimiter`: at most `GLOBAL_RATE` calls in any one-second window, urgent calls (finals,
  callback answers) first, in arrival order, then progress, and strangers' refusals last;
- `StrangerGate`: the cap on refusals per second (`STRANGER_RATE`) and on refusals waiting
  (`STRANGER_BACKLOG`); beyond them a refusal is dropped and counted.

Why a 429 on a stranger's refusal pauses only the strangers' class: Telegram counts flood per
bot and per chat, and its ``retry_after`` on a 429 is meant for the bot; but the refusals are
capped far below the global budget and the limiter keeps every call inside it, so a 429 on a
refusal says "too many refusals" (or too many to that one chat), not "stop everything".
Pausing allowed users' replies for it is what let one stranger's button hold every chat for
24 s. If Telegram did mean the whole bot, an allowed user's call gets its own 429 and pauses
its own lane: the price is one rejected call per busy chat, not a bot-wide stall.

Both are plain state owned by the sender's task tree (`actors.telegram_sender`); nothing
here sends.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, final

import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from orchestrator.messages import CloseLive, SendReply, UpdateLive

__all__ = [
    "GLOBAL_RATE",
    "GROUP_SPACING",
    "PRIVATE_SPACING",
    "STRANGER_BACKLOG",
    "STRANGER_RATE",
    "Lane",
    "RateLimiter",
    "StrangerGate",
    "never",
    "spaced",
    "spacing",
    "turn",
]

GLOBAL_RATE: Final = 30.0
"""Calls per second across all chats: Telegram's broadcast limit."""

PRIVATE_SPACING: Final = 1.0
"""Seconds per message or edit in one private chat, on average (`turn`)."""

GROUP_SPACING: Final = 60 / 19
"""Seconds per message or edit in one group, on average: with the one final a chat may send
early (`turn`), no minute holds more than 20 calls (Telegram's limit for a group), which
needs 19 spacings in 60 s."""

STRANGER_RATE: Final = 5
"""Refusals (and answers to strangers' buttons) admitted per second: a sixth of the global
budget at most, so a crowd of strangers can never take the allowed users' share."""

STRANGER_BACKLOG: Final = 50
"""Refusals admitted but still waiting for a free slot; beyond that they are dropped (a crowd
that outlasts the spare budget is not answered rather than answered minutes late)."""


@final
@dataclass
class Lane:
    """One chat's pending work. `queue` holds finals and live-slot markers in order."""

    chat_id: int
    queue: deque[SendReply | CloseLive | str] = field(default_factory=deque)
    live_text: dict[str, UpdateLive] = field(default_factory=dict)
    live_message: dict[str, int] = field(default_factory=dict)
    next_allowed: float = -math.inf
    """When a progress call may go (`turn`): one spacing after the last call, or later when
    a final went early."""
    paused_until: float = -math.inf
    inactive: bool = False
    running: bool = False
    typing: bool = False
    """A chat action of this chat waits for the limiter: another one would add nothing."""

    final_tickets: deque[int] = field(default_factory=deque)
    """The arrival numbers of the finals (`SendReply`, `CloseLive`) in `queue`, in order."""
    ticket: int | None = None
    """The arrival number of the final being delivered, None while delivering progress."""
    final_entries: deque[int | None] = field(default_factory=deque)
    """The outbox entry numbers of the finals in `queue`, in order (None: not durable)."""
    entry: int | None = None
    """The outbox entry of the final being delivered: retried until Telegram takes it."""
    turn_wait: trio.CancelScope | None = None
    """The lane's wait for its turn (`turn`), while it waits: a final queued meanwhile ends
    it, as the final's turn may come sooner than the progress call's it waited for."""
    edit_call: trio.CancelScope | None = None
    """The scope of a progress edit in flight: a final that arrives cancels it (an edit that
    times out or is retried must not hold back a result)."""

    def priority(self) -> int | None:
        """This lane's place among urgent calls: its current final's arrival number, or the
        next final's while a progress call stands in front of it (it inherits the final's
        urgency, or it would hold that final back); None: nothing urgent."""
        if self.ticket is not None:
            return self.ticket
        return self.final_tickets[0] if self.final_tickets else None


def never() -> int | None:
    """The priority of a call that is never urgent (a typing action)."""
    return None


@final
class RateLimiter:
    """At most `rate` calls in any sliding one-second window (0 = unlimited).

    Unlike a smooth limiter (one call every 1/rate s), a quiet bot pays no delay at all: a
    reply right after the "typing" action goes out at once; only a burst beyond `rate`
    calls within a second waits for the oldest of them to age out.

    A call holds its slot from the moment it starts until one second after its response.
    Telegram counts a call when it arrives, somewhere between those two moments; counting
    from the start instead let a slow request and a fast one land in the same second at
    Telegram (bench/flood.py measured 74 needless 429s that way).
    """

    def __init__(self, rate: float) -> None:
        self._limit = math.floor(rate) if rate > 0 else 0
        self._recent: deque[float] = deque()
        self._in_flight = 0
        self._urgent_waiting: list[int] = []  # the waiting urgent calls' tickets, ascending
        self._normal_waiting = 0  # waiting progress calls: strangers' refusals go after them
        self._changed = trio.Event()
        self.paused_until = -math.inf
        self.strangers_paused_until = -math.inf
        """A 429 on a stranger's refusal pauses only the strangers' class (module docstring)."""

    @asynccontextmanager
    async def slot(
        self, priority: Callable[[], int | None], *, stranger: bool = False
    ) -> AsyncIterator[None]:
        """Wait for a free slot, then hold it for the call made inside the block.

        `priority` returns a ticket for an urgent call (finals, callback answers; lower goes
        first: tickets number the finals in the order they reached the sender) or None (a
        progress edit or a typing action). Urgent calls go first, in ticket order; others
        take a free slot only while no urgent call waits, so under a flood the results keep
        flowing and progress simply updates less often (its edits coalesce meanwhile).
        `priority` is asked again on every wake-up, as a call may become urgent. A `stranger`
        call (a refusal) takes a slot only while no other call waits, and waits out
        `strangers_paused_until`.
        """
        await self._acquire(priority, stranger=stranger)
        try:
            yield
        finally:
            self._in_flight -= 1
            if self._limit:
                self._recent.append(trio.current_time())
            self.wake()

    def wake(self) -> None:
        """Make waiters look again (a slot freed, or a waiter's urgency may have changed)."""
        self._changed.set()
        self._changed = trio.Event()

    async def _acquire(self, priority: Callable[[], int | None], *, stranger: bool) -> None:
        # A free slot is taken without a pass through the run loop (the call made in it
        # checkpoints soon enough); a caller cancelled already stops here, before it counts.
        await trio.lowlevel.checkpoint_if_cancelled()
        ticket: int | None = None
        normal = False  # counted in `_normal_waiting`
        try:
            while True:
                now = trio.current_time()
                pause = max(self.paused_until, self.strangers_paused_until if stranger else now)
                if pause > now:
                    await trio.sleep_until(pause)
                    continue
                if not self._limit:
                    break
                if ticket is None and not stranger:
                    ticket = priority()
                    if ticket is not None:
                        bisect.insort(self._urgent_waiting, ticket)
                        if normal:
                            normal = False
                            self._normal_waiting -= 1
                    elif not normal:
                        normal = True
                        self._normal_waiting += 1
                while self._recent and self._recent[0] + 1.0 <= now:  # the wake-up's sum
                    self._recent.popleft()
                free = self._limit - self._in_flight - len(self._recent)
                if stranger:
                    ahead = len(self._urgent_waiting) + self._normal_waiting
                elif ticket is None:
                    ahead = len(self._urgent_waiting)
                else:
                    ahead = bisect.bisect_left(self._urgent_waiting, ticket)
                if free > ahead:
                    break
                if free <= 0 and self._recent:
                    with trio.move_on_at(self._recent[0] + 1.0):
                        await self._changed.wait()
                else:  # every slot in flight, or urgent calls first: wait for a change
                    await self._changed.wait()
        finally:
            if ticket is not None:
                self._urgent_waiting.remove(ticket)
                self.wake()
            if normal:
                self._normal_waiting -= 1
                self.wake()
        self._in_flight += 1  # no checkpoint after it: a cancel there would leak the slot


@final
class StrangerGate:
    """Admission of strangers' refusals: at most `rate` per second and `backlog` waiting."""

    def __init__(self, rate: int = STRANGER_RATE, backlog: int = STRANGER_BACKLOG) -> None:
        self._rate = rate
        self._backlog = backlog
        self._admitted: deque[float] = deque()
        self.waiting = 0
        self.dropped = 0

    def admit(self) -> bool:
        """Whether one more refusal may be sent now (the caller counts it in `waiting` until
        it is done); False: dropped and counted."""
        now = trio.current_time()
        while self._admitted and self._admitted[0] + 1.0 <= now:
            self._admitted.popleft()
        if len(self._admitted) >= self._rate or self.waiting >= self._backlog:
            self.dropped += 1
            return False
        self._admitted.append(now)
        return True


def spacing(chat_id: int) -> float:
    """Seconds per call in `chat_id`: groups (negative ids) get the longer spacing."""
    return PRIVATE_SPACING if chat_id > 0 else GROUP_SPACING


def turn(lane: Lane, *, final: bool) -> float:
    """When `lane`'s chat may take its next call: a progress call (an edit, a live message)
    one spacing after the last call; a final (a result, a closing) one spacing earlier.

    A bucket of two calls, refilled one per spacing, whose second call only a final may
    take (the generic cell rate algorithm, `next_allowed` its theoretical arrival time): a
    result never waits behind the progress edit just before it (measured from outside: 0.5
    s on a run of 1.5 s, up to a whole spacing, 3 s in a group), while over any stretch the
    chat gets no more calls than one per spacing, and one: Telegram tolerates such a burst
    (its FAQ), not a rate above it.
    """
    early = spacing(lane.chat_id) if final else 0.0
    return max(lane.next_allowed - early, lane.paused_until)


def spaced(lane: Lane, now: float) -> None:
    """A call of `lane`'s chat was answered at `now`: one spacing more before the next
    (counted from the response: the request reached Telegram somewhere before it)."""
    lane.next_allowed = max(lane.next_allowed, now) + spacing(lane.chat_id)
