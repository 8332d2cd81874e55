"""What a stop of the bot leaves behind, with the bot as a process: a forced stop leaves its
request as a kill does, a stop past the drain grace after Codex acted offers the request
again instead of running it again by itself, a bot stopped with Ctrl-Z while Telegram
answered reads the answer instead of asking again, and what a crashed worker's commands left
running ends with the worker."""

from __future__ import annotations

import shlex
import signal
from typing import TYPE_CHECKING

import pytest
import trio

from orchestrator.shutdown import DUPLICATE_SIGNAL_WINDOW
from tests.bot_process import (
    ENTRY,
    polling,
    running,
    stop_while_telegram_answers,
)
from tests.bot_process import write_config as write_bot_config
from tests.fakes.codex_script import FakeCodex
from tests.fakes.telegram_server import Delay, open_fake_telegram
from tests.procfs import kill_survivors, living, read_pids, tree
from tests.system.test_process import (
    ALICE,
    CEILING,
    TOKEN,
    buttons_of,
    codex_calls,
    press_first_button,
    session_state,
    wait_for_file,
    write_config,
)

if TYPE_CHECKING:
    from pathlib import Path


async def test_a_forced_stop_leaves_the_request_as_a_kill_does(tmp_path: Path) -> None:
    """Nothing reaches the user during a forced stop, so the request is not queued to run
    again by itself (it may have changed files): the next start closes its progress message
    and offers "Run again", as after a kill."""
    fake = FakeCodex(tmp_path / "codex")
    fake.rule("forever", hang=True)
    with trio.fail_after(CEILING * 2):
        async with open_fake_telegram(TOKEN) as tg:
            config = write_config(tmp_path, tg.base_url, fake)
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="forever job")
                await tg.wait_for(lambda t: any(m.startswith("⏳") for m in t.sent_texts(ALICE)))
                bot.process.send_signal(signal.SIGTERM)
                await trio.sleep(DUPLICATE_SIGNAL_WINDOW + 0.5)  # later than a duplicate
                bot.process.send_signal(signal.SIGTERM)
            assert bot.process.returncode == 128 + signal.SIGTERM
            [live] = [m for m in tg.messages(ALICE) if m.text.startswith("⏳")]
            assert session_state(tmp_path).get("queue") in (None, [])
            async with running(config, TOKEN) as again:
                await tg.wait_for(lambda t: any("Run again" in m for m in t.sent_texts(ALICE)))
                assert live.text == "Interrupted: the bot stopped while this ran."
                assert buttons_of(live) == []
                await trio.sleep(1)
                assert len(codex_calls(fake, "forever job")) == 1  # not run again by itself
                again.process.send_signal(signal.SIGTERM)
    assert again.process.returncode == 0, again.text()


async def test_a_stop_after_codex_ran_a_command_offers_the_request_instead_of_rerunning(
    tmp_path: Path,
) -> None:
    """Past the drain grace, a request Codex already ran a command for is not queued to run
    again by itself (it would run it twice): its progress message says so, and the next start
    offers it with "Run again", which runs it once more when pressed."""
    fake = FakeCodex(tmp_path / "codex")
    fake.rule("build it", run="true", run_wait=5, hang=True)
    with trio.fail_after(CEILING * 2):
        async with open_fake_telegram(TOKEN) as tg:
            config = write_config(tmp_path, tg.base_url, fake)
            config.write_text(config.read_text().replace("drain_grace = 10", "drain_grace = 0.5"))
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="build it")
                await tg.wait_for(
                    lambda t: any(m.startswith("⏳") and "true" in m for m in t.sent_texts(ALICE))
                )
                bot.process.send_signal(signal.SIGTERM)
            assert bot.process.returncode == 0, bot.text()
            [live] = [m for m in tg.messages(ALICE) if "Interrupted" in m.text]
            assert live.text == (
                "⏹ Interrupted: the bot is stopping. Codex had already begun to work on it, so "
                "it does not run again by itself: when the bot is back, a button offers to run "
                "it again."
            )
            assert session_state(tmp_path).get("queue") in (None, [])
            async with running(config, TOKEN) as again:
                await tg.wait_for(lambda t: any("Run again" in m for m in t.sent_texts(ALICE)))
                [offer] = [m for m in tg.messages(ALICE) if "Run again" in m.text]
                assert "“build it”" in offer.text
                await trio.sleep(1)
                assert len(codex_calls(fake, "build it")) == 1  # not run again by itself
                press_first_button(tg, offer)
                await wait_for_file(lambda: len(codex_calls(fake, "build it")) == 2)
                again.process.send_signal(signal.SIGTERM)
    assert again.process.returncode == 0, again.text()


@pytest.mark.parametrize(
    ("method", "text"),
    [("sendMessage", "answer while I am stopped"), ("sendDocument", "/get notes.txt")],
    ids=["reply", "document"],
)
async def test_a_bot_stopped_with_ctrl_z_reads_the_telegram_answer_that_came_meanwhile(
    tmp_path: Path, method: str, text: str
) -> None:
    """Seen from outside: a bot stopped (Ctrl-Z) while Telegram answered its sendMessage, for
    longer than the call's timeout, timed out on `fg` before it read the answer waiting in its
    socket, and sent the reply again: twice in the chat. A document (a multipart upload, on
    httpx until then) was sent twice the same way. Time the bot did not run is not
    Telegram's silence. (The wall-clock waits are the scenario: the stop, landing in the
    bot's wait for the answer, and the moment after it in which a second send would come.)"""
    fake = FakeCodex(tmp_path / "codex")
    with trio.fail_after(CEILING):
        async with open_fake_telegram(TOKEN) as tg:
            config = write_config(tmp_path, tg.base_url, fake)
            (tmp_path / "work" / "notes.txt").write_text("the notes\n")
            config.write_text(
                config.read_text().replace("[telegram]\n", "[telegram]\nrequest_timeout = 1\n")
            )
            async with polling(tg, config, TOKEN) as bot:
                tg.script_fault(method, Delay(0.5), chat_id=ALICE)  # the answer's
                tg.push_message(chat_id=ALICE, user_id=ALICE, text=text)
                await tg.wait_for(lambda t: bool(t.calls_of(method)))
                await stop_while_telegram_answers(bot)
    assert bot.process.returncode == 0, bot.text()
    assert len(tg.calls_of(method)) == 1
    [sent] = tg.messages(ALICE)
    if method == "sendDocument":
        assert (sent.filename, sent.document) == ("notes.txt", b"the notes\n")
    else:
        assert sent.text.startswith("FAKE-REPLY: answer while I am stopped")
    assert "timed out" not in bot.text()


async def test_commands_a_crashed_worker_left_running_are_stopped_with_it(
    tmp_path: Path,
) -> None:
    """A worker that dies before the bot saw its command start leaves the command to the bot
    (the subreaper), in no snapshot of its tree; its teardown still ends it, by the variable
    every process the worker started carries, while the bot goes on."""
    fake = FakeCodex(tmp_path / "codex")
    fake.rule("leave and die", grandchild=True, crash=True)
    with trio.fail_after(CEILING):
        async with open_fake_telegram(TOKEN) as tg:
            config = write_config(tmp_path, tg.base_url, fake)
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="leave and die")
                await tg.wait_for(lambda t: any(m.startswith("❌") for m in t.sent_texts(ALICE)))
                left = set(read_pids(fake.pids_path))
                assert left  # the commands and the servers that started them
                await wait_for_file(lambda: living(left) == set())
                # Logged once they are gone: under load its line may reach us a moment later.
                await bot.wait_for_output(lambda text: "the MCP server left running" in text)
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()


async def test_a_closed_terminal_drains_the_bot_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    """SIGHUP (the terminal closed, the ssh session ended) drains as SIGTERM does: the
    running request finishes and is answered, and what its commands started is stopped. Its
    default action killed the bot on the spot, and the workers' commands, in sessions of
    their own, went on without it."""
    fake = FakeCodex(tmp_path / "codex")
    fake.rule("background", grandchild=True, delay=1.5, reply="started it")
    with trio.fail_after(CEILING):
        async with open_fake_telegram(TOKEN) as tg:
            config = write_config(tmp_path, tg.base_url, fake)
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="background job")
                await wait_for_file(lambda: len(read_pids(fake.pids_path)) >= 2)
                started = read_pids(fake.pids_path)
                bot.process.send_signal(signal.SIGHUP)
    assert kill_survivors(started) == set()
    assert bot.process.returncode == 0, bot.text()
    assert "shutting down (SIGHUP)" in bot.text()
    assert any(m.startswith("started it") for m in tg.sent_texts(ALICE))


async def test_a_bot_started_under_nohup_outlives_the_terminal(tmp_path: Path) -> None:
    """``nohup`` starts the bot with SIGHUP ignored: whoever did wants it to outlive the
    terminal, so a hangup changes nothing."""
    fake = FakeCodex(tmp_path / "codex")
    nohup = "import signal; signal.signal(signal.SIGHUP, signal.SIG_IGN); " + ENTRY
    with trio.fail_after(CEILING):
        async with open_fake_telegram(TOKEN) as tg:
            config = write_config(tmp_path, tg.base_url, fake)
            async with polling(tg, config, TOKEN, entry=nohup) as bot:
                bot.process.send_signal(signal.SIGHUP)
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="still there?")
                await tg.wait_for(
                    lambda t: any(
                        m.startswith("FAKE-REPLY: still there?") for m in t.sent_texts(ALICE)
                    )
                )
                assert bot.process.poll() is None
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    assert "SIGHUP" not in bot.text()


async def test_a_stop_while_the_workers_start_ends_the_bot_at_once(tmp_path: Path) -> None:
    """A Codex that takes its time to start (a first ``npx`` download takes a minute, here a
    30 s pause before the server): a SIGTERM then ends the bot at once, with whatever it had
    started. It used to wait for every worker to come up, one after the other."""
    fake = FakeCodex(tmp_path / "codex")
    server = " ".join(shlex.quote(part) for part in fake.argv())
    with trio.fail_after(CEILING):
        async with open_fake_telegram(TOKEN) as tg:
            config = write_bot_config(
                tmp_path,
                telegram_url=tg.base_url,
                user=ALICE,
                codex_command=("sh", "-c", f"sleep 30; exec {server}"),
                codex_env={"FAKE_CODEX_SCRIPT": str(fake.script_path)},
                batch_window=0.2,
            )
            async with running(config, TOKEN, exit_within=5) as bot:
                await bot.wait_for_output(lambda text: "connected to Telegram" in text)
                await wait_for_file(lambda: len(tree(bot.process.pid)) > 1)  # sh, its sleep
                starting = tree(bot.process.pid) - {bot.process.pid}
                bot.process.send_signal(signal.SIGTERM)
    assert kill_survivors(starting) == set()
    assert bot.process.returncode == 0, bot.text()
    assert "stopped while the Codex workers were starting" in bot.text()
    assert "warm" not in bot.text()
    assert not tg.calls_of("getUpdates")
