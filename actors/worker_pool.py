"""The Codex worker pool: warm, session-affine, cancellable, self-healing.

Why it looks like this (reference/CODEX.md): a Codex thread lives only in the process that
created it; a cancelled call leaves its process unusable; commands Codex starts survive a
kill of the process group; memory grows with every thread and is never freed. So:

- **Warm.** ``size`` workers (one ``codex mcp-server`` each) are started and handshaken before
  `open_worker_pool` returns, i.e. before the poller takes the first message.
- **One call per worker by default.** A worker hosts the threads of many conversations but
  runs ``calls_per_worker`` calls at a time (default 1), so a cancel kills exactly the
  cancelled run's worker. With more, runs share a process (fewer workers for as many chats)
  and a cancel or timeout of one ends the others on that worker too: they fail with a reply
  saying so, and are never re-run behind the user's back.
- **Affinity.** A job that continues a thread goes to the worker hosting it. If that worker is
  busy (running ``calls_per_worker`` calls of others) the job waits its turn (the chat is told
  once with `WaitingForWorker`) for up to ``affinity_wait`` seconds, then moves: a fresh thread
  on a free worker with the job's context preamble (`ThreadMoved`, ``JobDone.moved``). A job
  whose worker is gone (crash, cancel, recycle) moves the same way. New conversations go to
  the worker with the fewest calls in flight, then the fewest threads.
- **Cancel.** Cancelling the caller of `WorkerPoolHandle.run` kills the serving worker's whole
  process tree; its supervisor starts a replacement at once. Other workers are untouched.
- **Health.** Idle workers are pinged every ``ping_interval``; a failed ping or a worker that
  died is a crash: the supervisor restarts it with backoff and an intensity limit. A worker
  that keeps crashing past the limit never takes the bot down (DESIGN.md): its position gives
  up, rests `WORKER_COOLDOWN` seconds and starts over. While no position can serve, jobs fail
  at once with the reason instead of waiting. Only the very first start of a worker fails
  the pool (a bad command: the bot must not come up half-broken).
- **Stall and timeout.** No event for ``stall_timeout`` → a warning to the chat (once per
  silence); ``request_timeout`` → the run is stopped, its worker killed and replaced, and the
  caller gets ``JobFailed("timeout")``.
- **Recycling.** A worker past ``recycle_threads`` threads or ``recycle_rss_mb`` of memory is
  drained (no new threads; its conversations move on their next job) and restarted once idle.

The pool's state is a plain object shared by the tasks of one trio run (no locks needed: it
is only changed between checkpoints). Jobs that find no worker wait in a FIFO queue; on every
change the pool hands free workers to the waiters in arrival order, each by its own rules
(its thread's worker, or any worker once ``affinity_wait`` is over), and wakes only those.
Waking every waiter on every change cost O(waiters) per run: bench/scale.py saw the time
grow 2.4x for twice the chats.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import deque
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, Protocol, TypeAlias, final

import trio

from orchestrator.errors import RestartIntensityExceeded, WorkerUnavailable
from orchestrator.messages import (
    ApprovalDecision,
    ApprovalRequest,
    CodexNotice,
    JobDone,
    JobFailed,
    ThreadMoved,
    TraceRecord,
    WaitingForWorker,
)
from orchestrator.ports import PoolStatistics, WorkerStatus
from orchestrator.supervision import ChildRun, ChildSpec, RestartPolicy, supervise_one

if TYPE_CHECKING:
    import random
    from collections.abc import AsyncIterator, Awaitable, Callable
    from contextlib import AbstractAsyncContextManager

    from orchestrator.messages import (
        ApprovalAsk,
        CodexJob,
        CodexProgress,
        JobOutcome,
    )
    from orchestrator.ports import TraceEmit

__all__ = [
    "PING_TIMEOUT",
    "WORKER_COOLDOWN",
    "WORKER_POLICY",
    "CodexProcessFactory",
    "CodexProcessLike",
    "WorkerPoolHandle",
    "open_worker_pool",
]

logger: Final = logging.getLogger(__name__)

PING_TIMEOUT: Final = 10.0
"""Seconds a worker has to answer a ping before it counts as wedged."""

WORKER_POLICY: Final = RestartPolicy(
    intensity=5, period=60.0, backoff_initial=0.5, backoff_max=30.0
)
"""Crash restarts per worker: 5 within a minute make its supervisor give up (STYLE.md §2.6)."""

WORKER_COOLDOWN: Final = 60.0
"""Seconds a worker position rests after its supervisor gave up, before it starts over: a
crash loop (Codex broken, disk full) must neither spin nor stop the bot; it heals once the
cause is gone."""


class CodexProcessLike(Protocol):
    """What the pool needs from one worker process (`orchestrator.edges.codex_mcp`)."""

    worker_id: int
    pid: int
    threads: int

    @property
    def alive(self) -> bool:
        """False once the process exited."""
        ...

    def rss_mb(self) -> float:
        """Resident memory of the process tree."""
        ...

    async def call(
        self,
        job: CodexJob,
        *,
        on_event: Callable[[CodexProgress], None],
        on_approval: Callable[[ApprovalAsk], Awaitable[ApprovalDecision]],
    ) -> JobOutcome:
        """One Codex call."""
        ...

    async def ping(self) -> None:
        """MCP ping."""
        ...

    async def kill(self) -> None:
        """Kill the process tree."""
        ...


CodexProcessFactory: TypeAlias = "Callable[[int], AbstractAsyncContextManager[CodexProcessLike]]"
"""Starts worker `n`: entering spawns and handshakes, leaving stops the process tree."""

RetireReason = Literal["cancelled", "died", "recycled", "timeout", "shutdown"]


class _Refused(Exception):
    """No worker can take a job now; the message is fit to show the user."""


@dataclass(eq=False)
class _Waiter:
    """A job waiting for a worker; `granted` (or `refused`) is filled in by `_Pool.dispatch`."""

    job: CodexJob
    affinity_deadline: float
    granted: tuple[_Slot, bool] | None = None
    refused: str | None = None
    woken: trio.Event = field(default_factory=trio.Event)


@dataclass
class _Slot:
    """One worker position; its process changes on every restart.

    `running` holds the conversation of every call in flight on it or reserved for a caller
    that is about to start one; `stopped` is the pid and reason of its last incarnation, read
    by the other runs that its kill ended. `served` turns True once a process was ready;
    `gave_up` says why while the position rests after a crash loop.
    """

    worker_id: int
    capacity: int = 1
    process: CodexProcessLike | None = None
    running: list[str] = field(default_factory=list)
    stopped: tuple[int, RetireReason] | None = None
    served: bool = False
    gave_up: str | None = None
    draining: bool = False
    hosted_threads: set[str] = field(default_factory=set)
    retire_reason: RetireReason | None = None
    retire: trio.Event = field(default_factory=trio.Event)
    incarnations: int = 0

    @property
    def ready(self) -> bool:
        return self.process is not None and self.retire_reason is None and self.process.alive

    @property
    def idle(self) -> bool:
        """Ready with no call in flight (pinged, recycled and counted as idle)."""
        return self.ready and not self.running

    @property
    def has_room(self) -> bool:
        """Ready and able to take another call now."""
        return self.ready and len(self.running) < self.capacity

    def retire_now(self, reason: RetireReason) -> None:
        if self.retire_reason is None:
            self.retire_reason = reason
        self.retire.set()

    def retire_run_worker(self, process: CodexProcessLike, reason: RetireReason) -> None:
        """Retire `process` if it is still this slot's: a run that ends after its worker was
        already stopped (by another run's cancel) must not retire the replacement."""
        if self.process is process:
            self.retire_now(reason)


@final
class _Pool:
    """State and policy of the pool; `WorkerPoolHandle` is its public face."""

    def __init__(
        self,
        factory: Callable[[int], AbstractAsyncContextManager[CodexProcessLike]],
        *,
        size: int,
        affinity_wait: float,
        stall_timeout: float,
        request_timeout: float,
        ping_interval: float,
        recycle_rss_mb: float,
        recycle_threads: int,
        trace: TraceEmit,
        calls_per_worker: int = 1,
        cold_start: bool = False,
    ) -> None:
        self.factory = factory
        self.cold_start = cold_start
        self.cold_ids = itertools.count(size)
        self.slots = [_Slot(worker_id, capacity=calls_per_worker) for worker_id in range(size)]
        self.affinity_wait = affinity_wait
        self.stall_timeout = stall_timeout
        self.request_timeout = request_timeout
        self.ping_interval = ping_interval
        self.recycle_rss_mb = recycle_rss_mb
        self.recycle_threads = recycle_threads
        self.trace = trace
        self.queue: deque[_Waiter] = deque()
        self.runs_started = 0
        self.runs_failed = 0
        self.restarts = 0
        self.closing = False

    @property
    def waiting(self) -> int:
        return len(self.queue)

    def notify(self) -> None:
        """Something changed (a worker freed, started, retired): serve the waiters."""
        self.dispatch()

    def refusal(self) -> str | None:
        """Why no job can be served now (every position gave up), or None."""
        if not all(slot.gave_up for slot in self.slots):
            return None
        reasons = "; ".join(sorted({slot.gave_up or "" for slot in self.slots}))
        return (
            f"no Codex worker is running: they kept crashing ({reasons}). The bot tries "
            f"again within {WORKER_COOLDOWN:g} s; `codex-orchestrator doctor` shows why"
        )

    def dispatch(self) -> None:
        """Hand free workers to waiting jobs, oldest first; wake only the served ones.

        A worker is reserved for its waiter (``running``) at once, so a later waiter or a
        new job cannot take it before the waiter runs.
        """
        if not self.queue:
            return
        refusal = self.refusal()
        if refusal is not None:
            for waiter in self.queue:
                waiter.refused = refusal
                waiter.woken.set()
            self.queue.clear()
            return
        now = trio.current_time()
        for waiter in list(self.queue):
            if not any(slot.has_room and not slot.draining for slot in self.slots):
                return
            choice = self._choose(waiter.job, affinity_over=now >= waiter.affinity_deadline)
            if choice is not None:
                choice[0].running.append(waiter.job.conversation)
                waiter.granted = choice
                self.queue.remove(waiter)
                waiter.woken.set()

    # ------------------------------------------------------------------ workers

    async def worker(
        self, slot: _Slot, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """One incarnation of a worker: start, serve until retired or broken, stop."""
        if slot.incarnations:
            self.restarts += 1
        slot.incarnations += 1
        slot.retire = trio.Event()
        slot.retire_reason = None
        slot.draining = False
        slot.hosted_threads = set()
        # The factory bounds its own start (``codex.startup_timeout``): a deadline around
        # entering it would have to exit before the context it opened, which trio forbids.
        async with self.factory(slot.worker_id) as process:
            slot.process = process
            self.trace(
                TraceRecord(
                    event="worker",
                    worker=slot.worker_id,
                    outcome="started",
                    detail=f"pid {process.pid}",
                )
            )
            logger.info("worker %d ready (pid %d)", slot.worker_id, process.pid)
            slot.served = True
            self.notify()
            task_status.started()
            try:
                await self._watch(slot, process)
            finally:
                slot.process = None
                reason: RetireReason = slot.retire_reason or "died"
                slot.stopped = (process.pid, reason)
                if reason in ("cancelled", "timeout", "died"):
                    with trio.CancelScope(shield=True):
                        await process.kill()
                self.trace(
                    TraceRecord(
                        event="worker",
                        worker=slot.worker_id,
                        outcome=reason,
                        detail=f"pid {process.pid}",
                    )
                )
                self.notify()

    async def _watch(self, slot: _Slot, process: CodexProcessLike) -> None:
        """Wait for retirement; ping while idle. A dead or wedged process raises (a crash)."""
        while True:
            with trio.move_on_after(self.ping_interval):
                await slot.retire.wait()
            if slot.retire_reason == "died" or not process.alive:
                slot.retire_now("died")
                raise WorkerUnavailable(f"worker {slot.worker_id} (pid {process.pid}) died")
            if slot.retire_reason is not None:
                logger.info("worker %d retired: %s", slot.worker_id, slot.retire_reason)
                return
            if not slot.running:
                with trio.move_on_after(PING_TIMEOUT) as ping_scope:
                    await process.ping()
                if ping_scope.cancelled_caught:
                    slot.retire_now("died")
                    raise WorkerUnavailable(
                        f"worker {slot.worker_id} did not answer a ping in {PING_TIMEOUT:g} s"
                    )

    # ------------------------------------------------------------------ runs

    def _owner_of(self, job: CodexJob) -> _Slot | None:
        if job.thread_id is None or job.worker_id is None:
            return None
        if not 0 <= job.worker_id < len(self.slots):
            return None
        slot = self.slots[job.worker_id]
        if job.thread_id in slot.hosted_threads and slot.ready and not slot.draining:
            return slot
        return None

    def _free_slot(self) -> _Slot | None:
        """The least-loaded worker with room: fewest calls in flight, then fewest threads."""
        candidates = [slot for slot in self.slots if slot.has_room and not slot.draining]
        if not candidates:
            return None
        return min(
            candidates,
            key=lambda slot: (len(slot.running), len(slot.hosted_threads), slot.worker_id),
        )

    def _choose(self, job: CodexJob, *, affinity_over: bool) -> tuple[_Slot, bool] | None:
        """The worker `job` may take now, and whether it moves to a fresh thread; None: wait.

        A conversation waits for the worker that owns its thread until its affinity time is
        over, then takes any free worker; others take the least-loaded free worker.
        """
        owner = self._owner_of(job)
        if owner is not None:
            if owner.has_room:
                return owner, False
            if not affinity_over:
                return None
            free = self._free_slot()
            return (free, True) if free is not None else None
        free = self._free_slot()
        return (free, job.thread_id is not None) if free is not None else None

    async def _acquire(
        self, job: CodexJob, progress: trio.MemorySendChannel[CodexProgress]
    ) -> tuple[_Slot, bool]:
        """A worker for `job` (reserved for it), and whether the job moves to a fresh thread.

        Raises:
            _Refused: no worker can serve (every position gave up after a crash loop).
        """
        refusal = self.refusal()
        if refusal is not None:
            raise _Refused(refusal)
        if not self.queue:  # nobody is ahead: no need to queue
            choice = self._choose(job, affinity_over=self.affinity_wait <= 0)
            if choice is not None:
                choice[0].running.append(job.conversation)
                return choice
        owner = self._owner_of(job)
        _offer(progress, WaitingForWorker(worker_id=owner.worker_id if owner else None))
        waiter = _Waiter(job, trio.current_time() + self.affinity_wait)
        self.queue.append(waiter)
        try:
            while True:
                if waiter.granted is None:
                    if trio.current_time() < waiter.affinity_deadline:
                        with trio.move_on_at(waiter.affinity_deadline):
                            await waiter.woken.wait()
                    else:
                        await waiter.woken.wait()
                if waiter.refused is not None:
                    raise _Refused(waiter.refused)
                if waiter.granted is None:
                    self.dispatch()  # its affinity time is over: any free worker will do
                    continue
                slot, moved = waiter.granted
                if slot.ready:
                    waiter.granted = None  # handed over to the caller
                    return slot, moved
                # The worker died between the grant and now: queue again, at the front.
                slot.running.remove(job.conversation)
                waiter.granted, waiter.woken = None, trio.Event()
                self.queue.appendleft(waiter)
                self.dispatch()
        finally:
            if waiter in self.queue:
                self.queue.remove(waiter)
            if waiter.granted is not None:  # cancelled after a grant: give the worker back
                waiter.granted[0].running.remove(job.conversation)
                self.notify()

    async def run(
        self,
        job: CodexJob,
        progress: trio.MemorySendChannel[CodexProgress],
        approvals: trio.MemorySendChannel[ApprovalRequest],
    ) -> JobOutcome:
        if self.cold_start:
            return await self._run_cold(job, progress, approvals)
        started = trio.current_time()
        try:
            slot, moved = await self._acquire(job, progress)
        except _Refused as refused:
            self.runs_failed += 1
            return JobFailed(failure="no_worker", message=str(refused), thread_id=job.thread_id)
        process = slot.process
        assert process is not None  # `_acquire` hands over ready workers only
        if moved:
            reason = (
                "your conversation's worker is gone"
                if self._owner_of(job) is None
                else "your conversation's worker stayed busy"
            )
            _offer(progress, ThreadMoved(reason=reason))
            job = _fresh(job)
        elif job.thread_id is not None and job.worker_id != slot.worker_id:
            job = _fresh(job)
            moved = True
        self.runs_started += 1
        self.notify()
        last_event = [trio.current_time()]

        def on_event(event: CodexProgress) -> None:
            last_event[0] = trio.current_time()
            _offer(progress, event)

        async def on_approval(ask: ApprovalAsk) -> ApprovalDecision:
            last_event[0] = math.inf  # waiting for a human is not a stall
            try:
                return await _ask(approvals, ask)
            finally:
                last_event[0] = trio.current_time()

        outcome: JobOutcome | None = None
        try:
            with trio.move_on_after(self.request_timeout) as deadline:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._stall_guard, last_event, progress)
                    outcome = await process.call(job, on_event=on_event, on_approval=on_approval)
                    nursery.cancel_scope.cancel()
            if deadline.cancelled_caught:
                slot.retire_run_worker(process, "timeout")
                outcome = JobFailed(
                    failure="timeout",
                    message=f"Codex did not finish within {self.request_timeout:g} s; stopped it",
                    worker_id=slot.worker_id,
                    thread_id=job.thread_id,
                )
        finally:
            slot.running.remove(job.conversation)
            if outcome is None:
                # Cancelled mid-call (by the chat or a shutdown): the process is unusable.
                slot.retire_run_worker(process, "cancelled")
            elif isinstance(outcome, JobFailed):
                self.runs_failed += 1
                if outcome.failure == "worker_died":
                    slot.retire_run_worker(process, "died")
                    outcome = _explain_shared_stop(outcome, slot, process)
            elif outcome is not None and isinstance(outcome, JobDone):
                slot.hosted_threads.add(outcome.thread_id)
            self._maybe_recycle(slot, process)
            self.notify()
            self.trace(
                TraceRecord(
                    event="worker",
                    worker=slot.worker_id,
                    outcome="run " + (type(outcome).__name__ if outcome else "cancelled"),
                    duration_ms=round((trio.current_time() - started) * 1000, 1),
                )
            )
        assert outcome is not None
        if isinstance(outcome, JobDone) and moved:
            return JobDone(
                text=outcome.text,
                thread_id=outcome.thread_id,
                worker_id=outcome.worker_id,
                usage=outcome.usage,
                moved=True,
            )
        return outcome

    async def _run_cold(
        self,
        job: CodexJob,
        progress: trio.MemorySendChannel[CodexProgress],
        approvals: trio.MemorySendChannel[ApprovalRequest],
    ) -> JobOutcome:
        """The original product's way: a fresh server per request, stopped afterwards."""
        fresh = _fresh(job)
        self.runs_started += 1
        async with self.factory(next(self.cold_ids)) as process:

            async def on_approval(ask: ApprovalAsk) -> ApprovalDecision:
                return await _ask(approvals, ask)

            with trio.move_on_after(self.request_timeout):
                return await process.call(
                    fresh, on_event=lambda event: _offer(progress, event), on_approval=on_approval
                )
        return JobFailed(failure="timeout", message="Codex did not finish in time")

    async def _stall_guard(
        self, last_event: list[float], progress: trio.MemorySendChannel[CodexProgress]
    ) -> None:
        """Tell the chat once per silence when Codex has sent nothing for a while."""
        warned_for = -math.inf
        while True:
            due = last_event[0] + self.stall_timeout
            if due == math.inf:  # waiting for a human's approval
                await trio.sleep(self.stall_timeout)
            elif trio.current_time() < due:
                await trio.sleep_until(due)
            else:
                if warned_for != last_event[0]:
                    warned_for = last_event[0]
                    _offer(
                        progress,
                        CodexNotice(
                            level="warning",
                            message=f"no progress from Codex for {self.stall_timeout:g} s; "
                            "/cancel stops the run",
                        ),
                    )
                await trio.sleep(self.stall_timeout)

    def _maybe_recycle(self, slot: _Slot, process: CodexProcessLike) -> None:
        if slot.retire_reason is not None or slot.process is not process:
            return
        too_many = process.threads >= self.recycle_threads
        too_big = self.recycle_rss_mb > 0 and process.rss_mb() >= self.recycle_rss_mb
        if too_many or too_big:
            slot.draining = True
            logger.info(
                "worker %d is due for recycling (%d threads, %.0f MB)",
                slot.worker_id,
                process.threads,
                process.rss_mb(),
            )
            if not slot.running:
                slot.retire_now("recycled")

    def statistics(self) -> PoolStatistics:
        workers = []
        for slot in self.slots:
            process = slot.process
            state: Literal["starting", "idle", "busy", "draining", "dead"]
            if slot.gave_up is not None:
                state = "dead"
            elif process is None:
                state = "starting"
            elif not process.alive:
                state = "dead"
            elif slot.running:
                state = "busy"
            elif slot.draining:
                state = "draining"
            else:
                state = "idle"
            workers.append(
                WorkerStatus(
                    worker_id=slot.worker_id,
                    state=state,
                    threads=process.threads if process else 0,
                    pid=process.pid if process else None,
                    conversation=", ".join(slot.running) or None,
                )
            )
        return PoolStatistics(
            workers=tuple(workers),
            waiting=self.waiting,
            runs_started=self.runs_started,
            runs_failed=self.runs_failed,
            restarts=self.restarts,
        )


def _explain_shared_stop(failed: JobFailed, slot: _Slot, process: CodexProcessLike) -> JobFailed:
    """Say why a run died when its worker was stopped for another run on it.

    Only with ``calls_per_worker`` > 1: a cancel or timeout kills the process and with it
    every call in flight there. The run is not retried (it may have changed files already).
    """
    if slot.stopped is None or slot.stopped[0] != process.pid:
        return failed
    why = {"cancelled": "cancel", "timeout": "time limit"}.get(slot.stopped[1])
    if why is None:
        return failed
    return JobFailed(
        failure="worker_died",
        message=f"the Codex worker it shared was stopped for another request's {why}; "
        "send it again to retry",
        worker_id=failed.worker_id,
        thread_id=failed.thread_id,
    )


def _fresh(job: CodexJob) -> CodexJob:
    """The job as a fresh thread (its preamble carries the conversation over)."""
    from msgspec import structs

    return structs.replace(job, thread_id=None, worker_id=None)


def _offer(progress: trio.MemorySendChannel[CodexProgress], event: CodexProgress) -> None:
    """Progress is lossy: drop the event when the chat is behind or gone."""
    with suppress(trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
        progress.send_nowait(event)


async def _ask(
    approvals: trio.MemorySendChannel[ApprovalRequest], ask: ApprovalAsk
) -> ApprovalDecision:
    """Send an approval request to the chat and wait for its answer; no answer = denied."""
    reply_send, reply_receive = trio.open_memory_channel[ApprovalDecision](1)
    with reply_receive:
        with reply_send:
            try:
                await approvals.send(ApprovalRequest(ask=ask, reply_to=reply_send.clone()))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return "denied"
        try:
            return await reply_receive.receive()
        except trio.EndOfChannel:
            return "denied"


@final
class WorkerPoolHandle:
    """What chats hold: `run` a job, read `statistics`. Implements `ports.CodexPool`."""

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool

    async def run(
        self,
        job: CodexJob,
        *,
        progress: trio.MemorySendChannel[CodexProgress],
        approvals: trio.MemorySendChannel[ApprovalRequest],
    ) -> JobOutcome:
        """Run `job` on a worker (see the module docstring for affinity and cancel)."""
        if self._pool.closing:
            return JobFailed(failure="no_worker", message="the bot is shutting down")
        return await self._pool.run(job, progress, approvals)

    def statistics(self) -> PoolStatistics:
        """A snapshot of every worker."""
        return self._pool.statistics()


@asynccontextmanager
async def open_worker_pool(
    factory: Callable[[int], AbstractAsyncContextManager[CodexProcessLike]],
    *,
    size: int,
    affinity_wait: float,
    stall_timeout: float,
    request_timeout: float,
    ping_interval: float,
    recycle_rss_mb: float,
    recycle_threads: int,
    rng: random.Random,
    trace: TraceEmit,
    calls_per_worker: int = 1,
    cold_start: bool = False,
    policy: RestartPolicy = WORKER_POLICY,
) -> AsyncIterator[WorkerPoolHandle]:
    """Start `size` warm workers, yield the handle, and stop them all on exit.

    ``calls_per_worker`` calls run at once on one worker; 1 (the default) is what keeps a
    cancel from touching other runs.
    ``cold_start`` reproduces the original product (a server per request) for benchmarks;
    the warm workers are still started (``size`` may be 1) but not used.

    Inbox: none; chats call `WorkerPoolHandle.run` (the caller's task does the dispatch on
    the shared pool state, so a waiting job costs only its caller).

    Emits: `CodexProgress` (incl. `WaitingForWorker`, `ThreadMoved`, stall `CodexNotice`) on
    the job's progress channel; `ApprovalRequest` on the job's approvals channel; `worker`
    `TraceRecord`s (started, exit reason, run outcome with duration) through ``trace``.

    Backpressure: progress is lossy (``send_nowait``, dropped on ``WouldBlock``); an approval
    request blocks that run only (a closed channel or reply counts as ``denied``); a job that
    finds no free worker waits in its caller's task (``statistics().waiting``).

    Shutdown: on context exit new runs get ``JobFailed("no_worker")``, every worker is
    retired and its process stopped by the factory's shielded, bounded teardown (runs in
    flight are cancelled, which kills their process trees); no task outlives the context.

    Raises:
        WorkerStartError: a worker could not be started at all (bad command, not a Codex).
    """
    pool = _Pool(
        factory,
        size=size,
        affinity_wait=affinity_wait,
        stall_timeout=stall_timeout,
        request_timeout=request_timeout,
        ping_interval=ping_interval,
        recycle_rss_mb=recycle_rss_mb,
        recycle_threads=recycle_threads,
        trace=trace,
        calls_per_worker=calls_per_worker,
        cold_start=cold_start,
    )
    async with trio.open_nursery() as nursery:
        for slot in pool.slots:
            spec = ChildSpec(
                name=f"codex worker {slot.worker_id}",
                run=_bind(pool, slot),
                restart="permanent",
            )
            await nursery.start(_supervised, pool, slot, spec, policy, rng)
        try:
            yield WorkerPoolHandle(pool)
        finally:
            pool.closing = True
            for slot in pool.slots:
                slot.retire_now("shutdown")
            pool.notify()
            nursery.cancel_scope.cancel()


def _bind(pool: _Pool, slot: _Slot) -> ChildRun:
    """The worker body for `slot`, in the shape `supervise_one` runs."""

    async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await pool.worker(slot, task_status=task_status)

    return run


async def _supervised(
    pool: _Pool,
    slot: _Slot,
    spec: ChildSpec,
    policy: RestartPolicy,
    rng: random.Random,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Supervise one worker position for the pool's lifetime.

    A failure before the first process was ever ready propagates (the pool does not start).
    After that, when the supervisor gives up (intensity exceeded, or a fresh supervisor's
    first start failed) the position rests `WORKER_COOLDOWN` seconds and starts over.
    """
    status = task_status
    while True:
        try:
            await supervise_one(spec, policy, rng=rng, task_status=status)
            return
        except Exception as error:
            if not slot.served:
                raise
            cause = (
                error.__cause__ if isinstance(error, RestartIntensityExceeded) else None
            ) or error
            slot.gave_up = str(cause)[:200] or type(cause).__name__
            logger.error(
                "worker %d gave up (%s); trying again in %g s",
                slot.worker_id,
                error,
                WORKER_COOLDOWN,
            )
            pool.trace(
                TraceRecord(
                    event="worker",
                    worker=slot.worker_id,
                    outcome="gave up",
                    detail=slot.gave_up,
                )
            )
            pool.notify()  # waiters fail now if no position can serve
            await trio.sleep(WORKER_COOLDOWN)
            slot.gave_up = None
            status = trio.TASK_STATUS_IGNORED
