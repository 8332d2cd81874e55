"""One Codex turn on a reserved worker, watched: the pool's run without the dispatch.

`actors.worker_pool` picks the worker and does the accounting; this runs the turn there
under three watches and turns what they saw into an outcome:

- ``request_timeout``: the turn is stopped, ``JobFailed("timeout")``;
- the stall warning after ``stall_timeout`` of silence (`stall_guard`): the chat is told, the
  turn goes on;
- the endpoint watchdog (`TurnWatch`, `endpoint_watchdog`): a turn that only reconnects, or
  stays silent while no command runs and no human is asked, for ``endpoint_failure_limit`` s
  is stopped, ``JobFailed("stalled")``. Both backends retry an unreachable endpoint for
  ever, and a silent one hangs with no event at all (measured on Codex 0.171.0).

Both silences are Codex's only: time the bot itself did not run (stopped with Ctrl-Z, a
paused machine) while Codex's events waited for it does not count (`until_silent`).

A worker the backend cannot stop a turn on in place is retired after such a stop. It also
says how far the turn got (`TurnReach`; `began_work`: the model answered, or an approval was
asked): a worker that died before that ran nothing, so the pool may send the job on to
another. So may one that stopped answering (a wedged or stopped app-server: nothing since
the turn started, and its interrupt unanswered), which the watchdog would otherwise blame
on the model endpoint.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

import trio
import trio.lowlevel

from actors.worker_position import offer
from orchestrator.channels import ResponderGone, call
from orchestrator.codex_runs import (
    ApprovalDecision,
    ApprovalRequest,
    CodexNotice,
    CommandFinished,
    CommandStarted,
    JobFailed,
    Reasoning,
    RunStarted,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors.worker_position import WorkerPosition
    from orchestrator.codex_runs import ApprovalAsk, CodexJob, CodexProgress, JobFailure, JobOutcome
    from orchestrator.ports import CodexWorker

__all__ = [
    "TurnLimits",
    "TurnReach",
    "TurnWatch",
    "ask",
    "began_work",
    "endpoint_watchdog",
    "stall_guard",
    "until_silent",
    "watched_turn",
]

logger: Final = logging.getLogger(__name__)


@dataclass(frozen=True)
class TurnLimits:
    """The pool's limits on one turn, in seconds."""

    request_timeout: float
    stall_timeout: float
    endpoint_failure_limit: float


@dataclass
class TurnWatch:
    """What a run knows of its turn's liveness, for its endpoint watchdog.

    `quiet_since` is when the turn last made real progress: any event except a reconnect or
    stream-error notice (``Reconnecting... waiting for network`` arrives as events, forever,
    while the model endpoint is unreachable, so it must not count). The clock is held while
    a command runs (a silent ``sleep`` or build is work), a human is asked, or a reasoning
    item is open (a model may think for minutes without a word where its summaries are off;
    Codex's own stream timeout ends a dead stream, and its first stream error lets go).

    `scope` is the turn's: `endpoint_watchdog` cancels it once the turn has made no progress
    for `limit` seconds while nothing holds the clock (`due`).
    """

    quiet_since: float
    limit: float
    commands: int = 0
    asking: int = 0
    reasoning: int = 0
    last_error: str = ""
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    def saw(self, event: CodexProgress, now: float) -> None:
        """Account for one event of the turn."""
        match event:
            case CodexNotice(level="stream_error"):
                self.last_error = event.message
                self.reasoning = 0  # a stream that broke mid-thought: its silence counts again
                return
            case Reasoning(item="start"):
                self.reasoning += 1
            case Reasoning(item="end"):
                self.reasoning = max(self.reasoning - 1, 0)
            case CommandStarted():
                self.commands += 1
            case CommandFinished():
                self.commands = max(self.commands - 1, 0)
            case _:
                pass
        self.quiet_since = now

    def asked(self) -> None:
        """A human is asked (an approval): their time is not the endpoint's."""
        self.asking += 1

    def answered(self, now: float) -> None:
        """The human answered: the clock starts again from now."""
        self.asking -= 1
        self.quiet_since = now

    @property
    def held(self) -> bool:
        """A command runs, a human is asked or the model reasons: silence is not an endpoint
        failure."""
        return self.commands > 0 or self.asking > 0 or self.reasoning > 0

    @property
    def due(self) -> float:
        """When the turn's silence reaches the limit (``math.inf`` while held)."""
        return math.inf if self.held else self.quiet_since + self.limit

    @property
    def fired(self) -> bool:
        """The watchdog ended the turn."""
        return self.scope.cancelled_caught

    def failure_text(self) -> str:
        """What the user reads when the watchdog ended the turn."""
        cause = self.last_error or f"no answer for {self.limit:g} s"
        return (
            f"Codex cannot reach its model endpoint ({cause[:200]}). Check the network or the "
            "Codex login (`codex-orchestrator doctor`)."
        )


async def until_silent(due: Callable[[], float], recheck: float) -> None:
    """Return once the moment `due()` names has passed, judged after what has arrived is read.

    `due()` moves later with every event, and is ``math.inf`` while the silence does not
    count; then it is looked at every `recheck` seconds (the silence it stands for, so it
    cannot fall due unseen).

    A passed moment is judged two passes of the run loop later. A bot that was stopped
    (Ctrl-Z, a paused machine) while Codex went on wakes with the moment passed *and*
    Codex's events waiting in the pipe, and time the bot did not run is no silence of
    Codex's. The wait for I/O that the stop interrupted returns as timed out, without the
    pipe (seen from outside: the events came one pass after the moment); the next pass
    polls again and wakes the reader, which hands the events on synchronously in its step
    (`CodexWorker.run_turn`), before this task's second pass. A cancel scope's deadline
    would have cancelled the turn before any of that.
    """
    while True:
        at = due()
        if at == math.inf:
            await trio.sleep(recheck)
        elif trio.current_time() < at:
            await trio.sleep_until(at)
        else:
            for _ in range(2):  # a pass that polls for I/O, then one for what it woke
                await trio.lowlevel.checkpoint()
            if trio.current_time() >= due():
                return


async def endpoint_watchdog(watch: TurnWatch) -> None:
    """End the turn (`watch.scope`) once it has made no progress for its limit."""
    await until_silent(lambda: watch.due, watch.limit)
    watch.scope.cancel()


async def stall_guard(
    last_event: list[float],
    progress: trio.MemorySendChannel[CodexProgress],
    stall_timeout: float,
) -> None:
    """Tell the chat once per silence when Codex has sent nothing for `stall_timeout`.

    ``last_event[0]`` is when the run last heard from Codex (``math.inf`` while it waits
    for a human's approval, which is not a stall). Runs until cancelled.
    """
    warned_for = -math.inf

    def due() -> float:
        since = last_event[0]
        return math.inf if since == warned_for else since + stall_timeout

    while True:
        await until_silent(due, stall_timeout)
        warned_for = last_event[0]
        warning = f"no progress from Codex for {stall_timeout:g} s; /cancel stops the run"
        offer(progress, CodexNotice(level="warning", message=warning))


TurnReach = Literal["unheard", "started", "working"]
"""How far a turn got: Codex said nothing of it (``unheard``: a worker killed an instant
before the job reached it, its exit not yet seen, or one that stopped answering); it started
but the model said nothing and nothing ran (``started``: the turn's start, Codex's notices);
or it began its work (``working``, `began_work`)."""


async def watched_turn(
    position: WorkerPosition,
    worker: CodexWorker,
    job: CodexJob,
    progress: trio.MemorySendChannel[CodexProgress],
    approvals: trio.MemorySendChannel[ApprovalRequest],
    limits: TurnLimits,
) -> tuple[JobOutcome, TurnReach]:
    """Run `job` on `worker` (held by `position`): its outcome, and how far the turn got.
    Cancelling the caller cancels the turn."""
    last_event = [trio.current_time()]
    watch = TurnWatch(quiet_since=last_event[0], limit=limits.endpoint_failure_limit)
    reach: list[TurnReach] = ["unheard"]

    def on_event(event: CodexProgress) -> None:
        if began_work(event):
            reach[0] = "working"
        elif reach[0] == "unheard":
            reach[0] = "started"
        last_event[0] = trio.current_time()
        watch.saw(event, last_event[0])
        offer(progress, event)

    async def on_approval(question: ApprovalAsk) -> ApprovalDecision:
        reach[0] = "working"
        last_event[0] = math.inf  # waiting for a human is not a stall
        watch.asked()
        try:
            return await ask(approvals, question)
        finally:
            last_event[0] = trio.current_time()
            watch.answered(last_event[0])

    outcome: JobOutcome | None = None
    with trio.move_on_after(limits.request_timeout) as deadline:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stall_guard, last_event, progress, limits.stall_timeout)
            nursery.start_soon(endpoint_watchdog, watch)
            with watch.scope:
                outcome = await worker.run_turn(job, on_event=on_event, on_approval=on_approval)
            nursery.cancel_scope.cancel()
    if outcome is not None:
        return outcome, reach[0]
    if not worker.reusable:
        # Where a stop normally keeps the worker (its threads outlive it: app-server), a turn
        # that never began its work and whose interrupt got no answer either met a server
        # that stopped answering (wedged, stopped), not a model endpoint that did: nothing
        # ran, so the pool sends the job on to another worker.
        wedged = reach[0] != "working" and worker.resumes_threads
        position.retire_worker(worker, "died" if wedged else "timeout")
        if wedged:
            logger.warning(
                "worker %d (pid %d) stopped answering; replacing it and running the job elsewhere",
                position.worker_id,
                worker.pid,
            )
            unresponsive = JobFailed(
                failure="worker_died",
                message="the Codex worker stopped answering",
                worker_id=position.worker_id,
                thread_id=job.thread_id,
            )
            return unresponsive, reach[0]
    if watch.fired:
        failure: JobFailure = "stalled"
        text = watch.failure_text()
    else:
        assert deadline.cancelled_caught
        failure = "timeout"
        text = f"Codex did not finish within {limits.request_timeout:g} s; stopped it"
    stopped = JobFailed(
        failure=failure, message=text, worker_id=position.worker_id, thread_id=job.thread_id
    )
    return stopped, reach[0]


def began_work(event: CodexProgress) -> bool:
    """Whether `event` shows the turn at work: anything but its start and Codex's notices
    (a config warning, "Reconnecting..." while the model endpoint cannot be reached). Until
    then the model has said nothing and nothing has run, so a turn whose worker dies may go
    on elsewhere: seen from outside, a worker killed between ``turn/started`` and the
    model's first word failed a request the model never saw."""
    return not isinstance(event, RunStarted | CodexNotice)


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
