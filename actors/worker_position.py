"""One worker position of the Codex pool and its supervised life.

A *worker position* is one supervised place in the pool (numbered like the worker that fills
it, ``worker_id``) that a sequence of Codex workers occupy: a worker that crashes, is left
unusable by a cancel or a time limit, or is recycled leaves, and the position's supervisor
puts a fresh one in its place. This module owns what belongs to one position, whatever the backend
(`orchestrator.ports.CodexWorker`):

- `WorkerPosition`, its state: the occupant, the conversations running on it, the threads it
  hosts, why it is being retired, and whether it gave up after a crash loop;
- `supervise_position`, its life: start a worker, watch it (pings, busy or idle; a dead or
  wedged worker is a crash), interrupt and stop it when retired, restart with backoff and an
  intensity limit, and rest `WORKER_COOLDOWN` after a crash loop instead of failing the bot
  (a request cuts the rest short: `WorkerPosition.wake`);
- what one run needs from its position: the recycling check, and the reason given to runs
  ended by another run's cancel on a shared worker (the watches on a turn are
  `actors.worker_turn`'s).

Dispatch (which job goes to which position) is the pool's (`actors.worker_pool`).
"""

from __future__ import annotations

import logging
import math
import re
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

import trio

from orchestrator.codex_runs import JobFailed
from orchestrator.errors import RestartIntensityExceeded, WorkerUnavailable, sole_failure
from orchestrator.messages import TraceRecord
from orchestrator.ports import WorkerStatus
from orchestrator.supervision import ChildSpec, RestartPolicy, supervise_one

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Mapping

    from orchestrator.codex_runs import CodexProgress
    from orchestrator.ports import CodexWorker, CodexWorkerFactory, TraceEmit

__all__ = [
    "INTERRUPT_DEADLINE",
    "PING_RECHECK",
    "PING_TIMEOUT",
    "THREAD_BUSY",
    "THREAD_LOST",
    "THREAD_STOPPING",
    "WORKER_COOLDOWN",
    "WORKER_POLICY",
    "RetireReason",
    "WorkerPosition",
    "offer",
    "supervise_position",
]

logger: Final = logging.getLogger(__name__)

PING_TIMEOUT: Final = 10.0
"""Seconds a worker has to answer a ping before it is asked once more (`PING_RECHECK`)."""

PING_RECHECK: Final = 3.0
"""Seconds a worker has to answer the second ping, sent when the first went unanswered,
before it counts as wedged. A bot that was stopped (Ctrl-Z, a paused machine) past a ping's
deadline wakes with the deadline passed and the answer waiting, in the same moment: the
deadline wins, and only a ping asked after the bot woke tells a stopped bot from a stopped
server (both servers answer in about a millisecond)."""

INTERRUPT_DEADLINE: Final = 15.0
"""Seconds the shielded interrupt of a dropped worker may take; the backend bounds it itself
(the MCP edge's kill ladder takes about 4 s), this only stops a hung one from pinning us."""

WORKER_POLICY: Final = RestartPolicy(
    intensity=5, period=60.0, backoff_initial=0.5, backoff_max=30.0
)
"""Crash restarts per position: 5 within a minute make its supervisor give up. Kept low
because the pool sits under the root: nested restart intensities multiply."""

WORKER_COOLDOWN: Final = 60.0
"""Seconds a worker position rests after its supervisor gave up, before it starts over: a
crash loop (Codex broken, disk full) must neither spin nor stop the bot; it heals once the
cause is gone."""

REST_MIN: Final = 5.0
"""Seconds of a rest after a crash loop that a request cannot cut short (`WorkerPosition.wake`):
messages sent into a broken setup must not spin a crash loop."""

RSS_CHECK_INTERVAL: Final = 1.0
"""Seconds between two reads of a worker's memory for `recycle_rss_mb`: a /proc read per
run cost 0.3 ms of the bot's one core at hundreds of runs per second (bench/scale.py), and
memory grows by about a megabyte per thread, far slower than that."""

RetireReason = Literal["cancelled", "died", "recycled", "timeout", "shutdown"]
"""Why a worker leaves its position: after a cancel, a time limit or a death it is interrupted
before it is stopped; recycled or at shutdown it is stopped gracefully."""

THREAD_LOST: Final[Mapping[RetireReason, str]] = {
    "cancelled": "a cancel stopped the Codex process that held your earlier session",
    "died": "the Codex process that held your earlier session stopped unexpectedly",
    "timeout": "a time limit stopped the Codex process that held your earlier session",
    "recycled": "the Codex process that held your earlier session was restarted to free memory",
}
"""Why a thread that ended with its worker (MCP) is gone, by why the worker left, in the
user's words (`JobDone.moved_because`): after a cancel the user would otherwise wonder where the
session went. "A cancel", not "your": with ``calls_per_worker`` > 1 it may have been another
chat's."""

THREAD_BUSY: Final = (
    "the Codex process holding your earlier session stayed busy with other requests"
)
"""Why a conversation went on in a fresh thread when the worker holding it was still busy
once ``affinity_wait`` was over (the pool's dispatch tells)."""

THREAD_STOPPING: Final = "the Codex process holding your earlier session was still being stopped"
"""Likewise when a worker being stopped still held the thread then (`WorkerPosition.releasing`)."""

LOST_THREADS_KEPT: Final = 1000
"""Threads of earlier workers whose end a position remembers (`WorkerPosition.lost_threads`),
the oldest forgotten first: enough for every conversation a worker hosts between two
recyclings (``codex.recycle_threads``), and small beside the sessions the chats keep."""


@dataclass
class WorkerPosition:
    """One place in the pool; its `worker` changes on every restart.

    `running` holds the conversation of every call in flight on it or reserved for a caller
    that is about to start one; `last_stop` is the pid and reason of its last worker, read by
    the other runs that its interrupt ended. `ever_ready` turns True once a worker was ready;
    `gave_up` says why while the position rests after a crash loop, in the words the chat
    shows (`_gave_up_text`), and `rest` is that rest (`wake` ends it early).
    """

    worker_id: int
    capacity: int = 1
    worker: CodexWorker | None = None
    running: list[str] = field(default_factory=list)
    last_stop: tuple[int, RetireReason] | None = None
    ever_ready: bool = False
    gave_up: str | None = None
    rest: trio.CancelScope | None = None
    draining: bool = False
    hosted_threads: set[str] = field(default_factory=set)
    lost_threads: dict[str, RetireReason] = field(default_factory=dict)
    """Threads that ended with an earlier worker here, and why it left: the conversation that
    comes back to one is told why it goes on in a fresh thread (`lose_threads`)."""
    releasing: bool = False
    """The worker that left is still being stopped, and its threads outlive it
    (`CodexWorker.resumes_threads`): until its process exits it still holds them, and
    another worker's resume of one is refused (``codex app-server``: one writer per thread)."""
    retire_reason: RetireReason | None = None
    retired: trio.Event = field(default_factory=trio.Event)
    incarnations: int = 0
    rss_checked_at: float = -math.inf

    @property
    def ready(self) -> bool:
        """A worker is in place, alive and not being retired."""
        return self.worker is not None and self.retire_reason is None and self.worker.alive

    @property
    def idle(self) -> bool:
        """Ready with no call in flight (recycled and counted as idle)."""
        return self.ready and not self.running

    @property
    def has_room(self) -> bool:
        """Ready and able to take another call now."""
        return self.ready and len(self.running) < self.capacity

    @property
    def restarts(self) -> int:
        """Workers started here after the first one (including failed starts)."""
        return max(self.incarnations - 1, 0)

    def wake(self) -> bool:
        """End the rest after a crash loop now, once it lasted `REST_MIN`: a request wants a
        worker, and the cause may be gone (Codex reinstalled, logged in again). Seen from
        outside: with the binary back, a request was still refused for up to a minute. The
        position starts over at once (no longer `gave_up`); should the start fail again, it
        gives up again at once and the request is refused with the reason. Whether it woke.
        """
        rest = self.rest
        if rest is None:
            return False
        rested = WORKER_COOLDOWN - (rest.deadline - trio.current_time())
        if rested < REST_MIN:
            return False
        rest.cancel()
        self.rest = None
        self.gave_up = None
        return True

    def retire(self, reason: RetireReason) -> None:
        """Have the current worker leave (the first reason given is the one kept)."""
        if self.retire_reason is None:
            self.retire_reason = reason
        if self.worker is not None and self.worker.resumes_threads:
            self.releasing = True  # until `_occupy` has stopped its process
        self.retired.set()

    def lose_threads(self, reason: RetireReason) -> None:
        """The worker hosting `hosted_threads` left for `reason`: remember why, for the
        conversations that come back to them (where its threads die with its process)."""
        for thread_id in self.hosted_threads:
            self.lost_threads.pop(thread_id, None)  # re-inserted as the newest
            self.lost_threads[thread_id] = reason
        while len(self.lost_threads) > LOST_THREADS_KEPT:
            del self.lost_threads[next(iter(self.lost_threads))]
        self.hosted_threads = set()

    def lost_because(self, thread_id: str) -> str | None:
        """Why `thread_id` ended with an earlier worker here (`THREAD_LOST`); None when it
        did not, or the reason has no words."""
        reason = self.lost_threads.get(thread_id)
        return None if reason is None else THREAD_LOST.get(reason)

    def retire_worker(self, worker: CodexWorker, reason: RetireReason) -> None:
        """Retire `worker` if it still holds this position: a run that ends after its worker
        was already replaced (another run's cancel) must not retire the replacement."""
        if self.worker is worker:
            self.retire(reason)

    def check_recycling(self, worker: CodexWorker, *, max_threads: int, max_rss_mb: float) -> None:
        """Drain `worker` once it hosts `max_threads` threads or uses `max_rss_mb` (0: no
        limit): no new threads go to it, and it is retired as soon as it is idle."""
        if self.retire_reason is not None or self.worker is not worker:
            return
        too_many = worker.threads >= max_threads
        rss = math.nan
        if max_rss_mb > 0 and (now := trio.current_time()) >= (
            self.rss_checked_at + RSS_CHECK_INTERVAL
        ):
            self.rss_checked_at = now
            rss = worker.rss_mb()
        too_big = rss >= max_rss_mb
        if too_many or too_big:
            self.draining = True
            logger.info(
                "worker %d is due for recycling (%d threads, %.0f MB)",
                self.worker_id,
                worker.threads,
                rss,
            )
            if not self.running:
                self.retire("recycled")

    def explain_shared_stop(self, failed: JobFailed, worker: CodexWorker) -> JobFailed:
        """Say why a run died when its worker was stopped for another run on it.

        Only with ``calls_per_worker`` > 1: a cancel or timeout that leaves the worker
        unusable ends every call in flight there. The run is not retried (it may have changed
        files already).
        """
        if self.last_stop is None or self.last_stop[0] != worker.pid:
            return failed
        why = {"cancelled": "cancel", "timeout": "time limit"}.get(self.last_stop[1])
        if why is None:
            return failed
        return JobFailed(
            failure="worker_died",
            message=f"the Codex worker it shared was stopped for another request's {why}; "
            "send it again to retry",
            worker_id=failed.worker_id,
            thread_id=failed.thread_id,
        )

    def status(self) -> WorkerStatus:
        """The position as `/status` shows it."""
        worker = self.worker
        state: Literal["starting", "idle", "busy", "draining", "dead"]
        if self.gave_up is not None:
            state = "dead"
        elif worker is None:
            state = "starting"
        elif not worker.alive:
            state = "dead"
        elif self.running:
            state = "busy"
        elif self.draining:
            state = "draining"
        else:
            state = "idle"
        return WorkerStatus(
            worker_id=self.worker_id,
            state=state,
            threads=worker.threads if worker else 0,
            pid=worker.pid if worker else None,
            conversation=", ".join(self.running) or None,
        )


async def supervise_position(
    position: WorkerPosition,
    *,
    open_worker: CodexWorkerFactory,
    ping_interval: float,
    policy: RestartPolicy,
    rng: random.Random,
    trace: TraceEmit,
    changed: Callable[[], None],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep a worker in `position` for the pool's lifetime (``supervise_one``, permanent).

    Reports started once its first worker is ready. A failure before that propagates (the
    pool does not start: a bad command must not bring the bot up half-broken). After that,
    when the supervisor gives up (intensity exceeded, or a fresh supervisor's first start
    failed) the position rests `WORKER_COOLDOWN` seconds, refusing work, and starts over.

    Inbox: none; the pool retires the current worker with `WorkerPosition.retire` (or
    `WorkerPosition.retire_worker` from a run), and reads the position's state.

    Emits: ``worker`` `TraceRecord`s through `trace` (started, why it stopped, gave up);
    calls `changed` whenever the position can take more or fewer calls (a worker ready,
    stopped, or the position giving up), so the pool serves its waiters.

    Backpressure: none; `trace` and `changed` never block.

    Shutdown: on cancel the worker being started or served leaves its context, whose stop
    is shielded and bounded; a worker retired for a cancel, a time limit or a death is first
    interrupted (shielded, bounded by `INTERRUPT_DEADLINE`). Nothing outlives the call.
    """

    async def occupy(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await _occupy(
            position,
            open_worker=open_worker,
            ping_interval=ping_interval,
            trace=trace,
            changed=changed,
            task_status=task_status,
        )

    spec = ChildSpec(
        name=f"codex worker {position.worker_id}",
        run=occupy,
        restart="permanent",
        returns_by_design=True,
    )
    status = task_status
    while True:
        try:
            await supervise_one(spec, policy, rng=rng, task_status=status)
            return
        except Exception as error:
            if not position.ever_ready:
                raise
            cause = (
                error.__cause__ if isinstance(error, RestartIntensityExceeded) else None
            ) or error
            position.gave_up = _gave_up_text(cause)
            logger.error(
                "worker %d gave up (%s); trying again in %g s",
                position.worker_id,
                error,
                WORKER_COOLDOWN,
            )
            trace(
                TraceRecord(
                    event="worker",
                    worker=position.worker_id,
                    outcome="gave up",
                    detail=position.gave_up,
                )
            )
            changed()  # waiters fail now if no position can serve
            with trio.move_on_after(WORKER_COOLDOWN) as position.rest:
                await trio.sleep_forever()
            position.rest = None
            position.gave_up = None
            status = trio.TASK_STATUS_IGNORED


def _gave_up_text(cause: BaseException) -> str:
    """Why a position gave up, as a chat shows it in a refusal (`actors.worker_pool`): the
    failure without the exception group it travelled in ("Exceptions from Trio nursery"),
    and without pids, which are for the log and would keep two alike reasons apart."""
    failure = sole_failure(cause)
    text = re.sub(r" \(pid \d+\)", "", str(failure))
    return text[:200] or type(failure).__name__


async def _occupy(
    position: WorkerPosition,
    *,
    open_worker: CodexWorkerFactory,
    ping_interval: float,
    trace: TraceEmit,
    changed: Callable[[], None],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """One worker in `position`: start it, serve until retired or broken, stop it."""
    position.incarnations += 1
    position.retired = trio.Event()
    position.retire_reason = None
    position.draining = False
    position.hosted_threads = set()
    try:
        # The factory bounds its own start (``codex.startup_timeout``): a deadline around
        # entering it would have to exit before the context it opened, which trio forbids.
        async with open_worker(position.worker_id) as worker:
            position.worker = worker
            trace(
                TraceRecord(
                    event="worker",
                    worker=position.worker_id,
                    outcome="started",
                    detail=f"pid {worker.pid}",
                )
            )
            logger.info("worker %d ready (pid %d)", position.worker_id, worker.pid)
            position.ever_ready = True
            changed()
            task_status.started()
            try:
                await _watch(position, worker, ping_interval)
            finally:
                position.worker = None
                reason: RetireReason = position.retire_reason or "died"
                position.last_stop = (worker.pid, reason)
                if not worker.resumes_threads:
                    position.lose_threads(reason)
                if reason in ("cancelled", "timeout", "died"):
                    with trio.move_on_after(INTERRUPT_DEADLINE, shield=True):
                        await worker.interrupt()
                trace(
                    TraceRecord(
                        event="worker",
                        worker=position.worker_id,
                        outcome=reason,
                        detail=f"pid {worker.pid}",
                    )
                )
                changed()
    finally:
        if position.releasing:  # its process is gone, and the threads it held are free
            position.releasing = False
            changed()


async def _watch(position: WorkerPosition, worker: CodexWorker, ping_interval: float) -> None:
    """Wait for retirement; ping every `ping_interval`. A dead or wedged worker raises (a
    crash): a death is noticed as the process exits, a wedge at the next ping.

    A busy worker is pinged too: both Codex servers answer a ping in about a millisecond
    while turns run (measured on 0.153.4 and 0.171.0), so one that does not answer has
    stopped (SIGSTOPped, wedged), and its turns would otherwise wait for the endpoint
    watchdog (``endpoint_failure_limit``) to blame the model endpoint. Retiring it kills it:
    its turns end as a death, and one that had not started runs elsewhere.

    The failure is raised after the exit watcher has stopped, not inside its nursery: a
    crash there, racing a shutdown's cancel, would leave as a group with a `trio.Cancelled`
    that no supervisor counts as a crash."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_retire_on_exit, position, worker)
        failure = await _until_retired(position, worker, ping_interval)
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure


async def _retire_on_exit(position: WorkerPosition, worker: CodexWorker) -> None:
    await worker.wait_exited()
    position.retire_worker(worker, "died")


async def _until_retired(
    position: WorkerPosition, worker: CodexWorker, ping_interval: float
) -> WorkerUnavailable | None:
    """Serve until the worker is retired (None) or found dead or wedged (why)."""
    while True:
        with trio.move_on_after(ping_interval):
            await position.retired.wait()
        if position.retire_reason == "shutdown":  # dead or not, it is being stopped
            logger.info("worker %d retired: shutdown", position.worker_id)
            return None
        if position.retire_reason == "died" or not worker.alive:
            position.retire("died")
            return WorkerUnavailable(f"the Codex process exited unexpectedly (pid {worker.pid})")
        if position.retire_reason is not None:
            logger.info("worker %d retired: %s", position.worker_id, position.retire_reason)
            return None
        try:
            answered = await _answers_ping(worker)
        except WorkerUnavailable as died:
            position.retire("died")
            return died
        if not answered:
            position.retire("died")
            waited = PING_TIMEOUT + PING_RECHECK
            unanswered = (
                f"the Codex process did not answer a ping in {waited:g} s (pid {worker.pid})"
            )
            return WorkerUnavailable(unanswered)


async def _answers_ping(worker: CodexWorker) -> bool:
    """Whether `worker` answers a ping, asked once more after `PING_TIMEOUT` (`PING_RECHECK`).
    Raises `WorkerUnavailable` when it died."""
    for wait in (PING_TIMEOUT, PING_RECHECK):
        with trio.move_on_after(wait):
            await worker.ping()
            return True
    return False


def offer(progress: trio.MemorySendChannel[CodexProgress], event: CodexProgress) -> None:
    """Progress is lossy: drop the event when the chat is behind or gone."""
    with suppress(trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
        progress.send_nowait(event)
