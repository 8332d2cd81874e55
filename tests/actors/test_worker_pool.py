"""The worker pool in virtual time, on in-memory Codex workers: dispatch, affinity, waiters,
and the pool as a whole (one position's own life is in test_worker_position.py)."""

from __future__ import annotations

import random
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from actors.worker_pool import (
    UNSTARTED_RETRIES,
    WORKER_COOLDOWN,
    WorkerPoolHandle,
    open_worker_pool,
)
from actors.worker_position import REST_MIN, THREAD_BUSY, THREAD_LOST
from orchestrator.codex_runs import (
    THREAD_GONE,
    AgentMessageDelta,
    ApprovalAsk,
    ApprovalRequest,
    CodexJob,
    CodexNotice,
    CodexProgress,
    JobDone,
    JobFailed,
    ThreadMoved,
    WaitingForWorker,
)
from orchestrator.errors import WorkerStartError
from orchestrator.supervision import RestartPolicy
from tests.fakes.codex_process import FakeProcesses

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from actors.worker_position import RetireReason
    from orchestrator.messages import TraceRecord

CEILING = 3600
PING_INTERVAL = 30.0


@asynccontextmanager
async def pool_of(
    fakes: FakeProcesses, size: int = 2, traces: list[TraceRecord] | None = None, **kw
) -> AsyncIterator[WorkerPoolHandle]:
    options = {
        "affinity_wait": 30.0,
        "stall_timeout": 300.0,
        "request_timeout": 1800.0,
        "ping_interval": PING_INTERVAL,
        "recycle_rss_mb": 1024.0,
        "recycle_threads": 200,
    } | kw
    async with open_worker_pool(
        fakes.factory,
        size=size,
        rng=random.Random(0),
        trace=(traces if traces is not None else []).append,
        **options,
    ) as pool:
        yield pool


class Run:
    """One job run with its progress collected."""

    def __init__(self, pool: WorkerPoolHandle, job: CodexJob) -> None:
        self.pool = pool
        self.job = job
        self.progress: list[CodexProgress] = []
        self.outcome: JobDone | JobFailed | None = None
        self.done = trio.Event()
        self.approvals_send, self.approvals = trio.open_memory_channel[ApprovalRequest](1)

    async def __call__(self) -> None:
        send, receive = trio.open_memory_channel[CodexProgress](100)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._collect, receive)
            with send:
                self.outcome = await self.pool.run(
                    self.job, progress=send, approvals=self.approvals_send
                )
        self.done.set()

    async def _collect(self, receive: trio.MemoryReceiveChannel[CodexProgress]) -> None:
        async for event in receive:
            self.progress.append(event)


def job(prompt: str, conversation: str = "c1", **kw) -> CodexJob:
    return CodexJob(
        conversation=conversation, prompt=prompt, cwd="/w", context_preamble="ctx", **kw
    )


async def run_one(pool: WorkerPoolHandle, the_job: CodexJob) -> Run:
    run = Run(pool, the_job)
    with trio.fail_after(CEILING):
        await run()
    return run


def forever_and_steady() -> FakeProcesses:
    """Fakes where "forever" never answers and "steady" answers after 50 s, its model at
    work from the start (a word of its answer)."""
    fakes = FakeProcesses()
    fakes.rule("forever", hang=True)
    fakes.rule("steady", delay=50, events=[AgentMessageDelta(text="Working")])
    return fakes


async def cancel_one_beside_a_steady_run(pool: WorkerPoolHandle) -> Run:
    """Run "steady work" (c2) to its end while "forever loop" (c1) is cancelled after 5 s."""
    steady = Run(pool, job("steady work", conversation="c2"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(steady)
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(5):
            await run_one(pool, job("forever loop"))
        await trio.testing.wait_all_tasks_blocked()
    return steady


async def test_workers_are_warm_before_the_handle_is_returned(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The first worker starts alone (a bad command is found once, a first npx download
    is made once), then the others at once: 2 s + 2 s, not 2 s per worker."""
    fakes = FakeProcesses()
    fakes.start_delay = 2.0
    began = trio.current_time()
    async with pool_of(fakes, size=3) as pool:
        assert trio.current_time() - began == pytest.approx(4.0)
        assert len(fakes.started) == 3
        assert [w.state for w in pool.statistics().workers] == ["idle"] * 3
    assert all(p.closed for p in fakes.started)


async def test_a_worker_that_fails_to_start_stops_the_others_starting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Worker 1 fails 1 s into its start while worker 2 takes 10 s: the pool fails at
    once with that failure, and worker 2's start is cancelled, nothing of it left."""
    fakes = FakeProcesses()
    fakes.start_delays = {1: 1.0, 2: 10.0}
    fakes.failing_workers = {1}
    began = trio.current_time()
    failure = pytest.RaisesExc(WorkerStartError, match="scripted start failure")
    with pytest.RaisesGroup(failure, allow_unwrapped=True, flatten_subgroups=True):
        async with pool_of(fakes, size=3):
            pass
    assert trio.current_time() - began == pytest.approx(1.0)
    assert [p.worker_id for p in fakes.started] == [0]
    assert all(p.closed for p in fakes.started)


async def test_affinity_keeps_a_conversation_on_its_worker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = FakeProcesses()
    async with pool_of(fakes) as pool:
        first = await run_one(pool, job("one"))
        assert isinstance(first.outcome, JobDone)
        other = await run_one(pool, job("other", conversation="c2"))
        assert isinstance(other.outcome, JobDone)
        assert other.outcome.worker_id != first.outcome.worker_id  # least loaded
        second = await run_one(
            pool,
            job("two", thread_id=first.outcome.thread_id, worker_id=first.outcome.worker_id),
        )
        assert isinstance(second.outcome, JobDone)
        assert second.outcome.thread_id == first.outcome.thread_id
        assert not second.outcome.moved
        continued = fakes.current(first.outcome.worker_id).calls[-1]
        assert continued.thread_id == first.outcome.thread_id


async def test_busy_worker_makes_the_job_wait_then_move(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = FakeProcesses()
    fakes.rule("slow", delay=100)
    async with pool_of(fakes, affinity_wait=30) as pool:
        first = await run_one(pool, job("hello"))
        assert isinstance(first.outcome, JobDone)
        owner = first.outcome.worker_id
        # Another conversation lands on the owner; make it the only free one.
        blocker = Run(pool, job("slow work", conversation="c2"))
        other_blocker = Run(pool, job("slow other", conversation="c3"))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(blocker)
            nursery.start_soon(other_blocker)
            await trio.testing.wait_all_tasks_blocked()
            assert {w.state for w in pool.statistics().workers} == {"busy"}
            started = trio.current_time()
            follow_up = Run(
                pool, job("follow up", thread_id=first.outcome.thread_id, worker_id=owner)
            )
            await follow_up()
            waited = trio.current_time() - started
        assert isinstance(follow_up.outcome, JobDone)
        assert isinstance(follow_up.progress[0], WaitingForWorker)
        # Both workers stayed busy past the affinity wait, so it ran when the first freed up.
        assert waited == pytest.approx(100)
        if follow_up.outcome.worker_id != owner:
            assert follow_up.outcome.moved
            assert any(isinstance(p, ThreadMoved) for p in follow_up.progress)


async def test_affinity_wait_then_moves_to_a_free_worker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = FakeProcesses()
    fakes.rule("slow", delay=100)
    fakes.rule("medium", delay=10)
    async with pool_of(fakes, affinity_wait=30) as pool:
        first = await run_one(pool, job("hello"))
        assert isinstance(first.outcome, JobDone)
        owner = first.outcome.worker_id
        async with trio.open_nursery() as nursery:
            # Worker 1 (fewer threads) takes the medium job; the owner then takes the slow one.
            nursery.start_soon(Run(pool, job("medium work", conversation="c3")))
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(Run(pool, job("slow work", conversation="c2")))
            await trio.testing.wait_all_tasks_blocked()
            started = trio.current_time()
            follow = await run_one(
                pool, job("hello again", thread_id=first.outcome.thread_id, worker_id=owner)
            )
            assert trio.current_time() - started == pytest.approx(30)
            nursery.cancel_scope.cancel()
        assert isinstance(follow.outcome, JobDone)
        assert follow.outcome.moved
        assert follow.outcome.worker_id != owner
        assert isinstance(follow.progress[0], WaitingForWorker)
        assert ThreadMoved() in follow.progress
        assert follow.outcome.moved_because == THREAD_BUSY
        moved_call = fakes.current(follow.outcome.worker_id).calls[-1]
        assert moved_call.thread_id is None
        assert moved_call.context_preamble == "ctx"


async def test_cancel_kills_only_that_worker_and_replaces_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = forever_and_steady()
    async with pool_of(fakes) as pool:
        steady = await cancel_one_beside_a_steady_run(pool)
        killed = [p for p in fakes.started if p.killed]
        assert len(killed) == 1
        assert isinstance(steady.outcome, JobDone)
        assert steady.outcome.worker_id != killed[0].worker_id
        assert len(fakes.started) == 3  # a replacement was started at once
        assert [w.state for w in pool.statistics().workers] == ["idle", "idle"]
        # The conversation on the killed worker continues elsewhere with its preamble.
        again = await run_one(pool, job("after", thread_id="gone", worker_id=killed[0].worker_id))
        assert isinstance(again.outcome, JobDone)
        assert again.outcome.moved
        assert again.outcome.moved_because == THREAD_GONE  # a thread it never hosted


@pytest.mark.parametrize("why", ["cancelled", "died", "recycled"])
async def test_a_conversation_whose_thread_ended_with_its_worker_is_told_why(
    autojump_clock: trio.testing.MockClock, why: RetireReason
) -> None:
    """On MCP a thread ends with its process: the conversation that comes back to it goes on
    in a fresh thread, and the reason it is given names what ended the process."""
    fakes = forever_and_steady()
    fakes.rule("boom", die=True)
    async with pool_of(fakes, size=1, recycle_threads=2) as pool:
        first = await run_one(pool, job("hello"))
        assert isinstance(first.outcome, JobDone)
        thread, worker = first.outcome.thread_id, first.outcome.worker_id
        if why == "cancelled":
            with trio.move_on_after(5):
                await run_one(pool, job("forever loop", thread_id=thread, worker_id=worker))
        elif why == "died":
            died = await run_one(pool, job("boom", thread_id=thread, worker_id=worker))
            assert isinstance(died.outcome, JobFailed)
        else:  # a second thread reaches recycle_threads
            await run_one(pool, job("other", conversation="c2"))
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(1)  # a crash's restart backoff
        again = await run_one(pool, job("again", thread_id=thread, worker_id=worker))
    assert isinstance(again.outcome, JobDone)
    assert again.outcome.moved
    assert again.outcome.thread_id != thread
    assert ThreadMoved() in again.progress
    assert again.outcome.moved_because == THREAD_LOST[why]


async def test_crash_mid_call_reports_worker_died_and_replaces(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = FakeProcesses()
    fakes.rule("boom", die=True)
    traces: list[TraceRecord] = []
    async with pool_of(fakes, traces=traces) as pool:
        started = trio.current_time()
        run = await run_one(pool, job("boom"))
        assert trio.current_time() - started < 10
        assert isinstance(run.outcome, JobFailed)
        assert run.outcome.failure == "worker_died"
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(1)  # the restart backoff (0.5 s at most)
        assert len(fakes.started) == 3
        assert pool.statistics().restarts == 1
    assert any(t.event == "worker" and t.outcome == "died" for t in traces)


@pytest.mark.parametrize("app_server", [False, True])
async def test_a_job_that_finds_its_worker_dead_before_any_event_runs_on_the_next(
    autojump_clock: trio.testing.MockClock, app_server: bool
) -> None:
    """The worker was killed as the job reached it (its exit not yet seen): nothing of the
    turn ran, so the job goes on to the other worker, once, and is not a failure."""
    fakes = FakeProcesses(app_server=app_server)
    traces: list[TraceRecord] = []
    async with pool_of(fakes, traces=traces) as pool:
        first = await run_one(pool, job("first"))
        assert isinstance(first.outcome, JobDone)
        holder = fakes.started[first.outcome.worker_id]
        holder.doomed = True
        again = await run_one(
            pool, job("again", thread_id=first.outcome.thread_id, worker_id=holder.worker_id)
        )
        assert isinstance(again.outcome, JobDone), again.outcome
        assert again.outcome.worker_id != holder.worker_id
        assert [call.prompt for call in holder.calls] == ["first", "again"]
        # The app-server resumes the thread elsewhere; MCP moves to a fresh one.
        assert (again.outcome.thread_id == first.outcome.thread_id) is app_server
        assert pool.statistics().runs_failed == 0
    assert any(t.outcome == "retry unstarted" for t in traces)


@pytest.mark.parametrize("app_server", [False, True], ids=["mcp", "app-server"])
async def test_a_worker_that_dies_before_the_model_said_anything_hands_the_job_on(
    autojump_clock: trio.testing.MockClock, app_server: bool
) -> None:
    """Seen from outside: a worker killed between the turn's start and the model's first
    word failed a request the model never saw ("The Codex process working on it stopped
    unexpectedly"). Nothing had run: the job goes on to the other worker, once; not after
    the model began."""
    fakes = FakeProcesses(app_server=app_server)
    fakes.rule("before the model", die_on_start=True)
    fakes.rule("after a word", die_on_start=True, events=[AgentMessageDelta(text="partly")])
    async with pool_of(fakes) as pool:
        handed_on = await run_one(pool, job("before the model"))
        assert isinstance(handed_on.outcome, JobFailed)  # the other worker died the same way
        assert [len(process.calls) for process in fakes.started] == [1, 1]
        await trio.sleep(1)  # the restarts' backoff
        began = await run_one(pool, job("after a word"))
        assert isinstance(began.outcome, JobFailed)
        assert began.outcome.failure == "worker_died"
        assert sum(len(process.calls) for process in fakes.started) == 3  # not run again
        assert pool.statistics().runs_failed == 2


@pytest.mark.parametrize("app_server", [False, True], ids=["mcp", "app-server"])
async def test_a_job_that_finds_every_worker_dead_runs_on_the_first_one_back(
    autojump_clock: trio.testing.MockClock, app_server: bool
) -> None:
    """Every worker killed at once (``pkill codex``), their exits not yet seen: the job met
    one dead worker, then the other, and failed ("stopped unexpectedly") although Codex
    never heard of it. It goes on until a worker is back."""
    fakes = FakeProcesses(app_server=app_server)
    async with pool_of(fakes) as pool:
        for process in fakes.started:
            process.doomed = True
        run = await run_one(pool, job("hello"))
        assert isinstance(run.outcome, JobDone), run.outcome
        assert [len(process.calls) for process in fakes.started] == [1, 1, 1]
        assert pool.statistics().runs_failed == 0


async def test_a_job_is_handed_on_a_bounded_number_of_times_when_workers_keep_dying(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Once per worker for deaths before Codex heard of the job, and once more
    (`UNSTARTED_RETRIES`) after that: a job that kills every worker it reaches does not take
    them down for ever."""
    fakes = FakeProcesses()
    fakes.rule("hello", die_on_start=True)
    async with pool_of(fakes) as pool:
        for process in fakes.started:
            process.doomed = True
        run = await run_one(pool, job("hello"))
        assert isinstance(run.outcome, JobFailed)
        assert run.outcome.failure == "worker_died"
        assert sum(len(process.calls) for process in fakes.started) == 2 + 1 + UNSTARTED_RETRIES
        assert pool.statistics().runs_failed == 1


async def test_request_timeout(autojump_clock: trio.testing.MockClock) -> None:
    fakes = FakeProcesses()
    fakes.rule("stuck", hang=True)
    async with pool_of(fakes, request_timeout=600) as pool:
        run = await run_one(pool, job("stuck"))
        assert isinstance(run.outcome, JobFailed)
        assert run.outcome.failure == "timeout"
        assert trio.current_time() == pytest.approx(600)
        await trio.testing.wait_all_tasks_blocked()
        assert sum(p.killed for p in fakes.started) == 1


async def test_stall_warning_is_sent_once_per_silence(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = FakeProcesses()
    fakes.rule("quiet", silent_for=700)
    async with pool_of(fakes, stall_timeout=300) as pool:
        run = await run_one(pool, job("quiet"))
    notices = [p for p in run.progress if isinstance(p, CodexNotice)]
    assert len(notices) == 1
    assert "/cancel" in notices[0].message


async def test_recycling_by_threads(autojump_clock: trio.testing.MockClock) -> None:
    fakes = FakeProcesses()
    async with pool_of(fakes, size=1, recycle_threads=2) as pool:
        await run_one(pool, job("a"))
        second = await run_one(pool, job("b", conversation="c2"))
        await trio.testing.wait_all_tasks_blocked()
        assert len(fakes.started) == 2
        assert not fakes.started[0].killed  # retired gracefully, not killed
        assert fakes.started[0].closed
        assert isinstance(second.outcome, JobDone)
        assert pool.statistics().workers[0].state == "idle"


async def test_recycling_by_memory(autojump_clock: trio.testing.MockClock) -> None:
    fakes = FakeProcesses()
    async with pool_of(fakes, size=1, recycle_rss_mb=500) as pool:
        fakes.started[0].rss = 900
        await run_one(pool, job("a"))
        await trio.testing.wait_all_tasks_blocked()
        assert len(fakes.started) == 2


async def test_a_crash_loop_gives_up_refuses_jobs_with_the_reason_then_heals(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = FakeProcesses()
    fakes.rule("boom", die=True)
    traces: list[TraceRecord] = []
    policy = RestartPolicy(intensity=2, period=60, backoff_initial=0.1, jitter=0)
    async with pool_of(fakes, size=1, traces=traces, policy=policy) as pool:
        fakes.fail_starts = 100  # every restart fails: a crash loop
        crashed = await run_one(pool, job("boom"))
        assert isinstance(crashed.outcome, JobFailed)
        assert crashed.outcome.failure == "worker_died"
        waiting = await run_one(pool, job("queued while restarting", conversation="c2"))
        assert any(isinstance(e, WaitingForWorker) for e in waiting.progress)
        assert isinstance(waiting.outcome, JobFailed)
        assert waiting.outcome.failure == "no_worker"
        assert "kept crashing" in waiting.outcome.message
        assert "scripted start failure" in waiting.outcome.message
        assert [w.state for w in pool.statistics().workers] == ["dead"]

        asked_at = trio.current_time()
        refused = await run_one(pool, job("hello", conversation="c3"))
        assert trio.current_time() == asked_at  # refused at once, not left waiting
        assert isinstance(refused.outcome, JobFailed)
        assert refused.outcome.failure == "no_worker"

        fakes.fail_starts = 0  # the cause is gone: the position starts over after its rest
        await trio.sleep(WORKER_COOLDOWN + 1)
        assert [w.state for w in pool.statistics().workers] == ["idle"]
        healed = await run_one(pool, job("hello again", conversation="c3"))
        assert isinstance(healed.outcome, JobDone)
    assert any(t.event == "worker" and t.outcome == "gave up" for t in traces)


async def test_workers_a_prompt_keeps_killing_give_up_with_a_reason_people_read(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Each worker starts, then dies under the prompt: the refusal says so in words, without
    a pid or the exception group the death travelled in ("Exceptions from Trio nursery")."""
    fakes = FakeProcesses()
    fakes.rule("boom", die=True)
    policy = RestartPolicy(intensity=2, period=60, backoff_initial=0.1, jitter=0)
    async with pool_of(fakes, size=1, policy=policy) as pool:
        for attempt in range(10):
            if [w.state for w in pool.statistics().workers] == ["dead"]:
                break
            await run_one(pool, job("boom", conversation=f"c{attempt}"))
            await trio.sleep(1)
        refused = await run_one(pool, job("hello", conversation="other"))
        assert isinstance(refused.outcome, JobFailed)
        assert refused.outcome.failure == "no_worker"
        assert "kept crashing (the Codex process exited unexpectedly)" in refused.outcome.message
        assert "pid" not in refused.outcome.message
        assert "Exceptions from" not in refused.outcome.message


async def test_a_position_that_fails_to_restart_keeps_resting_and_retrying(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = FakeProcesses()
    fakes.rule("boom", die=True)
    policy = RestartPolicy(intensity=0, period=60, backoff_initial=0.1, jitter=0)
    async with pool_of(fakes, size=1, policy=policy) as pool:
        fakes.fail_starts = 3  # the first start after each rest fails too, three times
        await run_one(pool, job("boom"))
        await trio.sleep(3 * WORKER_COOLDOWN + 1)
        assert [w.state for w in pool.statistics().workers] == ["dead"]
        assert fakes.fail_starts == 0
        await trio.sleep(WORKER_COOLDOWN)
        healed = await run_one(pool, job("hello"))
        assert isinstance(healed.outcome, JobDone)


async def test_a_request_wakes_the_workers_resting_after_a_crash_loop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Seen from outside: with the Codex binary back, a request was still refused ("no Codex
    worker is running") for up to the rest's minute. A request ends the rest once it lasted
    `REST_MIN`: the position starts over at once. While the cause is still there the request
    is refused at once, with the reason, after one start; the request then runs as soon as
    the cause is gone."""
    fakes = FakeProcesses()
    fakes.rule("boom", die=True)
    policy = RestartPolicy(intensity=0, period=60, backoff_initial=0.1, jitter=0)
    async with pool_of(fakes, size=1, policy=policy) as pool:
        fakes.fail_starts = 100  # Codex is gone: every start fails
        await run_one(pool, job("boom"))
        await trio.testing.wait_all_tasks_blocked()
        assert [w.state for w in pool.statistics().workers] == ["dead"]
        gave_up_at, attempts = trio.current_time(), fakes.fail_starts

        too_soon = await run_one(pool, job("too soon", conversation="c2"))
        assert isinstance(too_soon.outcome, JobFailed)
        assert too_soon.outcome.failure == "no_worker"
        assert fakes.fail_starts == attempts  # not woken within REST_MIN

        await trio.sleep(REST_MIN)
        still_broken = await run_one(pool, job("still broken", conversation="c2"))
        assert isinstance(still_broken.outcome, JobFailed)
        assert "scripted start failure" in still_broken.outcome.message
        assert "at your next request" in still_broken.outcome.message
        assert fakes.fail_starts == attempts - 1  # one start, then refused at once

        fakes.fail_starts = 0  # the binary is back
        await trio.sleep(REST_MIN)
        healed = await run_one(pool, job("healed", conversation="c2"))
        assert isinstance(healed.outcome, JobDone)
        assert trio.current_time() - gave_up_at < WORKER_COOLDOWN


async def test_a_worker_that_cannot_start_fails_the_pool(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = FakeProcesses()
    fakes.fail_starts = 1
    with pytest.RaisesGroup(WorkerStartError, allow_unwrapped=True, flatten_subgroups=True):
        async with pool_of(fakes):
            pass


@pytest.mark.parametrize(("answer", "expected"), [("approved", "[approved]"), (None, "[denied]")])
async def test_approvals_round_trip(
    autojump_clock: trio.testing.MockClock, answer: str | None, expected: str
) -> None:
    fakes = FakeProcesses()
    fakes.rule("deploy", approval=ApprovalAsk(kind="exec", message="run?", command="make deploy"))
    async with pool_of(fakes) as pool:
        run = Run(pool, job("deploy now"))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            request = await run.approvals.receive()
            assert request.ask.command == "make deploy"
            if answer is None:
                request.reply_to.close()  # the chat went away: counts as denied
            else:
                request.reply_to.send_nowait(answer)  # type: ignore[arg-type]
        assert isinstance(run.outcome, JobDone)
        assert run.outcome.text.endswith(expected)


async def test_statistics(autojump_clock: trio.testing.MockClock) -> None:
    fakes = FakeProcesses()
    async with pool_of(fakes, size=2) as pool:
        await run_one(pool, job("x"))
        stats = pool.statistics()
        assert stats.runs_started == 1
        assert stats.runs_failed == 0
        assert sum(w.threads for w in stats.workers) == 1
        assert {w.pid for w in stats.workers} == {p.pid for p in fakes.started}


async def test_waiting_jobs_get_workers_in_arrival_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = FakeProcesses()
    fakes.rule("work", delay=10)
    async with pool_of(fakes, size=2) as pool:
        runs = [Run(pool, job(f"work {n}", conversation=f"c{n}")) for n in range(12)]
        finished: list[int] = []

        async def run_and_note(n: int) -> None:
            await runs[n]()
            finished.append(n)

        with trio.fail_after(CEILING):
            async with trio.open_nursery() as nursery:
                for n in range(12):
                    nursery.start_soon(run_and_note, n)
                    await trio.testing.wait_all_tasks_blocked()  # queued in this order
                assert pool.statistics().waiting == 10
        # Two at a time, first come first served: jobs 2k and 2k+1 end together at 10(k+1) s.
        assert sorted(finished[:2]) == [0, 1]
        assert [sorted(finished[k : k + 2]) for k in range(0, 12, 2)] == [
            [k, k + 1] for k in range(0, 12, 2)
        ]
        assert all(isinstance(r.outcome, JobDone) for r in runs)
        assert pool.statistics().waiting == 0


async def test_a_job_cancelled_while_waiting_gives_its_turn_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = FakeProcesses()
    fakes.rule("work", delay=10)
    async with pool_of(fakes, size=1) as pool:
        busy = Run(pool, job("work busy", conversation="c1"))
        leaver = Run(pool, job("work leaver", conversation="c2"))
        stayer = Run(pool, job("work stayer", conversation="c3"))
        leaving = trio.CancelScope()

        async def leave_early() -> None:
            with leaving:
                await leaver()

        with trio.fail_after(CEILING):
            async with trio.open_nursery() as nursery:
                for task in (busy, leave_early, stayer):
                    nursery.start_soon(task)
                    await trio.testing.wait_all_tasks_blocked()
                assert pool.statistics().waiting == 2
                leaving.cancel()
                await trio.testing.wait_all_tasks_blocked()
                assert pool.statistics().waiting == 1
                started = trio.current_time()
                await stayer.done.wait()
                assert trio.current_time() - started == pytest.approx(20)  # busy's rest + own
        assert isinstance(stayer.outcome, JobDone)
        assert leaver.outcome is None
        assert [w.state for w in pool.statistics().workers] == ["idle"]


async def test_calls_per_worker_runs_that_many_calls_on_one_worker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = FakeProcesses()
    fakes.rule("work", delay=10)
    async with pool_of(fakes, size=1, calls_per_worker=2) as pool:
        runs = [Run(pool, job(f"work {n}", conversation=f"c{n}")) for n in range(3)]
        with trio.fail_after(CEILING):
            async with trio.open_nursery() as nursery:
                for run in runs:
                    nursery.start_soon(run)
                    await trio.testing.wait_all_tasks_blocked()
                assert fakes.in_flight == 2
                [worker] = pool.statistics().workers
                assert worker.state == "busy"
                assert worker.conversation == "c0, c1"
                assert pool.statistics().waiting == 1
                started = trio.current_time()
                await runs[2].done.wait()
                assert trio.current_time() - started == pytest.approx(20)
        assert all(isinstance(run.outcome, JobDone) for run in runs)
        assert not any(isinstance(e, WaitingForWorker) for e in runs[0].progress + runs[1].progress)
        assert any(isinstance(e, WaitingForWorker) for e in runs[2].progress)
        assert len(fakes.started) == 1


async def test_a_conversation_joins_its_busy_worker_while_it_has_room(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = FakeProcesses()
    fakes.rule("slow", delay=100)
    async with pool_of(fakes, size=2, calls_per_worker=2) as pool:
        first = await run_one(pool, job("hello"))
        assert isinstance(first.outcome, JobDone)
        owner = first.outcome.worker_id
        continued = Run(pool, job("slow again", thread_id=first.outcome.thread_id, worker_id=owner))
        async with trio.open_nursery() as nursery:
            # Least loaded first: c2 takes the worker without threads, c3 the owner.
            for task in (Run(pool, job("slow 2", "c2")), Run(pool, job("slow 3", "c3")), continued):
                nursery.start_soon(task)
                await trio.testing.wait_all_tasks_blocked()
            workers = pool.statistics().workers
            assert workers[owner].conversation == "c3, c1"  # c1 joined instead of waiting
            assert workers[1 - owner].conversation == "c2"
        assert isinstance(continued.outcome, JobDone)
        assert not continued.outcome.moved
        assert continued.outcome.thread_id == first.outcome.thread_id
        assert not any(isinstance(e, WaitingForWorker) for e in continued.progress)


async def test_a_cancel_on_a_shared_worker_ends_its_other_run_with_the_reason(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = forever_and_steady()
    async with pool_of(fakes, size=1, calls_per_worker=2) as pool:
        steady = await cancel_one_beside_a_steady_run(pool)
        assert isinstance(steady.outcome, JobFailed)
        assert steady.outcome.failure == "worker_died"
        assert "another request's cancel" in steady.outcome.message
        first, replacement = fakes.started
        assert first.killed
        assert replacement.alive
        assert pool.statistics().restarts == 1
        after = await run_one(pool, job("after", conversation="c3"))
        assert isinstance(after.outcome, JobDone)
        assert after.outcome.worker_id == 0
        assert replacement.calls[-1].prompt == "after"
