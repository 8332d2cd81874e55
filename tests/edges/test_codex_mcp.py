"""The Codex edge against the fake Codex MCP server: real subprocesses, real clock."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pytest
import trio

from orchestrator.edges.codex_mcp import CodexProcess, open_codex_process
from orchestrator.errors import WorkerStartError
from orchestrator.messages import (
    AgentMessageDelta,
    ApprovalAsk,
    CodexJob,
    CodexProgress,
    CommandFinished,
    CommandStarted,
    JobDone,
    JobFailed,
    PatchApplied,
    RunStarted,
    TokenCount,
)
from tests.fakes.codex_script import FakeCodex
from tests.procfs import living, read_pids, tree

if TYPE_CHECKING:
    from pathlib import Path

CEILING = 20  # seconds: a hang fails fast instead of blocking CI


@pytest.fixture
def fake(tmp_path: Path) -> FakeCodex:
    return FakeCodex(tmp_path)


def job(prompt: str, **kw) -> CodexJob:
    return CodexJob(conversation="1-1", prompt=prompt, cwd="/tmp", **kw)


def opened(fake: FakeCodex, tmp_path: Path):
    return open_codex_process(
        fake.argv(), env=fake.env(), worker_id=3, stderr_log=tmp_path / "worker-3.log"
    )


async def deny(ask: ApprovalAsk) -> str:
    return "denied"


async def test_handshake_call_events_and_reply(fake: FakeCodex, tmp_path: Path) -> None:
    fake.rule("hello", reply="Hi there, friend", deltas=3)
    events: list[CodexProgress] = []
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            assert codex.server_version == "0.153.4"
            first = await codex.call(job("hello"), on_event=events.append, on_approval=deny)
            assert isinstance(first, JobDone)
            assert first.text == "Hi there, friend"
            assert first.worker_id == 3
            assert first.usage.total_tokens == 18
            assert codex.threads == 1
            second = await codex.call(
                job("and again", thread_id=first.thread_id, worker_id=3),
                on_event=events.append,
                on_approval=deny,
            )
            assert isinstance(second, JobDone)
            assert second.thread_id == first.thread_id
            assert codex.threads == 1
            pid = codex.pid
    assert isinstance(events[0], RunStarted)
    deltas = [e.text for e in events[:5] if isinstance(e, AgentMessageDelta)]
    assert "".join(deltas) == "Hi there, friend"
    assert any(isinstance(e, TokenCount) for e in events)
    assert living({pid}) == set()
    assert "deprecated" in (tmp_path / "worker-3.log").read_text()
    # The fake saw what Codex would: the prompt, cwd, sandbox and approval policy.
    calls = [
        e["received"]
        for e in fake.recorded()
        if e.get("received", {}).get("method") == "tools/call"
    ]
    assert calls[0]["params"]["arguments"]["approval-policy"] == "on-request"
    assert calls[1]["params"] == {
        "name": "codex-reply",
        "arguments": {"prompt": "and again", "threadId": first.thread_id},
    }


async def test_fresh_thread_gets_instructions_and_preamble(fake: FakeCodex, tmp_path: Path) -> None:
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            outcome = await codex.call(
                job(
                    "do it",
                    developer_instructions="be careful",
                    context_preamble="Earlier: X",
                    model="gpt-5.2",
                    sandbox="read-only",
                ),
                on_event=lambda e: None,
                on_approval=deny,
            )
    assert isinstance(outcome, JobDone)
    arguments = next(
        e["received"]
        for e in fake.recorded()
        if e.get("received", {}).get("method") == "tools/call"
    )["params"]["arguments"]
    assert arguments["developer-instructions"] == "be careful"
    assert arguments["prompt"] == "Earlier: X\n\ndo it"
    assert arguments["model"] == "gpt-5.2"
    assert arguments["sandbox"] == "read-only"


async def test_unknown_thread_is_a_codex_error(fake: FakeCodex, tmp_path: Path) -> None:
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            outcome = await codex.call(
                job("continue", thread_id="nope"), on_event=lambda e: None, on_approval=deny
            )
    assert isinstance(outcome, JobFailed)
    assert outcome.failure == "codex_error"
    assert "Session not found" in outcome.message


@pytest.mark.parametrize("decision", ["approved", "approved_for_session", "denied"])
async def test_exec_approval_round_trip(fake: FakeCodex, tmp_path: Path, decision: str) -> None:
    fake.rule("build", approval="exec", command="make build")
    asked: list[ApprovalAsk] = []
    events: list[CodexProgress] = []

    async def answer(ask: ApprovalAsk) -> str:
        asked.append(ask)
        return decision

    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            outcome = await codex.call(job("build it"), on_event=events.append, on_approval=answer)
    assert isinstance(outcome, JobDone)
    assert asked[0].kind == "exec"
    assert asked[0].command == "make build"
    assert asked[0].cwd == "/tmp"
    assert fake.decisions() == [decision]
    ran = any(isinstance(e, CommandStarted) and e.command == "make build" for e in events)
    assert ran == (decision != "denied")
    if ran:
        assert any(isinstance(e, CommandFinished) and e.exit_code == 0 for e in events)


async def test_patch_approval(fake: FakeCodex, tmp_path: Path) -> None:
    fake.rule("patch", approval="patch")
    events: list[CodexProgress] = []
    asked: list[ApprovalAsk] = []

    async def approve(ask: ApprovalAsk) -> str:
        asked.append(ask)
        return "approved"

    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            await codex.call(job("patch it"), on_event=events.append, on_approval=approve)
    assert asked[0].kind == "patch"
    assert asked[0].changes == ("/work/file.txt",)
    patched = [e for e in events if isinstance(e, PatchApplied)]
    assert patched[0].files == ("/work/file.txt",)


async def test_crash_mid_call_is_worker_died(fake: FakeCodex, tmp_path: Path) -> None:
    fake.rule("explode", crash=True)
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            outcome = await codex.call(job("explode"), on_event=lambda e: None, on_approval=deny)
            assert not codex.alive
    assert isinstance(outcome, JobFailed)
    assert outcome.failure == "worker_died"


async def test_cancel_poisons_and_kill_leaves_no_process(fake: FakeCodex, tmp_path: Path) -> None:
    fake.rule("long job", grandchild=True, hang=True)
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            with trio.move_on_after(1.0):
                await codex.call(job("long job"), on_event=lambda e: None, on_approval=deny)
            assert codex.poisoned
            everything = tree(codex.pid)
            grandchildren = read_pids(fake.pids_path)
            assert len(grandchildren) == 2  # the setsid'd bash and its sleep
            assert grandchildren <= everything
            await codex.kill()
            assert living(everything) == set()
    cancelled = [
        e["received"]
        for e in fake.recorded()
        if e.get("received", {}).get("method") == "notifications/cancelled"
    ]
    assert len(cancelled) == 1


async def test_graceful_exit_reaps_grandchildren_too(fake: FakeCodex, tmp_path: Path) -> None:
    fake.rule("spawn", grandchild=True)
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            await codex.call(job("spawn"), on_event=lambda e: None, on_approval=deny)
            everything = tree(codex.pid) | read_pids(fake.pids_path)
    assert living(everything) == set()


async def test_ping(fake: FakeCodex, tmp_path: Path) -> None:
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            await codex.ping()


async def test_wedged_worker_does_not_answer_ping(fake: FakeCodex, tmp_path: Path) -> None:
    fake.options["wedged"] = True
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            with trio.move_on_after(0.5) as scope:
                await codex.ping()
            assert scope.cancelled_caught


async def test_not_a_codex_server(fake: FakeCodex, tmp_path: Path) -> None:
    fake.options["no_codex_tools"] = True
    with trio.fail_after(CEILING), pytest.raises(WorkerStartError, match=r"0\.153\.4"):
        async with opened(fake, tmp_path):
            pass


async def test_missing_program(tmp_path: Path) -> None:
    with pytest.raises(WorkerStartError, match="cannot start"):
        async with open_codex_process(
            ["/nonexistent/codex", "mcp-server"], env={}, worker_id=0, stderr_log=tmp_path / "e.log"
        ):
            pass


async def test_program_that_exits_at_once(tmp_path: Path) -> None:
    with trio.fail_after(CEILING), pytest.raises(WorkerStartError, match="exited"):
        async with open_codex_process(
            [sys.executable, "-c", "pass"], env={}, worker_id=0, stderr_log=tmp_path / "e.log"
        ):
            pass


def test_process_type_is_exported() -> None:
    assert CodexProcess.__name__ == "CodexProcess"
