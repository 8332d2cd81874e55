"""The whole bot as a process with ``backend = "app-server"``, on the real Codex 0.171.0 and the
mock model, driven through the fake Telegram Bot API: one conversation keeps its Codex thread
(the model's ``prompt_cache_key`` is the thread id) across turns, a ``/cancel``, a worker that
was killed, a restart of the bot and a failed turn; a cancel leaves no process of the command
and keeps the worker; SIGTERM leaves nothing; no worker or command sees the bot token;
approvals go through the buttons (a patch shows its diff); a cancel the server cannot answer
(SIGSTOP) still keeps the thread; an unreachable and a silent endpoint end in a message that
says so (the unreachable one on the MCP backend, Codex 0.153.4, too: one watchdog in the pool
serves both)."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from contextlib import asynccontextmanager, suppress
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio

from tests.bot_process import polling, running, write_config
from tests.fakes.mock_model import (
    Hang,
    MockModel,
    Reasoning,
    Text,
    Turn,
    codex_env,
    last_user_text,
    open_mock_model,
    write_codex_home,
)
from tests.fakes.telegram_server import FakeTelegram, open_fake_telegram
from tests.integration.app_server_fixtures import app_server_codex
from tests.integration.test_bot_real_codex import (
    ALICE,
    TOKEN,
    answer_approval,
    answers_around_a_failure,
    buttons,
    count_texts,
    has_text,
    model_turns,
    tool_output,
    wait_for_sleep,
)
from tests.procfs import cmdline, living, tree, wait_until_gone

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.bot_process import Bot

__all__ = ["app_server_codex"]

CEILING = 150
MODEL = "gpt-5.5"
"""A model 0.171.0 knows (it offers ``apply_patch`` only to catalogued models)."""


@asynccontextmanager
async def app_server_edges(
    codex_binary: Path,
    tmp_path: Path,
    *,
    sandbox: str,
    base_url: str | None = None,
    responder: Any = model_turns,
    backend: str = "app-server",
    codex_sandbox: str = "read-only",
) -> AsyncIterator[tuple[MockModel, FakeTelegram, Path]]:
    """The mock model, the fake Telegram, and a config for a bot whose two workers are the
    real ``codex app-server`` on that model (or on `base_url`), with `sandbox` and
    ``on-request``, and an endpoint failure limit of 10 s; Codex's own config.toml says
    `codex_sandbox`."""
    async with open_mock_model() as model, open_fake_telegram(TOKEN) as tg:
        model.responder = responder
        home = write_codex_home(
            tmp_path / "home",
            base_url or model.base_url,
            model=MODEL,
            sandbox_mode=codex_sandbox,
        )
        config = write_config(
            tmp_path,
            telegram_url=tg.base_url,
            user=ALICE,
            codex_command=[str(codex_binary), "mcp-server" if backend == "mcp" else "app-server"],
            codex_env={"CODEX_HOME": codex_env(home)["CODEX_HOME"]},
            batch_window=0.1,
            # A profile outside the sandbox must name its users (profiles are permissions).
            profile={"sandbox": sandbox, "approval_policy": "on-request", "users": [ALICE]},
            codex={"backend": backend, "endpoint_failure_limit": 10},
        )
        yield model, tg, config


@asynccontextmanager
async def asking(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    *,
    backend: str,
    responder: Any,
    question: str,
    answer: str,
) -> AsyncIterator[tuple[MockModel, FakeTelegram, Bot]]:
    """A bot on the real Codex of `backend` (0.153.4 for MCP, 0.171.0 for app-server), the
    model answering through `responder`, asked `question`. Once the block is done it waits
    for `answer` (or a failure) and stops the bot; then the answer must have come, no
    failure, and a clean exit."""
    binary = request.getfixturevalue("codex_binary" if backend == "mcp" else "app_server_codex")
    with trio.fail_after(CEILING):
        async with app_server_edges(
            binary, tmp_path, sandbox="read-only", responder=responder, backend=backend
        ) as edges:
            model, tg, config = edges
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text=question)
                yield model, tg, bot
                await tg.wait_for(lambda t: has_text(t, answer) or has_text(t, "❌"))
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    assert has_text(tg, answer), tg.sent_texts(ALICE)
    assert not has_text(tg, "❌"), tg.sent_texts(ALICE)


def cache_keys(model: MockModel) -> list[str]:
    return [body.get("prompt_cache_key", "") for body in model.requests]


def environ_of(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def workers_of(bot_pid: int) -> set[int]:
    """The app-server processes under the bot."""
    return {pid for pid in tree(bot_pid) if "app-server" in cmdline(pid)}


def holds(pid: int, thread: str) -> bool:
    """Whether the app-server `pid` holds `thread` (its writer lock is open there)."""
    with suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}").endswith(f"{thread}.lock"):
                    return True
    return False


async def test_one_thread_across_turns_a_cancel_a_killed_worker_and_a_restart(
    app_server_codex: Path, tmp_path: Path
) -> None:
    with trio.fail_after(CEILING * 2):
        async with app_server_edges(
            app_server_codex, tmp_path, sandbox="danger-full-access"
        ) as edges:
            model, tg, config = edges
            async with polling(tg, config, TOKEN) as bot:
                workers = workers_of(bot.process.pid)
                assert len(workers) == 2, [cmdline(pid) for pid in tree(bot.process.pid)]
                for pid in workers:  # the token never reaches a worker
                    assert b"TELEGRAM_BOT_TOKEN" not in environ_of(pid)
                    assert TOKEN.encode() not in environ_of(pid)

                tg.push_message(chat_id=ALICE, user_id=ALICE, text="hello first")
                await tg.wait_for(lambda t: has_text(t, "MOCK-REPLY"))
                thread = cache_keys(model)[-1]
                assert thread

                tg.push_message(chat_id=ALICE, user_id=ALICE, text="now sleep for a while")
                sleeper = await wait_for_sleep(bot.process.pid)
                assert TOKEN.encode() not in environ_of(sleeper)  # nor a command
                assert b"TELEGRAM_BOT_TOKEN" not in environ_of(sleeper)
                (busy,) = {pid for pid in workers if sleeper in tree(pid)}
                doomed = tree(busy) - {busy}
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="/cancel")
                await tg.wait_for(lambda t: has_text(t, "🛑 Cancelled after"))
                left = await wait_until_gone(doomed | {sleeper})
                assert left == set(), [cmdline(pid) for pid in left]
                assert living(workers) == workers  # the worker stays (same pid)

                tg.push_message(chat_id=ALICE, user_id=ALICE, text="and after the cancel")
                await tg.wait_for(lambda t: count_texts(t, "MOCK-REPLY") == 2)
                assert workers_of(bot.process.pid) == workers  # nothing was replaced
                assert cache_keys(model)[-1] == thread

                os.kill(busy, signal.SIGKILL)  # the worker holding the thread dies
                await wait_until_gone({busy})
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="after the crash")
                await tg.wait_for(lambda t: count_texts(t, "MOCK-REPLY") == 3)
                assert cache_keys(model)[-1] == thread  # resumed, not a fresh thread
                assert "after the crash" in last_user_text(model.requests[-1])
                everything = tree(bot.process.pid)
                bot.process.send_signal(signal.SIGTERM)
            assert bot.process.returncode == 0, bot.text()
            assert living(everything - {bot.process.pid}) == set()

            async with running(config, TOKEN) as again:
                await tg.wait_for(lambda t: len(t.calls_of("getMe")) >= 2)
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="after the restart")
                await tg.wait_for(lambda t: count_texts(t, "MOCK-REPLY") == 4)
                everything = tree(again.process.pid)
                again.process.send_signal(signal.SIGTERM)
            assert again.process.returncode == 0, again.text()
            assert living(everything - {again.process.pid}) == set()
    assert cache_keys(model)[-1] == thread  # the real thread, after a restart of the bot
    assert set(cache_keys(model)) == {thread}
    assert count_texts(tg, "continued in a new one") == 0  # never moved to a fresh thread
    history = str(model.requests[-1]["input"])
    assert "hello first" in history  # the model sees the earlier turns
    assert "after the restart" in last_user_text(model.requests[-1])
    # The resumed thread keeps its instructions, and the session knows which it has: no
    # copy of them ahead of a prompt, after the crash or the restart alike.
    assert "<developer_instructions>" not in history


async def test_a_worker_that_stopped_answering_is_replaced_and_the_message_runs_elsewhere(
    app_server_codex: Path, tmp_path: Path
) -> None:
    """The idle worker holding the conversation's thread is stopped (SIGSTOP) before its
    next ping: the next message goes to it and hears nothing. It failed after the endpoint
    limit with "Codex cannot reach its model endpoint", which was not the cause. Nothing ran,
    so it now runs on the other worker, in the same thread, once the silent one is gone."""
    with trio.fail_after(CEILING):
        async with app_server_edges(
            app_server_codex, tmp_path, sandbox="danger-full-access"
        ) as edges:
            model, tg, config = edges
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="hello first")
                await tg.wait_for(lambda t: has_text(t, "MOCK-REPLY"))
                thread = cache_keys(model)[-1]
                (silent,) = {pid for pid in workers_of(bot.process.pid) if holds(pid, thread)}
                os.kill(silent, signal.SIGSTOP)
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="and now?")
                await tg.wait_for(lambda t: count_texts(t, "MOCK-REPLY") == 2)
                assert living({silent}) == set()
                everything = tree(bot.process.pid)
                bot.process.send_signal(signal.SIGTERM)
            assert living(everything - {bot.process.pid}) == set()
    assert cache_keys(model)[-1] == thread  # resumed on the other worker
    assert "and now?" in last_user_text(model.requests[-1])
    assert count_texts(tg, "❌") == 0
    assert "stopped answering; replacing it" in bot.text()


@pytest.mark.parametrize("answers", [True, False], ids=["interrupted", "server-stopped"])
async def test_a_cancelled_first_request_leaves_its_thread_to_go_on(
    app_server_codex: Path, tmp_path: Path, answers: bool
) -> None:
    """The first request of a conversation is cancelled: the next message goes on in the
    thread that saw it (the model gets the cancelled request in its history), not in a
    fresh thread with a recap. Also when the server no longer answers (SIGSTOP): the cancel
    then stops the process, which holds the thread until it is killed; the next message
    went to the other worker at once, its resume was refused ("active writer"), and it went
    on in a fresh thread. It now waits for that process to be gone."""
    with trio.fail_after(CEILING):
        async with app_server_edges(
            app_server_codex, tmp_path, sandbox="danger-full-access"
        ) as edges:
            model, tg, config = edges
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="now sleep for a while")
                sleeper = await wait_for_sleep(bot.process.pid)
                thread = cache_keys(model)[-1]
                assert thread
                (busy,) = {pid for pid in workers_of(bot.process.pid) if sleeper in tree(pid)}
                if not answers:
                    os.kill(busy, signal.SIGSTOP)
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="/cancel")
                await tg.wait_for(lambda t: has_text(t, "🛑 Cancelled after"))
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="go on")
                await tg.wait_for(lambda t: count_texts(t, "MOCK-REPLY") == 1)
                assert living({busy}) == ({busy} if answers else set())
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="/status")
                await tg.wait_for(lambda t: has_text(t, "State: idle"))
                everything = tree(bot.process.pid)
                bot.process.send_signal(signal.SIGTERM)
            assert bot.process.returncode == 0, bot.text()
            assert living(everything - {bot.process.pid}) == set()
    assert cache_keys(model)[-1] == thread
    assert "now sleep for a while" in str(model.requests[-1]["input"])
    assert "cancelled by the user" not in str(model.requests[-1]["input"])  # no recap
    assert count_texts(tg, "continued in a new one") == 0


async def test_a_resumed_thread_keeps_the_profiles_sandbox(
    app_server_codex: Path, tmp_path: Path
) -> None:
    """After a restart of the bot the conversation's thread is resumed in the profile's
    sandbox, not in the one Codex's own config.toml names (a bare ``thread/resume`` ran a
    ``workspace-write`` profile's thread with full access, unasked). The files it tries lie
    outside the workspace and outside /tmp, which ``workspace-write`` may write."""
    outside = Path(tempfile.mkdtemp(dir="/var/tmp"))
    before, after = outside / "before.txt", outside / "after.txt"

    def tried(times: int, tg: FakeTelegram) -> bool:
        return count_texts(tg, "Command finished") == times

    def routed_single(body: dict[str, Any]) -> Turn:
        if "Decide how to handle" in last_user_text(body):  # plan mode's selector
            return [Text('{"route": "single", "reason": "one command"}')]
        return model_turns(body)

    with trio.fail_after(CEILING):
        async with app_server_edges(
            app_server_codex,
            tmp_path,
            sandbox="workspace-write",
            codex_sandbox="danger-full-access",
            responder=routed_single,
        ) as (model, tg, config):
            for times, attempt in enumerate((before, after), start=1):
                async with polling(tg, config, TOKEN) as bot:
                    tg.push_message(chat_id=ALICE, user_id=ALICE, text="/mode plan")
                    tg.push_message(chat_id=ALICE, user_id=ALICE, text=f"touch the file {attempt}")
                    await tg.wait_for(partial(tried, times))
                    bot.process.send_signal(signal.SIGTERM)
                assert bot.process.returncode == 0, bot.text()
    developer = [
        key
        for key, body in zip(cache_keys(model), model.requests, strict=True)
        if "Decide how to handle" not in last_user_text(body)
    ]
    assert len(set(developer)) == 1  # one developer thread, resumed after the restart
    assert "Read-only file system" in tool_output(model.requests[-1])
    created = sorted(path.name for path in outside.iterdir())
    shutil.rmtree(outside)
    assert created == []


async def test_a_failed_turn_keeps_the_thread(app_server_codex: Path, tmp_path: Path) -> None:
    """A model error ends the turn, not the conversation: the next message goes on in the
    same thread (Codex 0.171.0 keeps the failed turn in it; the MCP backend cannot)."""
    with trio.fail_after(CEILING):
        async with app_server_edges(app_server_codex, tmp_path, sandbox="read-only") as edges:
            model, tg, config = edges
            async with polling(tg, config, TOKEN) as bot:
                await answers_around_a_failure(tg, "now fail this turn")
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    thread = cache_keys(model)[0]  # where "hello first" went
    (failed,) = [t for t in tg.sent_texts(ALICE) if "❌ Codex failed" in t]
    assert "it goes on in the same Codex session" in failed, failed
    assert thread in failed  # its resume line names the thread that goes on
    assert set(cache_keys(model)) == {thread}
    assert count_texts(tg, "continued in a new one") == 0
    history = str(model.requests[-1]["input"])
    assert "hello first" in history
    assert "Summary of it so far" not in history  # no recap: the thread itself remembers
    replies = [t for t in tg.sent_texts(ALICE) if "MOCK-REPLY" in t]
    assert "the question after it" in replies[-1], replies


async def test_a_full_context_window_goes_on_in_a_fresh_session_with_the_summary(
    app_server_codex: Path, tmp_path: Path
) -> None:
    """Codex finds the thread too long for the model ("Start a new thread"): going on in it
    would fail the same way, so the next message starts a fresh thread that gets the
    conversation's summary, and the failure says so in words."""
    with trio.fail_after(CEILING):
        async with app_server_edges(app_server_codex, tmp_path, sandbox="read-only") as edges:
            model, tg, config = edges
            async with polling(tg, config, TOKEN) as bot:
                await answers_around_a_failure(tg, "now outgrow the context")
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    thread = cache_keys(model)[0]  # where "hello first" went
    (failed,) = [t for t in tg.sent_texts(ALICE) if "❌ Codex failed" in t]
    assert "grown too long for the model to read at once" in failed, failed
    assert "it starts a fresh Codex session that gets a summary" in failed
    assert cache_keys(model)[-1] != thread
    history = str(model.requests[-1]["input"])
    assert "Summary of it so far" in history
    assert "hello first" in history


def think_it_over(body: dict[str, Any]) -> Turn:
    """A model that reasons for 16 s: 12 s without a word, then its summary, a delta a
    second; then it answers."""
    if last_user_text(body).rstrip().endswith("think it over"):
        parts = ("**Weighing** the options.", "**Settling** on one.")
        return [Reasoning(parts, silent=12.0, every=1.0), Text("MOCK-REPLY: thought it over")]
    return model_turns(body)


@pytest.mark.parametrize("backend", ["mcp", "app-server"])
async def test_a_model_that_reasons_long_is_not_taken_for_a_dead_endpoint(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """Reasoning longer than ``endpoint_failure_limit`` (10 s here), saying nothing (or only
    its summary), was stopped as "cannot reach its model endpoint". An open reasoning item
    holds the clock now, its summary is progress, and the progress message shows what the
    model is thinking."""
    async with asking(
        request,
        tmp_path,
        backend=backend,
        responder=think_it_over,
        question="please think it over",
        answer="MOCK-REPLY: thought it over",
    ) as (_model, tg, _bot):
        pass
    shown = [
        str(call.params.get("text"))
        for call in tg.calls_of("editMessageText") + tg.calls_of("sendMessage")
    ]
    assert any("💭 Weighing" in text or "💭 Settling" in text for text in shown), shown


async def test_approvals_go_through_the_buttons_and_a_patch_shows_its_diff(
    app_server_codex: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    with trio.fail_after(CEILING):
        async with app_server_edges(app_server_codex, tmp_path, sandbox="read-only") as edges:
            model, tg, config = edges
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="please create approved.txt")
                approved = await answer_approval(tg, "$ touch approved.txt", "✅ Approve")
                await tg.wait_for(lambda t: has_text(t, "Command finished"))
                assert (work / "approved.txt").exists()
                await tg.wait_for(lambda t: approved.text.startswith("✅ Approved: $ "))
                assert not buttons(approved)

                tg.push_message(chat_id=ALICE, user_id=ALICE, text="please create denied.txt")
                denied = await answer_approval(tg, "$ touch denied.txt", "⛔ Deny")
                await tg.wait_for(lambda t: count_texts(t, "Command finished") == 2)
                assert not (work / "denied.txt").exists()
                await tg.wait_for(lambda t: denied.text.startswith("⛔ Denied: $ "))

                tg.push_message(chat_id=ALICE, user_id=ALICE, text="please patch notes.txt")
                patched = await answer_approval(tg, "• ", "✅ For session")
                assert "change files" in patched.text
                assert "notes.txt" in patched.text
                assert "+from the patch" in patched.text or "from the patch" in patched.text
                await tg.wait_for(lambda t: has_text(t, "Patch step finished."))
                assert (work / "notes.txt").read_text() == "from the patch\n"
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    answers = [call.params.get("text") for call in tg.calls_of("answerCallbackQuery")]
    assert answers == ["Approved", "Denied", "Approved"]
    asked = [str(call.params.get("text")) for call in tg.calls_of("sendMessage")]
    assert any("\nWhy, in Codex's words: to create approved.txt" in text for text in asked)
    outputs = [tool_output(body) for body in model.requests if tool_output(body)]
    assert "exited with code 0" in outputs[0]


def hang(body: dict[str, Any]) -> Turn:
    return [Hang()]


async def test_a_silent_endpoint_ends_in_a_clear_message(
    app_server_codex: Path, tmp_path: Path
) -> None:
    with trio.fail_after(CEILING):
        async with app_server_edges(
            app_server_codex, tmp_path, sandbox="read-only", responder=hang
        ) as edges:
            _model, tg, config = edges
            async with polling(tg, config, TOKEN) as bot:
                workers = workers_of(bot.process.pid)
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="hello")
                await tg.wait_for(lambda t: has_text(t, "cannot reach its model endpoint"))
                assert workers_of(bot.process.pid) == workers  # interrupted in place
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    (said,) = [t for t in tg.sent_texts(ALICE) if "cannot reach its model endpoint" in t]
    assert "codex-orchestrator doctor" in said


@pytest.mark.parametrize("backend", ["app-server", "mcp"])
async def test_an_unreachable_endpoint_ends_in_a_clear_message(
    app_server_codex: Path, codex_binary: Path, tmp_path: Path, backend: str
) -> None:
    binary = app_server_codex if backend == "app-server" else codex_binary
    with trio.fail_after(CEILING):
        async with app_server_edges(
            binary,
            tmp_path,
            sandbox="read-only",
            base_url="http://127.0.0.1:9/v1",
            backend=backend,
        ) as edges:
            _model, tg, config = edges
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="hello")
                await tg.wait_for(lambda t: has_text(t, "cannot reach its model endpoint"))
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    (said,) = [t for t in tg.sent_texts(ALICE) if "cannot reach its model endpoint" in t]
    assert "Reconnecting" in said


async def test_start_says_when_codex_is_not_logged_in(
    app_server_codex: Path, tmp_path: Path
) -> None:
    """On app-server, ``start`` asks Codex itself who it is logged in as (``account/read``,
    as doctor does) once its first worker is up: one WARNING with the login command for an
    empty CODEX_HOME, none for a home whose model provider needs no login (the mock's)."""
    with trio.fail_after(CEILING):
        async with open_fake_telegram(TOKEN) as tg:
            empty = tmp_path / "empty-home"
            empty.mkdir()
            config = write_config(
                tmp_path,
                telegram_url=tg.base_url,
                user=ALICE,
                codex_command=[str(app_server_codex), "app-server"],
                codex_env={"CODEX_HOME": str(empty)},
                batch_window=0.1,
                codex={"backend": "app-server"},
            )
            async with polling(tg, config, TOKEN) as bot:
                await bot.wait_for_output(lambda text: "2 Codex workers warm" in text)
                bot.process.send_signal(signal.SIGTERM)
        edges = app_server_edges(app_server_codex, tmp_path / "logged", sandbox="read-only")
        async with (
            edges as (_model, other_tg, logged_in),
            polling(other_tg, logged_in, TOKEN) as other,
        ):
            await other.wait_for_output(lambda text: "2 Codex workers warm" in text)
            other.process.send_signal(signal.SIGTERM)
    (warning,) = [line for line in bot.text().splitlines() if "Codex auth:" in line]
    assert "WARNING" in warning
    assert "Codex is not logged in (account/read: no account)" in warning
    assert f"CODEX_HOME={empty} {app_server_codex} login" in warning
    assert "Codex auth:" not in other.text()
