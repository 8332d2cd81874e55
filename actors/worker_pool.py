"""The Codex worker pool: warm, session-affine, cancellable, self-healing.

Why it looks like this: a Codex thread is served by the process that holds it; a cancelled
turn may leave its process unusable (it does on the MCP backend); commands Codex starts
survive a kill of the process group; memory grows with every thread and is never given back.
So, over any backend of the `orchestrator.ports.CodexWorker` port:

- **Warm.** ``size`` workers (one Codex process each) are started and ready before
  `open_worker_pool` returns, i.e. before the poller takes the first message: the first
  alone, then the others at once (`_start_together`).
- **One call per worker by default.** A worker hosts the threads of many conversations but
  runs ``calls_per_worker`` calls at a time (default 1), so a cancel that stops a worker
  stops only the cancelled run. With more, runs share a process (fewer workers for as many
  chats) and a cancel or timeout that leaves the worker unusable ends the others on it too:
  they fail with a reply saying so, and are never re-run behind the user's back (one whose
  model had not begun goes on elsewhere, as below: nothing of it ran).
- **Affinity** (the choice itself: `actors.worker_choice`). A job that continues a thread
  goes to the worker hosting it. If that worker is busy (running ``calls_per_worker`` calls
  of others) the job waits its turn (the chat is told once with `WaitingForWorker`) for up
  to ``affinity_wait`` seconds, then moves: a fresh thread on a free worker with the job's
  context preamble (`ThreadMoved`, ``JobDone.moved``). A job whose worker is gone (crash,
  cancel, recycle) moves the same way; so does one whose worker died before its turn began
  its work (`worker_turn.began_work`: between the turn's start and the model's first word):
  nothing ran, so it goes on to the next worker once (``UNSTARTED_RETRIES``) instead of
  failing with ``worker_died``. A worker that died before Codex said anything of the turn
  (killed an instant before the job reached it, its exit not yet seen) does not count
  against that: the job was never Codex's doing, and with every worker killed at once it
  meets each of them so, then runs on the first one back (at most one such try per
  worker). New conversations go to the worker with the fewest calls in flight, then the
  fewest threads.
- **Cancel.** Cancelling the caller of `WorkerPoolHandle.run` cancels the turn. A worker the
  backend can stop a turn on in place (``codex app-server``: `CodexWorker.reusable` stays True)
  is kept, with its threads; one the turn left unusable (MCP) is interrupted with its whole
  process tree and replaced at once by its position's supervisor. Other workers are untouched.
- **Threads outlive processes** where the backend allows (`CodexWorker.resumes_threads`,
  ``codex app-server``): a job whose worker is gone (or stayed busy past ``affinity_wait``)
  keeps its thread id and the worker it lands on resumes it. A worker being stopped holds its
  threads until its process exits (`WorkerPosition.releasing`), so a job whose thread last ran
  there waits for that exit first (within ``affinity_wait``). Only if the resume fails (a
  living process still holds the thread) does it run on a fresh thread with its preamble. On
  MCP the job moves to a fresh thread at once.
- **Endpoint watchdog.** A turn that makes no progress for ``endpoint_failure_limit`` seconds
  (only reconnect notices, or silence while no command runs, no human is asked and the model
  is not reasoning) is stopped
  like a time limit and fails with ``stalled`` and a plain message: both backends retry an
  unreachable model endpoint for ever.
- **Health, stall, recycling, crash loops** belong to each worker position
  (`actors.worker_position`): pings, busy or idle, a warning to the chat after
  ``stall_timeout`` of silence, ``request_timeout`` → the run is stopped and the caller gets
  ``JobFailed("timeout")``; a worker past ``recycle_threads`` threads or ``recycle_rss_mb``
  is drained and restarted once idle; a position that keeps crashing rests and starts over,
  and while no position can serve, jobs fail at once with the reason instead of waiting.

This module owns the dispatch. The pool's state is a plain object shared by the tasks of one
trio run (no locks needed: it is only changed between checkpoints). Jobs that find no worker
wait in a FIFO queue; on every change the pool hands free workers to the waiters in arrival
order, each by its own rules (its thread's worker, or any worker once ``affinity_wait`` is
over), and answers only those, on each waiter's one-shot reply channel. Waking every waiter
on every change cost O(waiters) per run: bench/scale.py saw the time grow 2.4x for twice the
chats. The whole picture is in docs/architecture.md, "Codex workers".
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, NamedTuple, TypeAlias, final

import trio
from msgspec import structs

from actors import worker_pool_controls
from actors.worker_choice import Grant, choose, held_while_stopping, owner_of, why_moved
from actors.worker_position import (
    WORKER_COOLDOWN,
    WORKER_POLICY,
    WorkerPosition,
    offer,
    supervise_position,
)
from actors.worker_turn import TurnLimits, TurnReach, ask, watched_turn
from orchestrator.channels import open_mailbox, reply_nowait
from orchestrator.codex_runs import (
    THREAD_GONE,
    ApprovalRequest,
    JobDone,
    JobFailed,
    ThreadMoved,
    WaitingForWorker,
)
from orchestrator.messages import TraceRecord
from orchestrator.ports import PoolStatistics

if TYPE_CHECKING:
    import random
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

    from orchestrator import ports
    from orchestrator.codex_runs import CodexJob, CodexProgress, JobOutcome
    from orchestrator.ports import CodexWorkerFactory, TraceEmit
    from orchestrator.supervision import RestartPolicy

__all__ = [
    "UNSTARTED_RETRIES",
    "WORKER_COOLDOWN",
    "WORKER_POLICY",
    "WorkerPoolHandle",
    "open_worker_pool",
]

UNSTARTED_RETRIES = 1
"""Times a job goes to another worker when its worker died after the turn started, before
the model said anything. (Deaths before Codex said anything of the turn are counted apart,
up to one per worker: `WorkerPoolHandle.run`.)"""


class _Refused(Exception):
    """No worker can take a job now; the message is fit to show the user."""


class _Refusal(NamedTuple):
    """No position can serve (every one gave up after a crash loop): why, for the user."""

    reason: str


_Answer: TypeAlias = Grant | _Refusal


@dataclass(eq=False)
class _Waiter:
    """A job waiting for a worker; `_Pool.dispatch` answers it once on `reply_to`."""

    job: CodexJob
    affinity_deadline: float
    reply_to: trio.MemorySendChannel[_Answer]


@final
class _Pool:
    """State and dispatch of the pool; `WorkerPoolHandle` is its public face."""

    def __init__(
        self,
        open_worker: CodexWorkerFactory,
        *,
        size: int,
        affinity_wait: float,
        stall_timeout: float,
        request_timeout: float,
        recycle_rss_mb: float,
        recycle_threads: int,
        trace: TraceEmit,
        calls_per_worker: int = 1,
        cold_start: bool = False,
        endpoint_failure_limit: float = math.inf,
    ) -> None:
        self.limits = TurnLimits(
            request_timeout=request_timeout,
            stall_timeout=stall_timeout,
            endpoint_failure_limit=endpoint_failure_limit,
        )
        self.open_worker = open_worker
        self.cold_start = cold_start
        self.cold_ids = itertools.count(size)
        self.positions = [
            WorkerPosition(worker_id, capacity=calls_per_worker) for worker_id in range(size)
        ]
        self.affinity_wait = affinity_wait
        self.recycle_rss_mb = recycle_rss_mb
        self.recycle_threads = recycle_threads
        self.trace = trace
        self.queue: deque[_Waiter] = deque()
        self.runs_started = 0
        self.runs_failed = 0
        self.closing = False

    def refusal(self) -> str | None:
        """Why no job can be served now (every position gave up), or None."""
        if not all(position.gave_up for position in self.positions):
            return None
        reasons = "; ".join(sorted({position.gave_up or "" for position in self.positions}))
        return (
            f"no Codex worker is running: they kept crashing ({reasons}). The bot starts "
            f"them again at your next request, or within {WORKER_COOLDOWN:g} s; "
            "`codex-orchestrator doctor` shows why"
        )

    def _wake_resting(self) -> bool:
        """End the rests after crash loops that lasted long enough (`WorkerPosition.wake`):
        whether any position starts over."""
        woken = [position.wake() for position in self.positions]
        return any(woken)

    def dispatch(self) -> None:
        """Something changed (a worker freed, started, retired): serve the waiters.

        Hands free workers to waiting jobs, oldest first, and answers only the served ones.
        A worker is reserved for its waiter (``running``) at once, so a later waiter or a new
        job cannot take it before the waiter runs.
        """
        if not self.queue:
            return
        refusal = self.refusal()
        if refusal is not None:
            for waiter in self.queue:
                reply_nowait(waiter.reply_to, _Refusal(refusal))
            self.queue.clear()
            return
        now = trio.current_time()
        for waiter in list(self.queue):
            if not any(p.has_room and not p.draining for p in self.positions):
                return
            grant = choose(
                self.positions, waiter.job, affinity_over=now >= waiter.affinity_deadline
            )
            if grant is not None:
                grant.position.running.append(waiter.job.conversation)
                self.queue.remove(waiter)
                if not reply_nowait(waiter.reply_to, grant):
                    grant.position.running.remove(waiter.job.conversation)

    async def _acquire(
        self, job: CodexJob, progress: trio.MemorySendChannel[CodexProgress]
    ) -> Grant:
        """A position for `job` (reserved for it), and whether the job moves to a fresh thread.

        Raises:
            _Refused: no worker can serve (every position gave up after a crash loop).
        """
        refusal = self.refusal()
        if refusal is not None and not self._wake_resting():
            raise _Refused(refusal)
        if not self.queue:  # nobody is ahead: no need to queue
            grant = choose(self.positions, job, affinity_over=self.affinity_wait <= 0)
            if grant is not None:
                grant.position.running.append(job.conversation)
                return grant
        owner = owner_of(self.positions, job)
        worker_id = owner.worker_id if owner else None
        releasing = held_while_stopping(self.positions, job)  # its owner then is gone: never both
        offer(progress, WaitingForWorker(worker_id=worker_id, releasing=releasing))
        reply_to, answers = open_mailbox[_Answer](1)
        with answers, reply_to:
            waiter = _Waiter(job, trio.current_time() + self.affinity_wait, reply_to)
            self.queue.append(waiter)
            try:
                return await self._wait_for_grant(waiter, answers)
            finally:
                if waiter in self.queue:
                    self.queue.remove(waiter)
                with suppress(trio.WouldBlock):
                    unclaimed = answers.receive_nowait()
                    if isinstance(unclaimed, Grant):  # cancelled after a grant: give it back
                        unclaimed.position.running.remove(job.conversation)
                        self.dispatch()

    async def _wait_for_grant(
        self, waiter: _Waiter, answers: trio.MemoryReceiveChannel[_Answer]
    ) -> Grant:
        """Wait in the queue until `dispatch` grants a ready position or refuses."""
        while True:
            answer: _Answer | None = None
            if trio.current_time() < waiter.affinity_deadline:
                with trio.move_on_at(waiter.affinity_deadline):
                    answer = await answers.receive()
            else:
                answer = await answers.receive()
            if answer is None:
                self.dispatch()  # its affinity time is over: any free worker will do
            elif isinstance(answer, _Refusal):
                raise _Refused(answer.reason)
            elif answer.position.ready:
                return answer
            else:
                # The worker died between the grant and now: queue again, at the front.
                answer.position.running.remove(waiter.job.conversation)
                self.queue.appendleft(waiter)
                self.dispatch()

    # ------------------------------------------------------------------ runs

    async def run(
        self,
        job: CodexJob,
        progress: trio.MemorySendChannel[CodexProgress],
        approvals: trio.MemorySendChannel[ApprovalRequest],
    ) -> JobOutcome:
        if self.cold_start:
            return await self._run_cold(job, progress, approvals)
        unheard_left, retries_left = len(self.positions), UNSTARTED_RETRIES
        while True:
            outcome, reach = await self._run_once(job, progress, approvals)
            died = isinstance(outcome, JobFailed) and outcome.failure == "worker_died"
            if not died or reach == "working":
                return outcome
            # The worker died before the turn began its work (killed, or died of its own,
            # as the job reached it or before the model said a word): nothing ran, so the
            # job goes to the next worker, on its thread where the backend resumes threads.
            # Not a second run. A death before Codex said anything of the turn is not the
            # job's doing (the worker was killed with the others, its exit not yet seen);
            # after the turn's start it might be, so that is tried again once only.
            if reach == "unheard" and unheard_left:
                unheard_left -= 1
            elif retries_left:
                retries_left -= 1
            else:
                return outcome
            self.runs_failed -= 1
            self.trace(TraceRecord(event="worker", worker=job.worker_id, outcome="retry unstarted"))

    async def _run_once(
        self,
        job: CodexJob,
        progress: trio.MemorySendChannel[CodexProgress],
        approvals: trio.MemorySendChannel[ApprovalRequest],
    ) -> tuple[JobOutcome, TurnReach]:
        """One attempt at `job`: its outcome, and how far its turn got."""
        started = trio.current_time()
        try:
            position, moved = await self._acquire(job, progress)
        except _Refused as refused:
            self.runs_failed += 1
            # Nothing ran: the conversation's thread, where it has one, is untouched.
            failed = JobFailed(
                failure="no_worker",
                message=str(refused),
                worker_id=job.worker_id,
                thread_id=job.thread_id,
                thread_kept=job.thread_id is not None,
            )
            return failed, "unheard"
        worker = position.worker
        assert worker is not None  # `_acquire` hands over ready positions only
        # Should a resume fail where the grant kept the thread, nothing more is known.
        why = why_moved(self.positions, job) if moved else THREAD_GONE
        if moved and worker.resumes_threads:
            # The thread outlives its process: this worker resumes it (a fresh thread with
            # the preamble only if that fails, e.g. its old process still holds it).
            job = structs.replace(job, worker_id=position.worker_id)
            moved = False
        elif moved:
            offer(progress, ThreadMoved())
            job = _fresh(job)
        self.runs_started += 1
        self.dispatch()
        outcome: JobOutcome | None = None
        reach: TurnReach = "unheard"
        try:
            outcome, reach = await watched_turn(
                position, worker, job, progress, approvals, self.limits
            )
        finally:
            position.running.remove(job.conversation)
            if outcome is None:
                # Cancelled mid-turn (by the chat or a shutdown).
                if not worker.reusable:
                    position.retire_worker(worker, "cancelled")
            elif isinstance(outcome, JobFailed):
                self.runs_failed += 1
                if outcome.failure == "worker_died":
                    position.retire_worker(worker, "died")
                    outcome = position.explain_shared_stop(outcome, worker)
                elif not worker.reusable:  # e.g. it answered something unreadable
                    position.retire_worker(worker, "died")
                if worker.resumes_threads and outcome.thread_id is not None:
                    # The failed turn stays in its thread, which any worker can resume.
                    outcome = structs.replace(outcome, thread_kept=True)
            else:
                position.hosted_threads.add(outcome.thread_id)
                if outcome.thread_id != job.thread_id and job.thread_id is not None:
                    moved = True  # its thread could not be resumed: a fresh one
            position.check_recycling(
                worker, max_threads=self.recycle_threads, max_rss_mb=self.recycle_rss_mb
            )
            self.dispatch()
            self.trace(
                TraceRecord(
                    event="worker",
                    worker=position.worker_id,
                    outcome="run " + (type(outcome).__name__ if outcome else "cancelled"),
                    duration_ms=round((trio.current_time() - started) * 1000, 1),
                )
            )
        assert outcome is not None  # None only while a cancellation propagates
        if isinstance(outcome, JobDone) and moved:
            return structs.replace(outcome, moved_because=why), reach
        return outcome, reach

    async def _run_cold(
        self,
        job: CodexJob,
        progress: trio.MemorySendChannel[CodexProgress],
        approvals: trio.MemorySendChannel[ApprovalRequest],
    ) -> JobOutcome:
        """The original product's way: a fresh server per request, stopped afterwards."""
        fresh = _fresh(job)
        self.runs_started += 1
        async with self.open_worker(next(self.cold_ids)) as worker:
            with trio.move_on_after(self.limits.request_timeout):
                return await worker.run_turn(
                    fresh,
                    on_event=partial(offer, progress),
                    on_approval=partial(ask, approvals),
                )
        return JobFailed(failure="timeout", message="Codex did not finish in time")

    def statistics(self) -> PoolStatistics:
        return PoolStatistics(
            workers=tuple(position.status() for position in self.positions),
            waiting=len(self.queue),
            runs_started=self.runs_started,
            runs_failed=self.runs_failed,
            restarts=sum(position.restarts for position in self.positions),
        )


def _fresh(job: CodexJob) -> CodexJob:
    """The job as a fresh thread (its preamble carries the conversation over)."""
    return structs.replace(job, thread_id=None, worker_id=None)


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

    async def release(self, thread_id: str, worker_id: int | None) -> tuple[str, ...]:
        """The conversation on `thread_id` is over: stop what its turns left running."""
        return await worker_pool_controls.release(self._pool.positions, thread_id, worker_id)

    async def steer(self, conversation: str, text: str) -> ports.SteerResult:
        """Add `text` to the turn the worker running `conversation` runs for it."""
        return await worker_pool_controls.steer(self._pool.positions, conversation, text)

    async def models(self) -> tuple[ports.ModelChoice, ...] | None:
        """The models Codex offers (None: the backend cannot list them)."""
        return await worker_pool_controls.models(self._pool.positions)

    async def rate_limits(self) -> ports.RateLimits | None:
        """The account's rate limits, where Codex reports them."""
        return await worker_pool_controls.rate_limits(self._pool.positions)

    async def stop_background(self, thread_id: str, worker_id: int | None) -> ports.StopResult:
        """Stop the commands `thread_id` left running on `worker_id`, and say which."""
        return await worker_pool_controls.stop_background(
            self._pool.positions, thread_id, worker_id
        )


@asynccontextmanager
async def open_worker_pool(
    open_worker: CodexWorkerFactory,
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
    endpoint_failure_limit: float = math.inf,
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
    retired and stopped by its factory's shielded, bounded teardown (runs in flight are
    cancelled, which interrupts their workers); no task outlives the context.

    Raises:
        WorkerStartError: a worker could not be started at all (bad command, not a Codex).
    """
    pool = _Pool(
        open_worker,
        size=size,
        affinity_wait=affinity_wait,
        stall_timeout=stall_timeout,
        request_timeout=request_timeout,
        recycle_rss_mb=recycle_rss_mb,
        recycle_threads=recycle_threads,
        trace=trace,
        calls_per_worker=calls_per_worker,
        cold_start=cold_start,
        endpoint_failure_limit=endpoint_failure_limit,
    )
    async with trio.open_nursery() as nursery:
        supervisors = [
            partial(
                supervise_position,
                position,
                open_worker=open_worker,
                ping_interval=ping_interval,
                policy=policy,
                rng=rng,
                trace=trace,
                changed=pool.dispatch,
            )
            for position in pool.positions
        ]
        await nursery.start(supervisors[0])
        await _start_together([partial(nursery.start, each) for each in supervisors[1:]])
        try:
            yield WorkerPoolHandle(pool)
        finally:
            pool.closing = True
            for position in pool.positions:
                position.retire("shutdown")
            pool.dispatch()
            nursery.cancel_scope.cancel()


async def _start_together(starts: Sequence[Callable[[], Awaitable[object]]]) -> None:
    """Run `starts` (the pool nursery's start of a position, up to its first ready worker)
    at once.

    The first worker starts alone before them (`open_worker_pool`): it finds a bad command
    once, and its start fills what the others then share (the npx cache of a first
    download, Codex's state database). One after the other, the bot's start grew by a
    worker's start (0.4 s of npx alone) per worker. The first failure cancels the other
    starts, which stop what they started, and is raised as a sequential start raised it.
    """
    try:
        async with trio.open_nursery() as starting:
            for start in starts:
                starting.start_soon(start)
    except BaseExceptionGroup as group:
        failures = [error for error in group.exceptions if not isinstance(error, trio.Cancelled)]
        if not failures:
            raise  # a stop of the bot: the scope that cancelled takes it
        raise failures[0] from None
