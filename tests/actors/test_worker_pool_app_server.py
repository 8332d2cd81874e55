"""The pool over a backend whose turns stop in place and whose threads outlive processes
(``codex app-server``, faked in memory), and the turn watchdog on both backends, in virtual
time: a cancel or time limit keeps the worker and the thread; a thread whose worker was
replaced, or a bot restarted, is resumed, not started afresh; an unreachable or silent model
endpoint ends the run with a plain message."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actors.worker_position import PING_RECHECK, PING_TIMEOUT, THREAD_BUSY, THREAD_STOPPING
from orchestrator.codex_runs import (
    AgentMessageDelta,
    ApprovalAsk,
    CodexNotice,
    CommandFinished,
    CommandStarted,
    JobDone,
    JobFailed,
    Reasoning,
    ThreadMoved,
    WaitingForWorker,
)
from tests.actors.test_worker_pool import PING_INTERVAL, Run, job, pool_of, run_one
from tests.fakes.codex_process import FakeProcesses


async def test_a_cancel_keeps_the_worker_and_the_thread(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = FakeProcesses(app_server=True)
    fakes.rule("forever", hang=True)
    async with pool_of(fakes, size=1) as pool:
        first = await run_one(pool, job("hello"))
        assert isinstance(first.outcome, JobDone)
        thread, worker = first.outcome.thread_id, first.outcome.worker_id
        pid = fakes.current(worker).pid
        with trio.move_on_after(5):
            await run_one(pool, job("forever loop", thread_id=thread, worker_id=worker))
        await trio.testing.wait_all_tasks_blocked()
        assert len(fakes.started) == 1  # not replaced
        assert not fakes.started[0].killed
        again = await run_one(pool, job("go on", thread_id=thread, worker_id=worker))
    assert isinstance(again.outcome, JobDone)
    assert (again.outcome.thread_id, again.outcome.moved) == (thread, False)
    assert fakes.started[0].pid == pid
    assert not any(isinstance(p, ThreadMoved) for p in again.progress)


async def test_a_time_limit_keeps_the_worker(autojump_clock: trio.testing.MockClock) -> None:
    fakes = FakeProcesses(app_server=True)
    fakes.rule("stuck", hang=True)
    async with pool_of(fakes, size=1, request_timeout=600) as pool:
        run = await run_one(pool, job("stuck"))
        await trio.testing.wait_all_tasks_blocked()
        assert isinstance(run.outcome, JobFailed)
        assert run.outcome.failure == "timeout"
        assert len(fakes.started) == 1
        assert isinstance((await run_one(pool, job("next"))).outcome, JobDone)


async def test_a_thread_is_resumed_after_its_worker_was_replaced(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = FakeProcesses(app_server=True)
    fakes.rule("boom", die=True)
    async with pool_of(fakes, size=1) as pool:
        first = await run_one(pool, job("hello"))
        assert isinstance(first.outcome, JobDone)
        thread = first.outcome.thread_id
        crashed = await run_one(pool, job("boom", conversation="c2"))
        assert isinstance(crashed.outcome, JobFailed)
        await trio.sleep(1)  # the restart backoff
        assert len(fakes.started) == 2
        again = await run_one(pool, job("go on", thread_id=thread, worker_id=0))
    assert isinstance(again.outcome, JobDone)
    assert (again.outcome.thread_id, again.outcome.moved) == (thread, False)
    assert fakes.resumed == [(0, thread)]
    assert fakes.started[1].calls[-1].thread_id == thread  # no fresh thread, no preamble
    assert not any(isinstance(p, ThreadMoved) for p in again.progress)


async def test_a_thread_is_resumed_after_a_restart_of_the_bot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = FakeProcesses(app_server=True)
    async with pool_of(fakes, size=2) as pool:
        first = await run_one(pool, job("hello"))
    assert isinstance(first.outcome, JobDone)
    async with pool_of(fakes, size=2) as restarted:
        again = await run_one(
            restarted,
            job("go on", thread_id=first.outcome.thread_id, worker_id=first.outcome.worker_id),
        )
    assert isinstance(again.outcome, JobDone)
    assert again.outcome.thread_id == first.outcome.thread_id
    assert not again.outcome.moved


async def test_a_thread_held_by_a_busy_worker_moves_to_a_fresh_thread(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = FakeProcesses(app_server=True)
    fakes.rule("slow", delay=100)
    fakes.rule("medium", delay=10)
    async with pool_of(fakes, size=2, affinity_wait=30) as pool:
        first = await run_one(pool, job("hello"))
        assert isinstance(first.outcome, JobDone)
        owner = first.outcome.worker_id
        async with trio.open_nursery() as nursery:
            # The other worker (fewer threads) takes the medium job; the owner the slow one.
            nursery.start_soon(Run(pool, job("medium work", conversation="c3")))
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(Run(pool, job("slow work", conversation="c2")))
            await trio.testing.wait_all_tasks_blocked()
            assert pool.statistics().workers[owner].state == "busy"
            follow = await run_one(
                pool, job("again", thread_id=first.outcome.thread_id, worker_id=owner)
            )
            nursery.cancel_scope.cancel()
    assert isinstance(follow.outcome, JobDone)
    assert follow.outcome.worker_id != owner
    assert follow.outcome.thread_id != first.outcome.thread_id  # its owner still holds it
    assert follow.outcome.moved
    assert follow.outcome.moved_because == THREAD_BUSY  # known only once the resume failed


@pytest.mark.parametrize(
    ("stop_delay", "kept"), [(3, True), (12, False)], ids=["stops-soon", "stops-late"]
)
async def test_a_thread_held_by_its_stopping_worker_is_resumed_once_it_exits(
    autojump_clock: trio.testing.MockClock, stop_delay: float, kept: bool
) -> None:
    """A worker a cancel left unusable (its server no longer answered) takes a while to stop,
    and until its process exits it holds the conversation's thread (one writer per thread):
    the conversation's next run waits for that exit, then resumes the thread on another
    worker, instead of going on in a fresh thread with a summary. It waits at most
    ``affinity_wait`` (10 s here)."""
    fakes = FakeProcesses(app_server=True)
    fakes.rule("forever", hang=True, deaf_to_interrupt=True)
    fakes.stop_delay = stop_delay
    async with pool_of(fakes, size=2, affinity_wait=10) as pool:
        first = await run_one(pool, job("hello"))
        assert isinstance(first.outcome, JobDone)
        thread, worker = first.outcome.thread_id, first.outcome.worker_id
        with trio.move_on_after(5):
            await run_one(pool, job("forever loop", thread_id=thread, worker_id=worker))
        cancelled_at = trio.current_time()
        again = await run_one(pool, job("go on", thread_id=thread, worker_id=worker))
        waited = trio.current_time() - cancelled_at
    assert isinstance(again.outcome, JobDone)
    waiting = [p for p in again.progress if isinstance(p, WaitingForWorker)]
    assert [p.releasing for p in waiting] == [True]
    if kept:
        assert waited == pytest.approx(stop_delay)
        assert (again.outcome.thread_id, again.outcome.moved) == (thread, False)
        assert fakes.resumed == [(again.outcome.worker_id, thread)]
    else:  # the old process still held it: a fresh thread, as before the wait
        assert waited == pytest.approx(10)
        assert again.outcome.thread_id != thread
        assert again.outcome.moved_because == THREAD_STOPPING


async def test_a_worker_that_stopped_answering_is_replaced_and_the_job_goes_on_elsewhere(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Seen from outside (an idle app-server SIGSTOPped before its next ping): the job went
    to it, heard nothing, and after ``endpoint_failure_limit`` failed with "Codex cannot reach
    its model endpoint"; the process, not the endpoint, had stopped answering. Nothing ran,
    so the job now goes on in its thread on the other worker once the silent one is gone,
    found by its next ping (busy workers are pinged too), long before the endpoint's limit."""
    fakes = FakeProcesses(app_server=True)
    async with pool_of(fakes, size=2, endpoint_failure_limit=90) as pool:
        first = await run_one(pool, job("hello"))
        assert isinstance(first.outcome, JobDone)
        thread, worker = first.outcome.thread_id, first.outcome.worker_id
        silent = fakes.current(worker)
        silent.wedged = True
        again = await run_one(pool, job("go on", thread_id=thread, worker_id=worker))
    assert isinstance(again.outcome, JobDone), again.outcome
    assert trio.current_time() == pytest.approx(PING_INTERVAL + PING_TIMEOUT + PING_RECHECK)
    assert (again.outcome.thread_id, again.outcome.moved) == (thread, False)
    assert fakes.resumed == [(again.outcome.worker_id, thread)]
    assert silent.killed


@pytest.mark.parametrize("app_server", [False, True], ids=["mcp", "app-server"])
async def test_a_worker_that_stops_answering_mid_turn_is_replaced_at_its_next_ping(
    autojump_clock: trio.testing.MockClock, app_server: bool
) -> None:
    """A server SIGSTOPped while its turn waits for the model was found only by the endpoint
    watchdog: 90 s, and the user told to check the network. A busy worker is pinged too now:
    the silent one is replaced after one unanswered ping, and its run ends as a death (not
    retried: it had started)."""
    fakes = FakeProcesses(app_server=app_server)
    fakes.rule("write", events=[AgentMessageDelta(text="Writing")], silent_for=500)
    async with pool_of(fakes, size=1, endpoint_failure_limit=90) as pool:
        run = Run(pool, job("write it"))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await trio.testing.wait_all_tasks_blocked()
            stopped = fakes.current(0)
            stopped.wedged = True
        assert trio.current_time() == pytest.approx(PING_INTERVAL + PING_TIMEOUT + PING_RECHECK)
        assert isinstance(run.outcome, JobFailed)
        assert run.outcome.failure == "worker_died"
        assert stopped.killed
        await trio.sleep(1)  # the restart's backoff
        assert fakes.current(0) is not stopped
        assert [len(process.calls) for process in fakes.started] == [1, 0]


@pytest.mark.parametrize("app_server", [False, True], ids=["mcp", "app-server"])
async def test_an_unreachable_endpoint_ends_the_run_with_a_plain_message(
    autojump_clock: trio.testing.MockClock, app_server: bool
) -> None:
    fakes = FakeProcesses(app_server=app_server)
    fakes.rule("hello", reconnecting=True)
    async with pool_of(fakes, size=1, endpoint_failure_limit=90) as pool:
        run = await run_one(pool, job("hello"))
        await trio.testing.wait_all_tasks_blocked()
        assert isinstance(run.outcome, JobFailed)
        assert run.outcome.failure == "stalled"
        assert trio.current_time() == pytest.approx(90)
        assert "cannot reach its model endpoint (Reconnecting... waiting for network)" in (
            run.outcome.message
        )
        assert "codex-orchestrator doctor" in run.outcome.message
        # The app-server worker stays; the MCP one cannot stop a call in place.
        assert len(fakes.started) == (1 if app_server else 2)


@pytest.mark.parametrize("app_server", [False, True], ids=["mcp", "app-server"])
async def test_time_the_bot_was_stopped_is_not_codexs_silence(
    autojump_clock: trio.testing.MockClock, app_server: bool
) -> None:
    """Seen from outside: the bot stopped (Ctrl-Z) while the model answered, and continued
    15 s later, past a 10 s ``endpoint_failure_limit``; the user read "Codex cannot reach its
    model endpoint (no answer for 10 s)", and the answer was lost. On waking, Codex's answer
    and the passed limits are due in the same moment: the answer is read first."""
    fakes = FakeProcesses(app_server=app_server)
    fakes.rule("answer slowly", silent_for=5)
    async with pool_of(fakes, size=1, endpoint_failure_limit=90, stall_timeout=300) as pool:
        run = Run(pool, job("answer slowly"))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await trio.testing.wait_all_tasks_blocked()
            autojump_clock.jump(400)  # stopped: Codex answered at 5 s, both limits passed
    assert isinstance(run.outcome, JobDone), run.outcome
    assert not [p for p in run.progress if isinstance(p, CodexNotice)]  # no stall warning
    assert len(fakes.started) == 1
    assert not fakes.started[0].killed


async def test_a_silent_endpoint_ends_the_run(autojump_clock: trio.testing.MockClock) -> None:
    fakes = FakeProcesses(app_server=True)
    fakes.rule("hello", hang=True)
    async with pool_of(fakes, size=1, endpoint_failure_limit=90) as pool:
        run = await run_one(pool, job("hello"))
    assert isinstance(run.outcome, JobFailed)
    assert run.outcome.failure == "stalled"
    assert "no answer for 90 s" in run.outcome.message
    assert trio.current_time() == pytest.approx(90)


async def test_a_silent_command_is_not_an_endpoint_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = FakeProcesses(app_server=True)
    fakes.rule("build", events=[CommandStarted(command="make")], silent_for=500)
    fakes.rule("quiet", silent_for=60)
    async with pool_of(fakes, size=1, endpoint_failure_limit=90) as pool:
        build = await run_one(pool, job("build it"))
        quiet = await run_one(pool, job("quiet"))
    assert isinstance(build.outcome, JobDone)
    assert isinstance(quiet.outcome, JobDone)  # 60 s of silence is under the limit


@pytest.mark.parametrize("app_server", [False, True], ids=["mcp", "app-server"])
async def test_a_model_reasoning_without_a_word_is_not_an_endpoint_failure(
    autojump_clock: trio.testing.MockClock, app_server: bool
) -> None:
    """Where reasoning summaries are off, a model that thinks says nothing between its
    reasoning item's start and end: that is work, as a silent command is. Only the stream's
    own failure (Codex's stream timeout, then its reconnect notices) lets go of the clock."""
    fakes = FakeProcesses(app_server=app_server)
    thinking = [Reasoning(item="start")]
    fakes.rule("think", events=thinking, silent_for=400)
    fakes.rule("broken", events=thinking, reconnecting=True)
    async with pool_of(fakes, size=1, endpoint_failure_limit=90) as pool:
        think = await run_one(pool, job("think hard"))
        assert isinstance(think.outcome, JobDone)
        started = trio.current_time()
        broken = await run_one(pool, job("broken stream"))
    assert isinstance(broken.outcome, JobFailed)
    assert broken.outcome.failure == "stalled"
    assert trio.current_time() - started == pytest.approx(90, abs=1)


async def test_the_limit_counts_from_the_last_progress(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = FakeProcesses(app_server=True)
    fakes.rule(
        "build",
        events=[CommandStarted(command="make"), CommandFinished(command="make", exit_code=0)],
        silent_for=80,
    )
    async with pool_of(fakes, size=1, endpoint_failure_limit=90) as pool:
        run = await run_one(pool, job("build"))
    assert isinstance(run.outcome, JobDone)


@pytest.mark.parametrize(
    ("after_the_answer", "ends_at"),
    [({"silent_for": 80}, None), ({"hang": True}, 200 + 90)],
    ids=["then-works", "then-silent"],
)
async def test_a_human_taking_their_time_is_not_an_endpoint_failure(
    autojump_clock: trio.testing.MockClock,
    after_the_answer: dict[str, object],
    ends_at: float | None,
) -> None:
    """The clock is held while an approval waits (200 s, past the 90 s limit) and starts
    again from the answer: 80 s of silence after it is fine, endless silence ends 90 s later."""
    fakes = FakeProcesses(app_server=True)
    ask = ApprovalAsk(kind="exec", message="run?", command="make")
    fakes.rule("deploy", approval=ask, **after_the_answer)
    async with pool_of(fakes, size=1, endpoint_failure_limit=90) as pool:
        run = Run(pool, job("deploy"))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            request = await run.approvals.receive()
            await trio.sleep(200)
            request.reply_to.send_nowait("approved")
        if ends_at is None:
            assert isinstance(run.outcome, JobDone)
        else:
            assert isinstance(run.outcome, JobFailed)
            assert run.outcome.failure == "stalled"
            assert "no answer for 90 s" in run.outcome.message
            assert trio.current_time() == pytest.approx(ends_at)
