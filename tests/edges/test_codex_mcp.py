"""The Codex edge against the fake Codex MCP server: real subprocesses, real clock."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

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
    JobOutcome,
    PatchApplied,
    RunStarted,
    TokenCount,
)
from orchestrator.edges.codex_mcp import CodexProcess, open_codex_process
from orchestrator.errors import WorkerStartError
from orchestrator.wire.codex_mcp import CODEX_MCP_VERSION
from tests.fakes.codex_script import FakeCodex
from tests.procfs import living, read_pids, tree
from tests.threads import threads_held_up

if TYPE_CHECKING:
    from pathlib import Path

    from orchestrator.ports import CodexWorker

CEILING = 20  # seconds: a hang fails fast instead of blocking CI


@pytest.fixture
def fake(tmp_path: Path) -> FakeCodex:
    return FakeCodex(tmp_path)


def job(prompt: str, **kw: Any) -> CodexJob:
    kw.setdefault("cwd", "/tmp")
    return CodexJob(conversation="1-1", prompt=prompt, **kw)


def opened(fake: FakeCodex, tmp_path: Path):
    return open_codex_process(
        fake.argv(), env=fake.env(), worker_id=3, stderr_log=tmp_path / "worker-3.log"
    )


async def deny(ask: ApprovalAsk) -> ApprovalDecision:
    return "denied"


async def test_handshake_call_events_and_reply(fake: FakeCodex, tmp_path: Path) -> None:
    fake.rule("hello", reply="Hi there, friend", deltas=3)
    events: list[CodexProgress] = []
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            assert codex.server_version == CODEX_MCP_VERSION
            first = await codex.run_turn(job("hello"), on_event=events.append, on_approval=deny)
            assert isinstance(first, JobDone)
            assert first.text == "Hi there, friend"
            assert first.worker_id == 3
            assert first.usage.total_tokens == 18
            assert codex.threads == 1
            second = await codex.run_turn(
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
            outcome = await codex.run_turn(
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
            outcome = await codex.run_turn(
                job("continue", thread_id="nope"), on_event=lambda e: None, on_approval=deny
            )
    assert isinstance(outcome, JobFailed)
    assert outcome.failure == "codex_error"
    assert "Session not found" in outcome.message


async def test_an_image_is_refused_in_words_never_dropped(fake: FakeCodex, tmp_path: Path) -> None:
    """The ``codex`` tool of 0.153.4 has no image argument."""
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            outcome = await codex.run_turn(
                job("what is this", images=("/tmp/x.jpg",)),
                on_event=lambda e: None,
                on_approval=deny,
            )
            assert codex.reusable
    assert isinstance(outcome, JobFailed)
    assert outcome.failure == "codex_error"
    assert 'backend = "app-server"' in outcome.message
    assert not [e for e in fake.recorded() if e.get("received", {}).get("method") == "tools/call"]


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
            outcome = await codex.run_turn(
                job("build it"), on_event=events.append, on_approval=answer
            )
    assert isinstance(outcome, JobDone)
    assert asked[0].kind == "exec"
    assert asked[0].command == "make build"
    assert asked[0].cwd == "/tmp"
    assert fake.decisions() == [decision]
    ran = any(isinstance(e, CommandStarted) and e.command == "make build" for e in events)
    assert ran == (decision != "denied")
    if ran:
        assert CommandFinished(command="make build", exit_code=0) in events


async def test_patch_approval(fake: FakeCodex, tmp_path: Path) -> None:
    fake.rule("patch", approval="patch")
    events: list[CodexProgress] = []
    asked: list[ApprovalAsk] = []

    async def approve(ask: ApprovalAsk) -> str:
        asked.append(ask)
        return "approved"

    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            await codex.run_turn(job("patch it"), on_event=events.append, on_approval=approve)
    assert asked[0].kind == "patch"
    assert asked[0].changes == ("/work/file.txt",)
    patched = [e for e in events if isinstance(e, PatchApplied)]
    assert patched[0].files == ("/work/file.txt",)


async def test_crash_mid_call_is_worker_died(fake: FakeCodex, tmp_path: Path) -> None:
    fake.rule("explode", crash=True)
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            outcome = await codex.run_turn(
                job("explode"), on_event=lambda e: None, on_approval=deny
            )
            assert not codex.alive
            await codex.wait_exited()  # the pool replaces it at once
    assert isinstance(outcome, JobFailed)
    assert outcome.failure == "worker_died"


async def test_cancel_poisons_and_interrupt_leaves_no_process(
    fake: FakeCodex, tmp_path: Path
) -> None:
    fake.rule("long job", grandchild=True, hang=True)
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            with trio.move_on_after(1.0):
                await codex.run_turn(job("long job"), on_event=lambda e: None, on_approval=deny)
            assert codex.poisoned
            assert not codex.reusable
            everything = tree(codex.pid)
            grandchildren = read_pids(fake.pids_path)
            assert len(grandchildren) == 2  # the setsid'd bash and its sleep
            assert grandchildren <= everything
            await codex.interrupt()
            assert living(everything) == set()
    cancelled = [
        e["received"]
        for e in fake.recorded()
        if e.get("received", {}).get("method") == "notifications/cancelled"
    ]
    assert len(cancelled) == 1


async def test_graceful_exit_reaps_grandchildren_too(fake: FakeCodex, tmp_path: Path) -> None:
    # The call returns while the setsid'd shell may not have forked its sleep yet: the stop
    # must still find the sleep (through the shell's session), not leave it to PID 1.
    fake.rule("spawn", grandchild=True)
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            await codex.run_turn(job("spawn"), on_event=lambda e: None, on_approval=deny)
            everything = tree(codex.pid)
    everything |= read_pids(fake.pids_path)
    assert len(read_pids(fake.pids_path)) == 2
    assert living(everything) == set()


async def test_crash_with_a_child_holding_stdout(fake: FakeCodex, tmp_path: Path) -> None:
    # A command inherited the server's stdout, so the pipe stays open after the crash: the
    # exit watcher must still end the calls, and interrupt() must reach the orphaned commands.
    fake.rule("spawn", grandchild=True, hold_stdout=True, run="true", hang=True)
    fake.rule("explode", crash=9)
    ran = trio.Event()
    outcomes: list[JobOutcome] = []

    def on_event(event: CodexProgress) -> None:
        if isinstance(event, CommandFinished):
            ran.set()

    async def spawn() -> None:
        outcomes.append(await codex.run_turn(job("spawn"), on_event=on_event, on_approval=deny))

    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex, trio.open_nursery() as nursery:
            nursery.start_soon(spawn)
            await ran.wait()
            await codex.snapshots.take()  # as `keep` does soon after a command or a ping
            started = trio.current_time()
            outcomes.append(
                await codex.run_turn(job("explode"), on_event=lambda e: None, on_approval=deny)
            )
            assert trio.current_time() - started < 3
            assert not codex.alive
            await codex.interrupt()
            assert len(read_pids(fake.pids_path)) == 3
            assert living(read_pids(fake.pids_path)) == set()
    assert [o.failure for o in outcomes if isinstance(o, JobFailed)] == ["worker_died"] * 2


async def test_events_arrive_in_wire_order(fake: FakeCodex, tmp_path: Path) -> None:
    fake.rule("make", run="exit 4", reply="built it", deltas=2, tokens={"total_tokens": 99})
    events: list[CodexProgress] = []
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            outcome = await codex.run_turn(
                job("make all"), on_event=events.append, on_approval=deny
            )
    assert isinstance(outcome, JobDone)
    assert outcome.text == "built it"
    assert outcome.usage.total_tokens == 99
    assert [type(e).__name__ for e in events] == [
        "RunStarted",
        "CommandStarted",
        "CommandFinished",
        "AgentMessageDelta",
        "AgentMessageDelta",
        "TokenCount",
    ]
    assert events[1] == CommandStarted(command="exit 4", cwd=events[1].cwd)  # type: ignore[union-attr]
    assert events[2] == CommandFinished(command="exit 4", exit_code=4)


async def test_event_flood_is_not_dropped(fake: FakeCodex, tmp_path: Path) -> None:
    fake.rule("flood", flood=3000, reply="calm again")
    deltas: list[str] = []

    def on_event(event: CodexProgress) -> None:
        if isinstance(event, AgentMessageDelta):
            deltas.append(event.text)

    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            outcome = await codex.run_turn(job("a flood"), on_event=on_event, on_approval=deny)
    assert isinstance(outcome, JobDone)
    assert outcome.text == "calm again"
    assert deltas[:3000] == ["."] * 3000
    assert "".join(deltas[3000:]) == "calm again"


async def test_regex_rule_and_error_result(fake: FakeCodex, tmp_path: Path) -> None:
    fake.rule("", regex=r"^fail \d+$", error="stream disconnected before completion")
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            failed = await codex.run_turn(job("fail 42"), on_event=lambda e: None, on_approval=deny)
            fine = await codex.run_turn(job("fail now"), on_event=lambda e: None, on_approval=deny)
    assert isinstance(failed, JobFailed)
    assert failed.failure == "codex_error"
    assert failed.message == "stream disconnected before completion"
    assert failed.thread_id is not None
    assert isinstance(fine, JobDone)
    assert fine.text == "FAKE-REPLY: fail now"


async def test_ping(fake: FakeCodex, tmp_path: Path) -> None:
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            await codex.ping()
            async with threads_held_up():  # a scan's thread (a stalled disk) is not waited for
                with trio.fail_after(1):  # the pool's PING_TIMEOUT, shortened
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


def test_the_process_is_a_codex_worker() -> None:
    def as_worker(process: CodexProcess) -> CodexWorker:
        return process  # mypy checks the edge against the port

    assert as_worker.__name__ == "as_worker"


async def test_leaving_the_context_is_not_a_death(fake: FakeCodex, tmp_path: Path) -> None:
    # The pool's watcher checks `alive` while its scope is being cancelled: a reader
    # cancelled with everything else must not look like a crashed server.
    with trio.fail_after(CEILING):
        with trio.CancelScope() as scope:
            async with opened(fake, tmp_path) as codex:
                scope.cancel()
                with trio.fail_after(CEILING, shield=True):
                    await trio.testing.wait_all_tasks_blocked()
                    assert codex.alive
                    late = await codex.run_turn(
                        job("late"), on_event=lambda e: None, on_approval=deny
                    )
                pid = codex.pid
    assert isinstance(late, JobFailed)
    assert late.failure == "worker_died"
    assert living({pid}) == set()


async def test_lines_the_decoder_refuses_never_leave_a_call_hanging(
    fake: FakeCodex, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A response the strict decoder refuses is read leniently (a method that is a number, an
    error code that is a string); one nobody can read fails its call at once and the process is not
    reused; garbage lines are logged once, not once each."""
    reply = '{"content": [{"type": "text", "text": "ok"}], "structuredContent": {"threadId": "t"}}'
    fake.rule(
        "odd method",
        garbage_lines=50,
        raw_response=f'{{"id": {{id}}, "method": 5, "result": {reply}}}',
    )
    fake.rule("odd error", raw_response='{"id": {id}, "error": {"code": "E1", "message": "odd"}}')
    fake.rule("cut off", raw_response='{"jsonrpc": "2.0", "id": {id}, "result": {"content": [')
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            floated = await codex.run_turn(
                job("odd method"), on_event=lambda e: None, on_approval=deny
            )
            odd = await codex.run_turn(job("odd error"), on_event=lambda e: None, on_approval=deny)
            assert codex.reusable
            cut = await codex.run_turn(job("cut off"), on_event=lambda e: None, on_approval=deny)
            assert not codex.reusable  # the pool replaces it
    assert isinstance(floated, JobDone)
    assert floated.text == "ok"
    assert isinstance(odd, JobFailed)
    assert "odd" in odd.message
    assert isinstance(cut, JobFailed)
    assert "cannot read" in cut.message
    unreadable = [r for r in caplog.records if "unreadable line" in r.getMessage()]
    assert len(unreadable) == 1  # 53 refused lines, one WARNING (the rest within a minute)
