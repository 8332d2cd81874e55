"""`codex-orchestrator start` as a real process: fake Telegram over HTTP, fake Codex over
stdio, real signals, exit codes, and no process left behind."""

from __future__ import annotations

import shlex
import signal
import socket
from typing import TYPE_CHECKING

import trio

from orchestrator.shutdown import DUPLICATE_SIGNAL_WINDOW
from tests.bot_process import running
from tests.bot_process import write_config as write_bot_config
from tests.fakes.codex_script import FakeCodex
from tests.fakes.telegram_server import ServerError, open_fake_telegram
from tests.procfs import living, read_pids, tree

if TYPE_CHECKING:
    from pathlib import Path

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
ALICE = 4242
CEILING = 60


def write_config(tmp_path: Path, base_url: str, fake: FakeCodex) -> Path:
    return write_bot_config(
        tmp_path,
        telegram_url=base_url,
        user=ALICE,
        codex_command=fake.argv(),
        codex_env={"FAKE_CODEX_SCRIPT": str(fake.script_path)},
        batch_window=0.2,
    )


async def test_message_reply_graceful_stop_and_no_orphans(tmp_path: Path) -> None:
    fake = FakeCodex(tmp_path / "codex")
    fake.rule("spawn", grandchild=True, reply="spawned a background job")
    with trio.fail_after(CEILING):
        async with open_fake_telegram(TOKEN) as tg:
            config = write_config(tmp_path, tg.base_url, fake)
            async with running(config, TOKEN) as bot:
                await tg.wait_for(lambda t: bool(t.calls_of("getUpdates")))
                workers = tree(bot.process.pid) - {bot.process.pid}
                assert len(workers) >= 2  # the pool is warm before the first poll
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="hello over http")
                await tg.wait_for(lambda t: "FAKE-REPLY: hello over http" in t.sent_texts(ALICE))
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="spawn something")
                await tg.wait_for(lambda t: "spawned a background job" in t.sent_texts(ALICE))
                everything = tree(bot.process.pid) | read_pids(fake.pids_path)
                bot.process.send_signal(signal.SIGTERM)
    text = bot.text()
    assert bot.process.returncode == 0, text
    assert TOKEN not in text
    assert "draining" in text
    # Codex is not logged in here (the suite's HOME is empty): one warning with the command,
    # and the bot served anyway.
    warnings = [line for line in text.splitlines() if "Codex auth" in line]
    assert len(warnings) == 1, warnings
    assert "WARNING" in warnings[0]
    assert f"`{shlex.join(fake.argv())} login`" in warnings[0]
    assert living(everything - {bot.process.pid}) == set()
    lines = [line for line in text.splitlines() if line.strip()]
    assert all(line[:4].isdigit() and line[10] == "T" for line in lines), lines[:3]
    sessions = list((tmp_path / "state" / "sessions").glob("*.json"))
    assert [path.name for path in sessions] == [f"{ALICE}-{ALICE}.json"]
    assert list((tmp_path / "state" / "traces").glob("*.jsonl"))


async def test_second_signal_forces_and_a_stranger_is_refused(tmp_path: Path) -> None:
    fake = FakeCodex(tmp_path / "codex")
    fake.rule("forever", hang=True)
    with trio.fail_after(CEILING):
        async with (
            open_fake_telegram(TOKEN) as tg,
            running(write_config(tmp_path, tg.base_url, fake), TOKEN) as bot,
        ):
            await tg.wait_for(lambda t: bool(t.calls_of("getUpdates")))
            tg.push_message(chat_id=999, user_id=999, text="let me in")
            await tg.wait_for(lambda t: len(t.sent_texts(999)) == 1)
            tg.push_message(chat_id=ALICE, user_id=ALICE, text="forever job")
            await tg.wait_for(lambda t: any("Working" in m for m in t.sent_texts(ALICE)))
            everything = tree(bot.process.pid)
            bot.process.send_signal(signal.SIGTERM)
            await trio.sleep(DUPLICATE_SIGNAL_WINDOW + 0.5)  # later than a duplicate delivery
            bot.process.send_signal(signal.SIGINT)
    assert bot.process.returncode == 128 + signal.SIGINT
    assert "unexpected error" not in bot.text()  # a forced stop is asked for, not a crash
    assert "private" in tg.sent_texts(999)[0]
    assert living(everything - {bot.process.pid}) == set()


async def test_a_signal_delivered_twice_at_once_drains_instead_of_forcing(
    tmp_path: Path,
) -> None:
    fake = FakeCodex(tmp_path / "codex")
    with trio.fail_after(CEILING):
        async with (
            open_fake_telegram(TOKEN) as tg,
            running(write_config(tmp_path, tg.base_url, fake), TOKEN) as bot,
        ):
            await tg.wait_for(lambda t: bool(t.calls_of("getUpdates")))
            # The supervisor's signal and the wrapper's copy (two different signals, as the
            # kernel merges two pending ones of the same kind).
            bot.process.send_signal(signal.SIGTERM)
            bot.process.send_signal(signal.SIGINT)
    assert bot.process.returncode == 0, bot.text()
    assert "duplicate delivery" in bot.text()


async def test_no_auth_warning_when_codex_is_logged_in(tmp_path: Path) -> None:
    fake = FakeCodex(tmp_path / "codex")
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "auth.json").write_text("{}")
    with trio.fail_after(CEILING):
        async with open_fake_telegram(TOKEN) as tg:
            config = write_bot_config(
                tmp_path,
                telegram_url=tg.base_url,
                user=ALICE,
                codex_command=fake.argv(),
                codex_env={"FAKE_CODEX_SCRIPT": str(fake.script_path), "CODEX_HOME": str(home)},
                batch_window=0.2,
            )
            async with running(config, TOKEN) as bot:
                await tg.wait_for(lambda t: bool(t.calls_of("getUpdates")))
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    assert "Codex auth" not in bot.text()


async def test_bad_token_exits_non_zero_with_a_clear_message(tmp_path: Path) -> None:
    fake = FakeCodex(tmp_path / "codex")
    wrong = "987654321:ZZHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    with trio.fail_after(CEILING):
        async with (
            open_fake_telegram(TOKEN) as tg,
            running(write_config(tmp_path, tg.base_url, fake), token=wrong) as bot,
        ):
            pass  # the bot stops by itself
    # A configuration error: exit 2, which the systemd unit does not restart; one line says it.
    assert bot.process.returncode == 2
    lines = [line for line in bot.text().splitlines() if "ERROR" in line or "CRITICAL" in line]
    assert len(lines) == 1, lines
    assert "rejected the bot token" in lines[0]
    assert "Traceback" not in bot.text()
    assert wrong not in bot.text()


async def test_telegram_down_at_start_is_waited_out(tmp_path: Path) -> None:
    """Connections refused (nothing listens yet), then a 502, then Telegram is up: the bot
    logs each failed attempt in one plain line and serves once Telegram answers."""
    fake = FakeCodex(tmp_path / "codex")
    with socket.socket() as probe:  # a free port where nothing listens yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(tmp_path, f"http://127.0.0.1:{port}", fake)
    with trio.fail_after(CEILING):
        async with running(config, TOKEN) as bot:
            await bot.wait_for_output(lambda text: text.count("Telegram is not reachable") >= 2)
            async with open_fake_telegram(TOKEN, port=port) as tg:
                tg.script_fault("getMe", ServerError(502))
                await tg.wait_for(lambda t: bool(t.calls_of("getUpdates")))
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="hello after the outage")
                await tg.wait_for(
                    lambda t: "FAKE-REPLY: hello after the outage" in t.sent_texts(ALICE)
                )
                bot.process.send_signal(signal.SIGTERM)
                with trio.fail_after(CEILING):
                    await bot.process.wait()
    text = bot.text()
    assert bot.process.returncode == 0, text
    failures = [line for line in text.splitlines() if "Telegram is not reachable" in line]
    assert len(failures) >= 3  # two refused connections, one 502
    assert any("ConnectError" in line for line in failures)
    assert any("502" in line for line in failures)
    assert all("WARNING" in line for line in failures)
    assert "Traceback" not in text


async def test_bad_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "conf.toml"
    config.write_text("[codex]\npool_size = 'many'\n")
    with trio.fail_after(CEILING):
        async with running(config, TOKEN) as bot:
            pass
    assert bot.process.returncode == 2
    assert "codex.pool_size" in bot.text()
