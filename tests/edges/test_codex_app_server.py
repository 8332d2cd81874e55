"""The app-server edge against the fake ``codex app-server``: real subprocesses, real clock.

No test sleeps: each waits on an event the edge reports (a progress message, an approval
asked) or on `trio.testing.wait_all_tasks_blocked`, under a `CEILING`.
"""

from __future__ import annotations

import logging
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
    CodexNotice,
    CodexProgress,
    CommandFinished,
    CommandStarted,
    JobDone,
    JobFailed,
    PatchApplied,
    RunStarted,
    TokenCount,
)
from orchestrator.edges import codex_app_server_calls
from orchestrator.edges.codex_app_server import CodexAppServer, open_codex_app_server
from orchestrator.errors import WorkerStartError
from orchestrator.logging import SaidOnce
from orchestrator.prompts import instructions_digest
from tests.fakes.app_server_script import FakeAppServer
from tests.procfs import living, read_pids, tree
from tests.threads import threads_held_up

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractAsyncContextManager
    from pathlib import Path

    from orchestrator.ports import CodexWorker

CEILING = 20  # seconds: a hang fails fast instead of blocking CI


@pytest.fixture
def fake(tmp_path: Path) -> FakeAppServer:
    return FakeAppServer(tmp_path)


def job(prompt: str, **kw: Any) -> CodexJob:
    kw.setdefault("cwd", "/tmp")
    return CodexJob(conversation="1-1", prompt=prompt, **kw)


def opened(
    fake: FakeAppServer, tmp_path: Path, env: dict[str, str] | None = None
) -> AbstractAsyncContextManager[CodexAppServer]:
    return open_codex_app_server(
        fake.argv(), env=fake.env(env), worker_id=3, stderr_log=tmp_path / "worker-3.log"
    )


async def deny(ask: ApprovalAsk) -> ApprovalDecision:
    return "denied"


def ignore(event: CodexProgress) -> None:
    pass


def recorder(events: list[CodexProgress], kind: type, seen: trio.Event) -> Callable[..., None]:
    """An on_event that keeps every event and sets `seen` at the first of `kind`."""

    def on_event(event: CodexProgress) -> None:
        events.append(event)
        if isinstance(event, kind):
            seen.set()

    return on_event


async def test_handshake_turns_events_and_reply(fake: FakeAppServer, tmp_path: Path) -> None:
    fake.rule("hello", reply="Hi there, friend", deltas=3, tokens=30)
    events: list[CodexProgress] = []
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            worker: CodexWorker = codex  # mypy: the edge implements the port
            assert worker.alive
            assert worker.rss_mb() > 0
            assert codex.server_version == "0.171.0"
            first = await codex.run_turn(
                job("hello", developer_instructions="be brief", context_preamble="Earlier: X"),
                on_event=events.append,
                on_approval=deny,
            )
            assert isinstance(first, JobDone), first
            assert (first.text, first.worker_id, first.usage.total_tokens) == (
                "Hi there, friend",
                3,
                30,
            )
            second = await codex.run_turn(
                job("and again", thread_id=first.thread_id, worker_id=3),
                on_event=events.append,
                on_approval=deny,
            )
            assert isinstance(second, JobDone), second
            assert second.thread_id == first.thread_id
            assert second.text == "FAKE-REPLY: and again"
            assert codex.threads == 1
            await codex.ping()
            pid = codex.pid
    assert isinstance(events[0], RunStarted)
    second_turn = [i for i, e in enumerate(events) if isinstance(e, RunStarted)][1]
    deltas = [e.text for e in events[:second_turn] if isinstance(e, AgentMessageDelta)]
    assert len(deltas) > 1
    assert "".join(deltas) == "Hi there, friend"
    assert any(isinstance(e, TokenCount) for e in events)
    assert living({pid}) == set()
    assert "fake app-server starting" in (tmp_path / "worker-3.log").read_text()
    (init,) = fake.received("initialize")
    assert init["params"]["capabilities"] == {"experimentalApi": True}
    assert "jsonrpc" not in init
    assert fake.received("initialized") == [{"method": "initialized"}]
    (start,) = fake.received("thread/start")
    assert start["params"] == {
        "cwd": "/tmp",
        "sandbox": "workspace-write",
        "approvalPolicy": "on-request",
        "developerInstructions": "be brief",
    }
    turns = fake.received("turn/start")
    assert turns[0]["params"]["input"] == [{"type": "text", "text": "Earlier: X\n\nhello"}]
    assert turns[1]["params"]["threadId"] == first.thread_id
    assert fake.received("thread/resume") == []  # loaded here: no resume
    assert [e["params"] for e in fake.received("thread/loaded/list")] == [{"limit": 1}]


async def test_a_warning_every_worker_says_at_start_is_logged_once(
    fake: FakeAppServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each worker's start says the same config warning (0.171.0: bubblewrap not on PATH):
    INFO once, then DEBUG; a turn on each makes sure its warning was read."""
    monkeypatch.setattr(
        codex_app_server_calls,
        "_said_at_start",
        SaidOnce(codex_app_server_calls.SAID_AT_START_KEPT),
    )
    fake.rule("hello", reply="hi")
    with trio.fail_after(CEILING), caplog.at_level(logging.DEBUG):
        for _ in range(3):
            async with opened(fake, tmp_path) as codex:
                done = await codex.run_turn(job("hello"), on_event=ignore, on_approval=deny)
                assert isinstance(done, JobDone), done
    said = [r for r in caplog.records if "fake bubblewrap warning" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.INFO, logging.DEBUG, logging.DEBUG]
    assert said[0].getMessage() == "worker 3: Codex config warning: fake bubblewrap warning"


async def test_notifications_before_the_turn_start_answer_are_kept(
    fake: FakeAppServer, tmp_path: Path
) -> None:
    fake.rule("early", early=True, garbage=True, reply="kept")
    events: list[CodexProgress] = []
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            outcome = await codex.run_turn(
                job("early bird"), on_event=events.append, on_approval=deny
            )
    assert isinstance(outcome, JobDone), outcome
    assert outcome.text == "kept"  # and the garbage line before it was skipped
    # The turn names its thread: a cancel leaves it fit to go on (`chat_settle`).
    assert events[0] == RunStarted(worker_id=3, thread_id=outcome.thread_id)
    assert outcome.thread_id


async def test_a_reply_far_longer_than_a_read_chunk_arrives_whole(
    fake: FakeAppServer, tmp_path: Path
) -> None:
    long_reply = "".join(f"line {n}\n" for n in range(40_000))  # ~350 kB in one JSON line
    fake.rule("long", reply=long_reply)
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            outcome = await codex.run_turn(job("long"), on_event=ignore, on_approval=deny)
    assert isinstance(outcome, JobDone)
    assert outcome.text == long_reply


async def test_an_unknown_server_request_gets_an_error(fake: FakeAppServer, tmp_path: Path) -> None:
    fake.rule("ask me", unknown_request="item/tool/requestUserInput")
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            outcome = await codex.run_turn(job("ask me"), on_event=ignore, on_approval=deny)
    assert isinstance(outcome, JobDone)
    (answer,) = [e["unknown_answer"] for e in fake.recorded() if "unknown_answer" in e]
    assert answer["error"]["message"] == "method not supported: item/tool/requestUserInput"
    assert "result" not in answer


@pytest.mark.parametrize(
    ("decision", "wire"),
    [("approved", "accept"), ("approved_for_session", "acceptForSession"), ("denied", "decline")],
)
async def test_exec_approval_round_trip(
    fake: FakeAppServer, tmp_path: Path, decision: ApprovalDecision, wire: str
) -> None:
    fake.rule("build", approval="exec", command="make build")
    asked: list[ApprovalAsk] = []
    events: list[CodexProgress] = []

    async def answer(ask: ApprovalAsk) -> ApprovalDecision:
        asked.append(ask)
        return decision

    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            outcome = await codex.run_turn(
                job("build it"), on_event=events.append, on_approval=answer
            )
    assert isinstance(outcome, JobDone)
    assert outcome.text.endswith(f"[exec {wire}]")
    assert (asked[0].kind, asked[0].command, asked[0].cwd) == ("exec", "make build", "/w")
    assert asked[0].worker_id == 3
    assert fake.decisions() == [wire]
    exit_code = None if decision == "denied" else 0
    assert CommandStarted(command="make build", cwd="/w") in events
    assert CommandFinished(command="make build", exit_code=exit_code) in events


async def test_patch_approval_shows_the_diff(fake: FakeAppServer, tmp_path: Path) -> None:
    fake.rule("patch", approval="patch", path="/w/notes.txt", diff="+new line\n")
    events: list[CodexProgress] = []
    asked: list[ApprovalAsk] = []

    async def approve(ask: ApprovalAsk) -> ApprovalDecision:
        asked.append(ask)
        return "approved"

    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            await codex.run_turn(job("patch it"), on_event=events.append, on_approval=approve)
    assert asked[0].kind == "patch"
    assert asked[0].changes == ("/w/notes.txt",)
    assert "+new line" in asked[0].diff
    assert PatchApplied(files=("/w/notes.txt",), success=True) in events
    assert fake.decisions() == ["accept"]


async def test_a_failing_approval_callback_declines(fake: FakeAppServer, tmp_path: Path) -> None:
    fake.rule("build", approval="exec")

    async def broken(ask: ApprovalAsk) -> ApprovalDecision:
        raise RuntimeError("the chat is gone")

    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            outcome = await codex.run_turn(job("build"), on_event=ignore, on_approval=broken)
    assert isinstance(outcome, JobDone)
    assert fake.decisions() == ["decline"]


async def test_interrupt_ends_the_turn_cleans_its_commands_and_keeps_the_process(
    fake: FakeAppServer, tmp_path: Path
) -> None:
    fake.rule("long job", run="sleep 300", hang=True)
    events: list[CodexProgress] = []
    running = trio.Event()
    outcomes: list[Any] = []
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            first = await codex.run_turn(job("hello"), on_event=ignore, on_approval=deny)
            assert isinstance(first, JobDone)
            thread = first.thread_id
            assert not await codex.interrupt_thread(thread)  # nothing runs there
            async with trio.open_nursery() as nursery:

                async def run() -> None:
                    on_event = recorder(events, CommandStarted, running)
                    long_job = job("long job", thread_id=thread)
                    outcomes.append(
                        await codex.run_turn(long_job, on_event=on_event, on_approval=deny)
                    )

                nursery.start_soon(run)
                await running.wait()
                (command,) = read_pids(fake.pids_path)
                assert living({command}) == {command}
                assert await codex.interrupt_thread(thread)
            assert living({command}) == set()  # thread/backgroundTerminals/clean killed it
            (outcome,) = outcomes
            assert isinstance(outcome, JobFailed)
            assert (outcome.failure, outcome.thread_id) == ("cancelled", thread)
            assert CommandFinished(command="sleep 300") in events  # closed by turn/completed
            again = await codex.run_turn(
                job("again", thread_id=thread), on_event=ignore, on_approval=deny
            )
            assert isinstance(again, JobDone), again
            assert not codex.poisoned
    (clean,) = fake.received("thread/backgroundTerminals/clean")
    assert clean["params"] == {"threadId": thread}


async def test_a_silent_turn_can_be_interrupted(fake: FakeAppServer, tmp_path: Path) -> None:
    fake.rule("silence", silent=True)
    outcomes: list[Any] = []
    events: list[CodexProgress] = []
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            first = await codex.run_turn(job("hello"), on_event=ignore, on_approval=deny)
            assert isinstance(first, JobDone)
            async with trio.open_nursery() as nursery:

                async def run() -> None:
                    silent = job("silence", thread_id=first.thread_id)
                    outcomes.append(
                        await codex.run_turn(silent, on_event=events.append, on_approval=deny)
                    )

                nursery.start_soon(run)
                await trio.testing.wait_all_tasks_blocked()  # the call waits for its turn
                assert await codex.interrupt_thread(first.thread_id)
    assert events == []  # not one notification before the interrupt
    assert isinstance(outcomes[0], JobFailed)
    assert outcomes[0].failure == "cancelled"
    (interrupt,) = fake.received("turn/interrupt")
    assert interrupt["params"]["threadId"] == first.thread_id


async def test_a_cancelled_call_interrupts_its_turn(fake: FakeAppServer, tmp_path: Path) -> None:
    fake.rule("long job", hang=True)
    started = trio.Event()
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    on_event = recorder([], RunStarted, started)
                    nursery.start_soon(
                        lambda: codex.run_turn(job("long job"), on_event=on_event, on_approval=deny)
                    )
                    await started.wait()
                    scope.cancel()
            assert not codex.poisoned
            outcome = await codex.run_turn(job("next"), on_event=ignore, on_approval=deny)
            assert isinstance(outcome, JobDone)
    assert len(fake.received("turn/interrupt")) == 1
    assert len(fake.received("thread/backgroundTerminals/clean")) == 1


async def test_an_interrupt_withdraws_a_pending_approval(
    fake: FakeAppServer, tmp_path: Path
) -> None:
    fake.rule("build", approval="exec")
    asked = trio.Event()
    withdrawn = trio.Event()
    outcomes: list[Any] = []

    async def wait_forever(ask: ApprovalAsk) -> ApprovalDecision:
        asked.set()
        try:
            await trio.sleep_forever()
        finally:
            withdrawn.set()

    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            first = await codex.run_turn(job("hello"), on_event=ignore, on_approval=deny)
            assert isinstance(first, JobDone)
            async with trio.open_nursery() as nursery:

                async def run() -> None:
                    build = job("build", thread_id=first.thread_id)
                    outcomes.append(
                        await codex.run_turn(build, on_event=ignore, on_approval=wait_forever)
                    )

                nursery.start_soon(run)
                await asked.wait()
                assert await codex.interrupt_thread(first.thread_id)
            await withdrawn.wait()
    assert isinstance(outcomes[0], JobFailed)
    assert outcomes[0].failure == "cancelled"


async def test_turns_of_two_threads_run_at_once(fake: FakeAppServer, tmp_path: Path) -> None:
    # Each turn waits inside the fake until two turns run: serial calls would hit the
    # fake's 30 s barrier timeout, beyond the ceiling.
    fake.rule("together", barrier=2)
    results: list[Any] = []
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:

            async def run(name: str) -> None:
                results.append(await codex.run_turn(job(name), on_event=ignore, on_approval=deny))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run, "together A")
                nursery.start_soon(run, "together B")
    assert all(isinstance(result, JobDone) for result in results)
    assert len({result.thread_id for result in results if isinstance(result, JobDone)}) == 2


async def test_a_second_call_on_a_running_thread_is_refused(
    fake: FakeAppServer, tmp_path: Path
) -> None:
    fake.rule("long job", hang=True)
    started = trio.Event()
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            first = await codex.run_turn(job("hello"), on_event=ignore, on_approval=deny)
            assert isinstance(first, JobDone)
            thread = first.thread_id
            async with trio.open_nursery() as nursery:
                on_event = recorder([], RunStarted, started)
                nursery.start_soon(
                    lambda: codex.run_turn(
                        job("long job", thread_id=thread), on_event=on_event, on_approval=deny
                    )
                )
                await started.wait()
                steer = await codex.run_turn(
                    job("more", thread_id=thread), on_event=ignore, on_approval=deny
                )
                await codex.interrupt_thread(thread)
    assert isinstance(steer, JobFailed)
    assert steer.failure == "codex_error"
    assert "already running" in steer.message
    assert len(fake.received("turn/start")) == 2  # the refused call never steered


async def test_resume_on_a_fresh_process(fake: FakeAppServer, tmp_path: Path) -> None:
    fake.options["threads"] = ["stored-thread"]
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            resumed = await codex.run_turn(
                job("continue", thread_id="stored-thread"), on_event=ignore, on_approval=deny
            )
            unknown = await codex.run_turn(
                job("continue", thread_id="nope", context_preamble="Earlier: Y"),
                on_event=ignore,
                on_approval=deny,
            )
            assert codex.threads == 2
    assert isinstance(resumed, JobDone)
    assert resumed.thread_id == "stored-thread"
    # The profile's folder, sandbox and approvals go with it: a bare resume takes Codex's own.
    settings = {"cwd": "/tmp", "sandbox": "workspace-write", "approvalPolicy": "on-request"}
    assert [r["params"] for r in fake.received("thread/resume")] == [
        {"threadId": "stored-thread", "excludeTurns": True, **settings},
        {"threadId": "nope", "excludeTurns": True, **settings},
    ]
    # A thread that cannot be resumed: a fresh one, with the conversation's preamble.
    assert isinstance(unknown, JobDone), unknown
    assert unknown.thread_id not in ("nope", "stored-thread")
    assert fake.received("turn/start")[-1]["params"]["input"][0]["text"] == (
        "Earlier: Y\n\ncontinue"
    )


async def test_a_failed_turn_is_a_codex_error(fake: FakeAppServer, tmp_path: Path) -> None:
    fake.rule("break", fail="mock http 400")
    events: list[CodexProgress] = []
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            outcome = await codex.run_turn(
                job("break it"), on_event=events.append, on_approval=deny
            )
    assert isinstance(outcome, JobFailed)
    assert (outcome.failure, outcome.message) == ("codex_error", "mock http 400")
    assert CodexNotice(level="error", message="mock http 400") in events


async def test_the_final_answer_is_the_final_answer_phase(
    fake: FakeAppServer, tmp_path: Path
) -> None:
    fake.rule("think", phases=True, reply="the answer")
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            outcome = await codex.run_turn(job("think"), on_event=ignore, on_approval=deny)
    assert isinstance(outcome, JobDone)
    assert outcome.text == "the answer"


async def test_a_crash_mid_turn_is_worker_died(fake: FakeAppServer, tmp_path: Path) -> None:
    fake.rule("explode", crash=True)
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            outcome = await codex.run_turn(job("explode"), on_event=ignore, on_approval=deny)
            assert not codex.alive
            await codex.wait_exited()  # the pool replaces it at once
            later = await codex.run_turn(job("later"), on_event=ignore, on_approval=deny)
    assert isinstance(outcome, JobFailed)
    assert outcome.failure == "worker_died"
    assert isinstance(later, JobFailed)
    assert later.failure == "worker_died"


async def test_leaving_kills_the_commands_codex_left_running(
    fake: FakeAppServer, tmp_path: Path
) -> None:
    fake.rule("background", run="sleep 300")
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            outcome = await codex.run_turn(job("background"), on_event=ignore, on_approval=deny)
            assert isinstance(outcome, JobDone)  # the turn ended, its command did not
            assert outcome.background == ("sleep 300",)  # the chat words it
            everything = tree(codex.pid)
            (command,) = read_pids(fake.pids_path)
            assert command in everything
    assert living(everything) == set()


async def test_releasing_a_thread_stops_what_it_left_running(
    fake: FakeAppServer, tmp_path: Path
) -> None:
    fake.rule("background", run="sleep 300")
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            outcome = await codex.run_turn(job("background"), on_event=ignore, on_approval=deny)
            assert isinstance(outcome, JobDone)
            (command,) = read_pids(fake.pids_path)
            other = await codex.run_turn(job("other"), on_event=ignore, on_approval=deny)
            assert isinstance(other, JobDone)
            # not that thread's: nothing stops
            assert await codex.release_thread(other.thread_id) == ()
            assert living({command}) == {command}
            # /new: what it left is stopped, and named
            assert await codex.release_thread(outcome.thread_id) == ("sleep 300",)
            assert living({command}) == set()
            assert codex.reusable


async def test_the_bot_token_never_reaches_the_worker(fake: FakeAppServer, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "TELEGRAM_BOT_TOKEN": "123:SECRET"}
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path, env=env) as codex:
            await codex.ping()
    assert {"env_has_token": False} in fake.recorded()
    assert "SECRET" not in (tmp_path / "worker-3.log").read_text()


async def test_a_program_that_is_not_an_app_server_fails_to_start(tmp_path: Path) -> None:
    with trio.fail_after(CEILING), pytest.raises(WorkerStartError, match="exited during startup"):
        async with open_codex_app_server(
            [sys.executable, "-c", "print('hello')"],
            env={"PATH": "/usr/bin:/bin"},
            worker_id=0,
            stderr_log=tmp_path / "w.log",
        ):
            pass


async def test_a_ping_is_the_servers_answer_alone(fake: FakeAppServer, tmp_path: Path) -> None:
    """The pool pings busy workers too: a tree scan held up behind worker threads (a disk
    that stalls them) must not make a live server look wedged."""
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex, threads_held_up():
            with trio.fail_after(1):  # the pool's PING_TIMEOUT, shortened
                await codex.ping()


async def test_a_wedged_worker_never_answers_ping_and_the_caller_bounds_it(
    fake: FakeAppServer, tmp_path: Path
) -> None:
    fake.options["wedged"] = True
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            with trio.move_on_after(0.5) as bound:  # the pool's PING_TIMEOUT, shortened
                await codex.ping()
            assert bound.cancelled_caught
            outcome = await codex.run_turn(job("still here"), on_event=ignore, on_approval=deny)
    assert isinstance(outcome, JobDone)  # the abandoned request left the wire intact


async def test_a_cancel_stops_the_background_commands_of_its_thread(
    fake: FakeAppServer, tmp_path: Path
) -> None:
    fake.rule("background", run="sleep 300")
    fake.rule("forever", hang=True)
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            first = await codex.run_turn(job("background"), on_event=ignore, on_approval=deny)
            assert isinstance(first, JobDone)
            (command,) = read_pids(fake.pids_path)
            with trio.move_on_after(0.5):
                await codex.run_turn(
                    job("forever", thread_id=first.thread_id), on_event=ignore, on_approval=deny
                )
            assert codex.reusable
            assert living({command}) == set()
            assert await codex.background_terminals(first.thread_id) == []


async def test_doctor_reads_the_account_and_the_models(fake: FakeAppServer, tmp_path: Path) -> None:
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            account = await codex.controls_api.read_account()
            models = await codex.controls_api.list_models()
    assert account.account is not None
    assert (account.account.type, account.account.email) == ("chatgpt", "me@example.com")
    assert models == ["gpt-5.5"]


async def test_a_changed_role_gets_its_instructions_ahead_of_the_prompt(
    fake: FakeAppServer, tmp_path: Path
) -> None:
    fake.options["threads"] = ["stored-thread", "known-thread", "changed-thread"]
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            first = await codex.run_turn(
                job("one", developer_instructions="A"), on_event=ignore, on_approval=deny
            )
            assert isinstance(first, JobDone)
            for prompt, instructions in (("two", "A"), ("three", "B")):
                await codex.run_turn(
                    job(prompt, thread_id=first.thread_id, developer_instructions=instructions),
                    on_event=ignore,
                    on_approval=deny,
                )
            # Resumed (a restart): what its chat last saw there decides.
            for prompt, thread, known in (
                ("four", "stored-thread", ""),
                ("five", "known-thread", instructions_digest("B")),
                ("six", "changed-thread", instructions_digest("A")),
            ):
                await codex.run_turn(
                    job(
                        prompt,
                        thread_id=thread,
                        developer_instructions="B",
                        thread_instructions=known,
                    ),
                    on_event=ignore,
                    on_approval=deny,
                )
    texts = [turn["params"]["input"][0]["text"] for turn in fake.received("turn/start")]
    assert texts[:2] == ["one", "two"]  # started with A: nothing to re-send
    assert texts[2].startswith("<developer_instructions>")
    assert "\nB\n" in texts[2]
    assert texts[2].endswith("three")
    assert texts[3].startswith("<developer_instructions>")  # resumed: not known to be B
    assert texts[4] == "five"  # known to have B already
    assert texts[5].startswith("<developer_instructions>")  # known to have A


async def test_an_answer_nobody_can_read_fails_its_call_at_once(
    fake: FakeAppServer, tmp_path: Path
) -> None:
    """A response cut off mid-line would have left the turn waiting for ever: it fails at
    once, and the worker takes no more requests (the pool replaces it)."""
    fake.rule("cut", raw_turn_start='{"id": {id}, "result": {"turn": {"id": ')
    with trio.fail_after(CEILING):
        async with opened(fake, tmp_path) as codex:
            outcome = await codex.run_turn(
                job("cut off"), on_event=lambda e: None, on_approval=deny
            )
            assert not codex.reusable
    assert isinstance(outcome, JobFailed), outcome
    assert "cannot read" in outcome.message
