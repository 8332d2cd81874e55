"""One Codex turn on a reserved worker, watched: the pool's run without the dispatch.

`actors.worker_pool` picks the worker and does the accounting; this runs the turn there
under three watches and turns what they saw into an outcome: ``request_timeout`` (the turn
is stopped: ``JobFailed("timeout")``), the stall warning after ``stall_timeout`` of silence
(`actors.worker_position.stall_guard`), and the endpoint watchdog (`endpoint_guard`: a turn
that only reconnects, or stays silent while no command runs and no human is asked, for
``endpoint_failure_limit`` s is stopped: ``JobFailed("stalled")``). A worker the backend
cannot stop a turn on in place is retired after such a stop. It also says whether the turn
was heard at all (an event or an approval): a worker that died before that ran nothing, so
the pool may send the job on to another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from actors.worker_position import (
    TurnWatch,
    endpoint_failure_text,
    endpoint_guard,
    offer,
    stall_guard,
)
from orchestrator.channels import ResponderGone, call
from orchestrator.messages import ApprovalDecision, ApprovalRequest, JobFailed

if TYPE_CHECKING:
    from actors.worker_position import WorkerPosition
    from orchestrator.messages import (
        ApprovalAsk,
        CodexJob,
        CodexProgress,
        JobFailure,
        JobOutcome,
    )
    from orchestrator.ports import CodexWorker

__all__ = ["TurnLimits", "ask", "watched_turn"]


@dataclass(frozen=True)
class TurnLimits:
    """The pool's limits on one turn, in seconds."""

    request_timeout: float
    stall_timeout: float
    endpoint_failure_limit: float


async def watched_turn(
    position: WorkerPosition,
    worker: CodexWorker,
    job: CodexJob,
    progress: trio.MemorySendChannel[CodexProgress],
    approvals: trio.MemorySendChannel[ApprovalRequest],
    limits: TurnLimits,
) -> tuple[JobOutcome, bool]:
    """Run `job` on `worker` (held by `position`): its outcome, and whether the turn was
    heard (an event or an approval came from it). Cancelling the caller cancels the turn."""
    last_event = [trio.current_time()]
    watch = TurnWatch(quiet_since=last_event[0])
    heard = [False]

    def on_event(event: CodexProgress) -> None:
        heard[0] = True
        last_event[0] = trio.current_time()
        watch.saw(event, last_event[0])
        offer(progress, event)

    async def on_approval(question: ApprovalAsk) -> ApprovalDecision:
        heard[0] = True
        last_event[0] = math.inf  # waiting for a human is not a stall
        watch.asking += 1
        try:
            return await ask(approvals, question)
        finally:
            last_event[0] = trio.current_time()
            watch.asking -= 1
            watch.quiet_since = last_event[0]

    outcome: JobOutcome | None = None
    with trio.move_on_after(limits.request_timeout) as deadline:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stall_guard, last_event, progress, limits.stall_timeout)
            nursery.start_soon(
                endpoint_guard, watch, limits.endpoint_failure_limit, nursery.cancel_scope
            )
            outcome = await worker.run_turn(job, on_event=on_event, on_approval=on_approval)
            nursery.cancel_scope.cancel()
    if outcome is not None:
        return outcome, heard[0]
    if not worker.reusable:
        position.retire_worker(worker, "timeout")
    if watch.fired:
        failure: JobFailure = "stalled"
        text = endpoint_failure_text(watch, limits.endpoint_failure_limit)
    else:
        assert deadline.cancelled_caught
        failure = "timeout"
        text = f"Codex did not finish within {limits.request_timeout:g} s; stopped it"
    stopped = JobFailed(
        failure=failure, message=text, worker_id=position.worker_id, thread_id=job.thread_id
    )
    return stopped, heard[0]


async def ask(
    approvals: trio.MemorySendChannel[ApprovalRequest], question: ApprovalAsk
) -> ApprovalDecision:
    """Send an approval request to the chat and wait for its answer; no answer = denied."""

    def request(reply_to: trio.MemorySendChannel[ApprovalDecision]) -> ApprovalRequest:
        return ApprovalRequest(ask=question, reply_to=reply_to)

    try:
        return await call(approvals, request)
    except (ResponderGone, trio.BrokenResourceError, trio.ClosedResourceError):
        return "denied"
