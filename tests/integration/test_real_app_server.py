"""The app-server edge against the real Codex 0.171.0 and the mock model, on the real clock:
a round trip, a second turn on the same thread (one prompt cache key: the thread id), an
interrupt of a running ``sleep 300`` that leaves no process and keeps the worker, a resume in
a fresh process, and an escalation asked through the approval callback."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest
import trio

from orchestrator.codex_runs import (
    AgentMessageDelta,
    ApprovalAsk,
    ApprovalDecision,
    CodexJob,
    CodexProgress,
    CommandFinished,
    CommandStarted,
    JobDone,
    JobFailed,
    RunStarted,
    Sandbox,
)
from orchestrator.edges.codex_app_server import CodexAppServer, open_codex_app_server
from tests.fakes.mock_model import Shell, Text, codex_env, open_mock_model, write_codex_home
from tests.integration.app_server_fixtures import app_server_codex
from tests.procfs import cmdline, living, tree, wait_until_gone

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager
    from pathlib import Path

__all__ = ["app_server_codex"]

CEILING = 120
MODEL = "gpt-5.5"
"""A model 0.171.0 knows (``gpt-5.2`` gets fallback metadata and a warning)."""


async def deny(ask: ApprovalAsk) -> ApprovalDecision:
    return "denied"


def open_real(
    binary: Path, home: Path, tmp_path: Path, worker_id: int = 0
) -> AbstractAsyncContextManager[CodexAppServer]:
    """One real ``codex app-server`` with CODEX_HOME (and HOME) at `home`."""
    return open_codex_app_server(
        [str(binary), "app-server"],
        env={**os.environ, **codex_env(home), "TELEGRAM_BOT_TOKEN": "123:NOT-FOR-CODEX"},
        worker_id=worker_id,
        stderr_log=tmp_path / f"app-server-{worker_id}.log",
    )


def job_in(
    cwd: Path,
    prompt: str,
    *,
    thread_id: str | None = None,
    sandbox: Sandbox = "read-only",
    **kw: Any,
) -> CodexJob:
    kw.setdefault("approval_policy", "never")
    return CodexJob(
        conversation="c", prompt=prompt, cwd=str(cwd), sandbox=sandbox, thread_id=thread_id, **kw
    )


async def wait_for_command(root: int, needle: str) -> set[int]:
    """The pids under `root` whose command line contains `needle`, once there is one.

    Codex reports the command when it spawned the shell; the shell starts the command a moment
    later, and /proc has nothing to wait on: poll (bounded by the test's ceiling).
    """
    while True:
        found = {pid for pid in tree(root) if needle in cmdline(pid)}
        if found:
            return found
        await trio.sleep(0.05)


async def test_round_trip_and_a_second_turn_share_the_thread_and_cache_key(
    app_server_codex: Path, tmp_path: Path
) -> None:
    events: list[CodexProgress] = []
    with trio.fail_after(CEILING):
        async with open_mock_model() as model:
            home = write_codex_home(tmp_path / "home", model.base_url, model=MODEL)
            model.script([Text("Hello from the mock model")])
            async with open_real(app_server_codex, home, tmp_path) as codex:
                assert codex.server_version == "0.171.0"
                first = await codex.run_turn(
                    job_in(tmp_path, "hello there"), on_event=events.append, on_approval=deny
                )
                assert isinstance(first, JobDone), first
                second = await codex.run_turn(
                    job_in(tmp_path, "second prompt", thread_id=first.thread_id),
                    on_event=events.append,
                    on_approval=deny,
                )
                assert isinstance(second, JobDone), second
                pid = codex.pid
    assert first.text == "Hello from the mock model"
    assert second.text == "MOCK-REPLY: second prompt"
    assert second.thread_id == first.thread_id
    assert first.usage.total_tokens == 18
    assert [request["prompt_cache_key"] for request in model.requests] == [first.thread_id] * 2
    assert "hello there" in str(model.requests[1]["input"])  # the thread's history
    assert isinstance(events[0], RunStarted)
    assert AgentMessageDelta(text="Hello from the mock model") in events
    assert living({pid}) == set()
    assert "NOT-FOR-CODEX" not in (tmp_path / "app-server-0.log").read_text()


@pytest.mark.parametrize("sandbox", ["read-only", "danger-full-access"])
async def test_interrupt_stops_the_running_command_and_keeps_the_worker(
    app_server_codex: Path, tmp_path: Path, sandbox: Sandbox
) -> None:
    events: list[CodexProgress] = []
    started = trio.Event()
    outcomes: list[Any] = []

    def on_event(event: CodexProgress) -> None:
        events.append(event)
        if isinstance(event, CommandStarted):
            started.set()

    with trio.fail_after(CEILING):
        async with open_mock_model() as model:
            home = write_codex_home(tmp_path / "home", model.base_url, model=MODEL)
            model.script([Text("ready")], [Shell("sleep 300")])
            async with open_real(app_server_codex, home, tmp_path) as codex:
                first = await codex.run_turn(
                    job_in(tmp_path, "warm up", sandbox=sandbox),
                    on_event=on_event,
                    on_approval=deny,
                )
                assert isinstance(first, JobDone), first
                thread = first.thread_id
                async with trio.open_nursery() as nursery:

                    async def run() -> None:
                        long_job = job_in(
                            tmp_path, "run a long command", thread_id=thread, sandbox=sandbox
                        )
                        outcomes.append(
                            await codex.run_turn(long_job, on_event=on_event, on_approval=deny)
                        )

                    nursery.start_soon(run)
                    await started.wait()
                    sleeping = await wait_for_command(codex.pid, "sleep 300")
                    with trio.fail_after(1):  # busy, it answers the pool's pings at once
                        await codex.ping()
                    assert await codex.interrupt_thread(thread)
                # clean answers before the killed processes exit (measured: ~0.1 s later)
                assert await wait_until_gone(sleeping, within=10) == set()
                assert codex.alive
                assert not codex.poisoned
                await codex.ping()
                after = await codex.run_turn(
                    job_in(tmp_path, "after the interrupt", thread_id=thread),
                    on_event=on_event,
                    on_approval=deny,
                )
    (outcome,) = outcomes
    assert isinstance(outcome, JobFailed), outcome
    assert (outcome.failure, outcome.thread_id) == ("cancelled", thread)
    assert CommandStarted(command="sleep 300", cwd=str(tmp_path)) in events
    assert CommandFinished(command="sleep 300") in events  # closed by turn/completed
    assert isinstance(after, JobDone), after
    assert after.text == "MOCK-REPLY: after the interrupt"
    assert "<turn_aborted>" in str(model.requests[-1]["input"])


async def test_a_cancel_leaves_no_setsid_child_behind_under_full_access(
    app_server_codex: Path, tmp_path: Path
) -> None:
    """``clean`` kills a command's process group; a ``setsid`` child of it escapes: the
    edge finds it re-parented away from the server and kills it, and keeps the worker."""
    started = trio.Event()

    def on_event(event: CodexProgress) -> None:
        if isinstance(event, CommandStarted):
            started.set()

    with trio.fail_after(CEILING):
        async with open_mock_model() as model:
            home = write_codex_home(tmp_path / "home", model.base_url, model=MODEL)
            model.script([Shell("setsid sleep 301 & sleep 300")])
            async with open_real(app_server_codex, home, tmp_path) as codex:
                async with trio.open_nursery() as nursery:

                    async def run() -> None:
                        await codex.run_turn(
                            job_in(tmp_path, "escape", sandbox="danger-full-access"),
                            on_event=on_event,
                            on_approval=deny,
                        )

                    nursery.start_soon(run)
                    await started.wait()
                    escaped = await wait_for_command(codex.pid, "sleep 301")
                    shell = await wait_for_command(codex.pid, "sleep 300")
                    nursery.cancel_scope.cancel()
                assert await wait_until_gone(escaped | shell, within=10) == set()
                assert codex.reusable
                await codex.ping()


async def test_a_thread_resumes_in_a_fresh_process_with_its_history(
    app_server_codex: Path, tmp_path: Path
) -> None:
    with trio.fail_after(CEILING):
        async with open_mock_model() as model:
            home = write_codex_home(tmp_path / "home", model.base_url, model=MODEL)
            async with open_real(app_server_codex, home, tmp_path, worker_id=0) as codex:
                first = await codex.run_turn(
                    job_in(tmp_path, "first message ALPHA"), on_event=print, on_approval=deny
                )
            assert isinstance(first, JobDone), first
            async with open_real(app_server_codex, home, tmp_path, worker_id=1) as fresh:
                resumed = await fresh.run_turn(
                    job_in(tmp_path, "second message BETA", thread_id=first.thread_id),
                    on_event=print,
                    on_approval=deny,
                )
                unknown = await fresh.run_turn(
                    job_in(tmp_path, "x", thread_id="01a22c98-0000-7000-8000-000000000000"),
                    on_event=print,
                    on_approval=deny,
                )
    assert isinstance(resumed, JobDone), resumed
    assert resumed.thread_id == first.thread_id
    assert "first message ALPHA" in str(model.requests[-2]["input"])  # resumed: the history
    assert "first message ALPHA" not in str(model.requests[-1]["input"])  # a fresh thread
    assert isinstance(unknown, JobDone), unknown  # not resumable: a fresh thread
    assert unknown.thread_id != "01a22c98-0000-7000-8000-000000000000"


@pytest.mark.parametrize(("decision", "ran"), [("approved", True), ("denied", False)])
async def test_an_escalation_is_asked_through_the_callback(
    app_server_codex: Path, tmp_path: Path, decision: ApprovalDecision, ran: bool
) -> None:
    marker = tmp_path / "outside" / "escalated.txt"
    marker.parent.mkdir()
    asked: list[ApprovalAsk] = []

    async def answer(ask: ApprovalAsk) -> ApprovalDecision:
        asked.append(ask)
        return decision

    with trio.fail_after(CEILING):
        async with open_mock_model() as model:
            home = write_codex_home(tmp_path / "home", model.base_url, model=MODEL)
            model.script([Shell(f"touch {marker}", escalated=True)], [Text("done")])
            work = tmp_path / "work"
            work.mkdir()
            async with open_real(app_server_codex, home, tmp_path) as codex:
                outcome = await codex.run_turn(
                    job_in(
                        work,
                        "touch outside",
                        sandbox="workspace-write",
                        approval_policy="on-request",
                    ),
                    on_event=print,
                    on_approval=answer,
                )
    assert isinstance(outcome, JobDone), outcome
    assert outcome.text == "done"
    (ask,) = asked
    assert (ask.kind, ask.command, ask.cwd) == ("exec", f"touch {marker}", str(work))
    assert marker.exists() == ran


@pytest.mark.parametrize("sandbox", ["read-only", "danger-full-access"])
async def test_kill_mid_command_leaves_no_process(
    app_server_codex: Path, tmp_path: Path, sandbox: Sandbox
) -> None:
    started = trio.Event()
    outcomes: list[Any] = []

    def on_event(event: CodexProgress) -> None:
        if isinstance(event, CommandStarted):
            started.set()

    command = "setsid sleep 301 & sleep 300"  # a grandchild in a session of its own too
    with trio.fail_after(CEILING):
        async with open_mock_model() as model:
            home = write_codex_home(tmp_path / "home", model.base_url, model=MODEL)
            model.script([Shell(command)])
            async with open_real(app_server_codex, home, tmp_path) as codex:
                async with trio.open_nursery() as nursery:

                    async def run() -> None:
                        job = job_in(tmp_path, "run", sandbox=sandbox)
                        outcomes.append(
                            await codex.run_turn(job, on_event=on_event, on_approval=deny)
                        )

                    nursery.start_soon(run)
                    await started.wait()
                    await wait_for_command(codex.pid, "sleep 301")
                    await wait_for_command(codex.pid, "sleep 300")
                    everything = tree(codex.pid)
                    await codex.kill()
                assert not codex.alive
    assert await wait_until_gone(everything, within=10) == set()
    (outcome,) = outcomes
    assert isinstance(outcome, JobFailed)
    assert outcome.failure == "worker_died"
