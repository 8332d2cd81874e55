"""A turn's watches in virtual time, with Codex's events coming through a reader, as the real
edges' do: an answer written at some moment reaches the turn a pass of the run loop later."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio
import trio.testing

from actors.worker_position import WorkerPosition
from actors.worker_turn import TurnLimits, watched_turn
from orchestrator.codex_runs import (
    AgentMessageDelta,
    ApprovalRequest,
    CodexNotice,
    CodexProgress,
    JobDone,
)
from tests.actors.test_worker_pool import job
from tests.fakes.codex_process import FakeProcess, FakeProcesses

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from orchestrator.codex_runs import ApprovalAsk, ApprovalDecision, CodexJob, JobOutcome


@dataclass
class ReadLater(FakeProcess):
    """Codex answers at `answers_at`; its reader (here the turn itself, waiting on the
    answer) is woken by that and runs in the next pass, as a pipe's reader does when the
    wait for I/O that the moment ended did not see the pipe (a bot stopped past it)."""

    answers_at: float = 0.0

    async def run_turn(
        self,
        job: CodexJob,
        *,
        on_event: Callable[[CodexProgress], None],
        on_approval: Callable[[ApprovalAsk], Awaitable[ApprovalDecision]],
    ) -> JobOutcome:
        send, pipe = trio.open_memory_channel[CodexProgress](1)

        async def codex() -> None:
            await trio.sleep_until(self.answers_at)
            send.send_nowait(AgentMessageDelta(text="the answer"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(codex)
            on_event(await pipe.receive())
        return JobDone(text="the answer", thread_id="t1", worker_id=self.worker_id)


async def test_an_answer_read_a_pass_after_the_limits_is_not_a_silence(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Seen from outside: a bot stopped (Ctrl-Z) past `endpoint_failure_limit` while Codex
    answered was told "Codex cannot reach its model endpoint" on waking, with the answer in
    the pipe: the wait for I/O the stop interrupted returned without it, and the next pass
    read it, too late for a deadline. Here the answer comes at the very moment both limits
    pass, and is read one pass later: the turn ends with it, without a stall warning."""
    limit = 90.0
    worker = ReadLater(worker_id=0, pid=1, owner=FakeProcesses(), answers_at=limit)
    progress_send, progress = trio.open_memory_channel[CodexProgress](10)
    approvals_send, _approvals = trio.open_memory_channel[ApprovalRequest](1)
    limits = TurnLimits(request_timeout=1800, stall_timeout=limit, endpoint_failure_limit=limit)
    outcome, reach = await watched_turn(
        WorkerPosition(0), worker, job("answer"), progress_send, approvals_send, limits
    )
    assert isinstance(outcome, JobDone), outcome
    assert reach == "working"
    assert trio.current_time() == limit
    events = [progress.receive_nowait() for _ in range(progress.statistics().current_buffer_used)]
    assert events == [AgentMessageDelta(text="the answer")]
    assert not any(isinstance(event, CodexNotice) for event in events)
