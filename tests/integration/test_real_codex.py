"""The Codex edge, the doctor's probe and the worker pool against the real Codex 0.153.4: call
and reply, cancel, a killed server, stall and time limit, recycling, two calls on one worker."""

from __future__ import annotations

import os
import random
import signal
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from actors.worker_pool import WorkerPoolHandle, open_worker_pool
from cli.doctor_probe import probe_worker
from orchestrator.codex_runs import (
    AgentMessageDelta,
    ApprovalAsk,
    ApprovalDecision,
    ApprovalRequest,
    CodexJob,
    CodexNotice,
    CodexProgress,
    CommandStarted,
    JobDone,
    JobFailed,
    JobOutcome,
    RunStarted,
    Sandbox,
)
from orchestrator.edges.codex_mcp import CodexProcess, open_codex_process
from orchestrator.wire.codex_mcp import CODEX_MCP_VERSION
from tests.fakes.mock_model import (
    Hang,
    MockModel,
    Shell,
    Text,
    codex_env,
    last_user_text,
    open_mock_model,
    write_codex_home,
)
from tests.procfs import cmdline, living, tree, wait_until_gone

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from contextlib import AbstractAsyncContextManager
    from pathlib import Path

CEILING = 120


def environment(home: Path) -> dict[str, str]:
    return {**os.environ, **codex_env(home)}


async def deny(ask: ApprovalAsk) -> ApprovalDecision:
    return "denied"


def open_real_codex(
    codex_binary: Path, home: Path, tmp_path: Path, worker_id: int = 0
) -> AbstractAsyncContextManager[CodexProcess]:
    """One real ``codex mcp-server`` with CODEX_HOME (and HOME) at `home`."""
    return open_codex_process(
        [str(codex_binary), "mcp-server"],
        env=environment(home),
        worker_id=worker_id,
        stderr_log=tmp_path / f"codex-{worker_id}.log",
    )


def job_in(
    cwd: Path, conversation: str, prompt: str, *, sandbox: Sandbox = "read-only"
) -> CodexJob:
    """A fresh-thread job that never asks for approval."""
    return CodexJob(
        conversation=conversation,
        prompt=prompt,
        cwd=str(cwd),
        sandbox=sandbox,
        approval_policy="never",
    )


async def test_smoke_initialize_list_call_reply(codex_binary: Path, tmp_path: Path) -> None:
    with trio.fail_after(CEILING):
        async with open_mock_model() as model:
            home = write_codex_home(tmp_path / "home", model.base_url)
            model.script([Text("Hello from the mock model")])
            events: list[CodexProgress] = []
            async with open_real_codex(codex_binary, home, tmp_path) as codex:
                assert codex.server_version == CODEX_MCP_VERSION
                job = job_in(tmp_path, "c", "hello there")
                first = await codex.run_turn(job, on_event=events.append, on_approval=deny)
                assert isinstance(first, JobDone), first
                assert first.text == "Hello from the mock model"
                second = await codex.run_turn(
                    CodexJob(
                        conversation="c",
                        prompt="second prompt",
                        cwd=str(tmp_path),
                        thread_id=first.thread_id,
                        worker_id=0,
                    ),
                    on_event=events.append,
                    on_approval=deny,
                )
                assert isinstance(second, JobDone), second
                assert second.text == "MOCK-REPLY: second prompt"
                assert second.thread_id == first.thread_id
                pid = codex.pid
    assert any("hello there" in str(request.get("input")) for request in model.requests)
    assert first.usage.total_tokens == 18  # the mock's usage, from the token_count event
    assert isinstance(events[0], RunStarted)
    assert AgentMessageDelta(text="Hello from the mock model") in events
    assert living({pid}) == set()


async def test_doctor_probe_against_the_real_codex(codex_binary: Path, tmp_path: Path) -> None:
    with trio.fail_after(CEILING):
        row = await probe_worker(
            0, (str(codex_binary), "mcp-server"), env=environment(tmp_path), startup_seconds=60
        )
    assert row.status == "ok", row
    assert f"codex-mcp-server {CODEX_MCP_VERSION}" in row.detail
    assert "codex-reply" in row.detail


async def test_cancel_kills_codex_and_the_commands_it_started(
    codex_binary: Path, tmp_path: Path
) -> None:
    with trio.fail_after(CEILING):
        async with open_mock_model() as model:
            home = write_codex_home(tmp_path / "home", model.base_url)
            model.script([Shell("sleep 300")], [Text("done")])
            events: list[CodexProgress] = []
            command_started = trio.Event()

            def on_event(event: CodexProgress) -> None:
                events.append(event)
                if isinstance(event, CommandStarted):
                    command_started.set()

            async with open_real_codex(codex_binary, home, tmp_path) as codex:
                job = job_in(tmp_path, "c", "run a long command", sandbox="danger-full-access")
                with trio.move_on_after(60) as scope:
                    async with trio.open_nursery() as nursery:

                        async def run() -> None:
                            await codex.run_turn(job, on_event=on_event, on_approval=deny)

                        nursery.start_soon(run)
                        await command_started.wait()
                        await trio.sleep(0.5)  # let bash start its sleep (a real process)
                        with trio.fail_after(1):  # busy, it answers the pool's pings at once
                            await codex.ping()
                        everything = tree(codex.pid)
                        nursery.cancel_scope.cancel()
                assert not scope.cancelled_caught
                assert codex.poisoned
                started = [event for event in events if isinstance(event, CommandStarted)]
                assert started[0].command == "sleep 300"  # without the bash -lc wrapper
                assert started[0].cwd == str(tmp_path)  # a path, not Codex's file:// URL
                commands = [cmdline(pid) for pid in living(everything)]
                assert any("sleep" in command for command in commands), commands
                await codex.interrupt()
                assert living(everything) == set()


@asynccontextmanager
async def pool_on_mock(
    codex_binary: Path, tmp_path: Path, **options: Any
) -> AsyncIterator[tuple[MockModel, WorkerPoolHandle]]:
    """The mock model and a worker pool of real Codex processes using it; `options` override
    the pool's settings."""

    def factory(worker_id: int) -> AbstractAsyncContextManager[CodexProcess]:
        return open_real_codex(codex_binary, home, tmp_path, worker_id)

    settings: dict[str, Any] = {
        "size": 1,
        "affinity_wait": 30,
        "stall_timeout": 60,
        "request_timeout": 60,
        "ping_interval": 30,
        "recycle_rss_mb": 0,
        "recycle_threads": 100,
    } | options
    async with open_mock_model() as model:
        home = write_codex_home(tmp_path / "home", model.base_url)
        async with open_worker_pool(
            factory, rng=random.Random(0), trace=lambda record: None, **settings
        ) as pool:
            yield model, pool


async def ask(pool: WorkerPoolHandle, job: CodexJob) -> JobOutcome:
    """Run `job` on `pool`, its progress dropped and any approval denied."""
    progress = trio.open_memory_channel[CodexProgress](1000)[0]
    approvals = trio.open_memory_channel[ApprovalRequest](1)[0]
    return await pool.run(job, progress=progress, approvals=approvals)


async def test_two_calls_at_once_on_one_worker_get_their_own_replies(
    codex_binary: Path, tmp_path: Path
) -> None:
    """``calls_per_worker = 2``: the edge routes each result and event by its request id."""
    with trio.fail_after(CEILING):
        async with pool_on_mock(codex_binary, tmp_path, calls_per_worker=2) as (_, pool):
            outcomes: dict[str, JobOutcome] = {}
            events: dict[str, list[CodexProgress]] = {}
            sharing: list[str | None] = []  # who the worker serves at each first event

            async def collect(name: str, out: trio.MemoryReceiveChannel[CodexProgress]) -> None:
                async for event in out:
                    if not events[name]:
                        sharing.append(pool.statistics().workers[0].conversation)
                    events[name].append(event)

            async def run(name: str) -> None:
                events[name] = []
                progress, progress_out = trio.open_memory_channel[CodexProgress](1000)
                approvals, _ = trio.open_memory_channel[ApprovalRequest](1)
                job = job_in(tmp_path, name, f"question from {name}")
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(collect, name, progress_out)
                    with progress:
                        outcomes[name] = await pool.run(job, progress=progress, approvals=approvals)

            async with trio.open_nursery() as nursery:
                for name in ("alpha", "beta"):
                    nursery.start_soon(run, name)
    in_flight = [sorted((names or "").split(", ")) for names in sharing]
    # Both calls were in flight at once when the events began to flow (by the second call's
    # first event, the first may be over: a loaded machine collects events late).
    assert len(in_flight) == 2
    assert ["alpha", "beta"] in in_flight
    for name in ("alpha", "beta"):
        outcome = outcomes[name]
        assert isinstance(outcome, JobDone), outcome
        assert outcome.text == f"MOCK-REPLY: question from {name}"
        deltas = "".join(e.text for e in events[name] if isinstance(e, AgentMessageDelta))
        assert deltas == outcome.text  # no event of the other call leaked in
    assert outcomes["alpha"].thread_id != outcomes["beta"].thread_id


async def test_a_silent_model_gets_a_stall_warning_then_the_time_limit(
    codex_binary: Path, tmp_path: Path
) -> None:
    """The model sends headers and then nothing: Codex waits silently (it has no timeout of its
    own for a stream that never starts), so the stall guard warns and ``request_timeout``
    ends the run and replaces the worker."""
    with trio.fail_after(CEILING):
        async with pool_on_mock(codex_binary, tmp_path, stall_timeout=1.5, request_timeout=4) as (
            model,
            pool,
        ):
            model.script([Hang()])
            hung_pid = pool.statistics().workers[0].pid
            assert hung_pid is not None
            everything = tree(hung_pid)
            progress, progress_out = trio.open_memory_channel[CodexProgress](1000)
            approvals, _ = trio.open_memory_channel[ApprovalRequest](1)
            began = trio.current_time()
            with progress:
                outcome = await pool.run(
                    job_in(tmp_path, "c", "say something"),
                    progress=progress,
                    approvals=approvals,
                )
            took = trio.current_time() - began
            events = [event async for event in progress_out]
            after = await ask(pool, job_in(tmp_path, "c2", "and now?"))
    assert isinstance(outcome, JobFailed), outcome
    assert outcome.failure == "timeout"
    assert 4 <= took < 10
    warnings = [e for e in events if isinstance(e, CodexNotice) and e.level == "warning"]
    assert len(warnings) == 1, events  # once per silence, not every stall_timeout
    assert "/cancel" in warnings[0].message
    assert living(everything) == set()  # the timed-out worker is gone
    assert isinstance(after, JobDone), after  # its replacement answers
    assert after.worker_id == 0


async def test_a_worker_killed_mid_command_fails_the_run_and_leaves_nothing(
    codex_binary: Path, tmp_path: Path
) -> None:
    """SIGKILL of the server orphans the command it setsid-ed; the pool still reaps it."""
    with trio.fail_after(CEILING):
        async with pool_on_mock(codex_binary, tmp_path) as (model, pool):
            model.script([Shell("sleep 300")])
            progress, progress_out = trio.open_memory_channel[CodexProgress](1000)
            approvals, _ = trio.open_memory_channel[ApprovalRequest](1)
            job = job_in(tmp_path, "c", "run a long command", sandbox="danger-full-access")
            outcome: list[JobOutcome] = []
            async with trio.open_nursery() as nursery:

                async def run() -> None:
                    with progress:
                        outcome.append(await pool.run(job, progress=progress, approvals=approvals))

                nursery.start_soon(run)
                async for event in progress_out:
                    if isinstance(event, CommandStarted):
                        break
                await trio.sleep(0.5)  # let bash start its sleep (a real process)
                server = pool.statistics().workers[0].pid
                assert server is not None
                everything = tree(server)
                assert any(cmdline(pid).startswith("sleep 300") for pid in everything)
                os.kill(server, signal.SIGKILL)
                killed_at = trio.current_time()
                async for _ in progress_out:
                    pass
            reply_after = trio.current_time() - killed_at
            left = await wait_until_gone(everything)  # reaped in the worker's teardown
            after = await ask(pool, job_in(tmp_path, "c2", "still there?"))
    assert isinstance(outcome[0], JobFailed), outcome
    assert outcome[0].failure == "worker_died"
    assert reply_after < 10  # the bound for a run whose worker died
    assert left == set(), [cmdline(pid) for pid in left]
    assert isinstance(after, JobDone), after


async def test_a_worker_past_its_thread_limit_is_recycled_and_its_threads_move(
    codex_binary: Path, tmp_path: Path
) -> None:
    with trio.fail_after(CEILING):
        async with pool_on_mock(codex_binary, tmp_path, recycle_threads=2) as (model, pool):
            first_pid = pool.statistics().workers[0].pid
            first = await ask(pool, job_in(tmp_path, "a", "first thread"))
            assert isinstance(first, JobDone), first
            second = await ask(pool, job_in(tmp_path, "b", "second thread"))
            assert isinstance(second, JobDone), second
            continued = await ask(
                pool,
                msgspec.structs.replace(
                    job_in(tmp_path, "a", "back to the first"),
                    thread_id=first.thread_id,
                    worker_id=first.worker_id,
                    context_preamble="Context: the first thread",
                ),
            )
            second_pid = pool.statistics().workers[0].pid
            restarts = pool.statistics().restarts
    assert first_pid is not None
    assert second_pid is not None
    assert second_pid != first_pid  # recycled after its second thread
    assert living({first_pid}) == set()
    assert restarts == 1
    assert isinstance(continued, JobDone), continued
    assert continued.moved  # a fresh thread on the new process, with the preamble
    assert continued.thread_id != first.thread_id
    assert "Context: the first thread" in last_user_text(model.requests[-1])
