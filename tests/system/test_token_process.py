"""The bot token from a file, with the bot as a process behind the fake Telegram: the token is
then in no process environment, and secret files open to other users are warned about."""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

import trio

from tests.bot_process import cli_environment, polling, run_cli
from tests.fakes.codex_script import FakeCodex
from tests.fakes.telegram_server import open_fake_telegram
from tests.procfs import tree
from tests.system.test_process import ALICE, CEILING, TOKEN, write_config

if TYPE_CHECKING:
    from pathlib import Path


def environ_of(pid: int) -> bytes:
    """What `pid`'s environment held at its start; empty when this process may not read it:
    the bot is not dumpable (`orchestrator.edges.undumpable`), so a suite that runs without
    ``CAP_SYS_PTRACE`` (not as root) is refused its copy, as any other process would be."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return handle.read()
    except PermissionError:
        return b""


def name_token_file(config: Path, value: str) -> None:
    text = config.read_text().replace("[telegram]\n", f"[telegram]\ntoken_file = {value!r}\n", 1)
    config.write_text(text)


async def test_token_file_keeps_the_token_out_of_every_environment(tmp_path: Path) -> None:
    fake = FakeCodex(tmp_path / "codex")
    token_file = tmp_path / "secrets" / "telegram-token"
    token_file.parent.mkdir()
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o640)
    with trio.fail_after(CEILING):
        async with open_fake_telegram(TOKEN) as tg:
            config = write_config(tmp_path, tg.base_url, fake)
            name_token_file(config, "secrets/telegram-token")  # relative to the config folder
            config.chmod(0o600)
            async with polling(tg, config, None) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="hello")
                await tg.wait_for(
                    lambda t: any(x.startswith("FAKE-REPLY: hello\n") for x in t.sent_texts(ALICE))
                )
                pids = [bot.process.pid, *(pid for pid in _children(bot.process.pid))]
                environments = [environ_of(pid) for pid in pids]
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    assert len(environments) >= 3  # the bot and its two workers
    assert all(TOKEN.encode() not in env for env in environments)
    warning = f"the token file {token_file} is open to other users (mode 0640): run chmod 600"
    assert warning in bot.text()
    assert "the config file" not in bot.text()  # 0600: nothing to say
    _code, output = await run_cli(
        ["doctor"], cwd=tmp_path, env=cli_environment(CODEX_CONF_PATH=str(config))
    )
    assert f"the token file {token_file} is open to other users (mode 0640)" in output
    assert TOKEN not in output


async def test_systemd_credential_is_read_when_no_token_file_is_named(tmp_path: Path) -> None:
    fake = FakeCodex(tmp_path / "codex")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "telegram_bot_token").write_text(TOKEN)
    os.chmod(credentials / "telegram_bot_token", 0o400)
    with trio.fail_after(CEILING):
        async with open_fake_telegram(TOKEN) as tg:
            config = write_config(tmp_path, tg.base_url, fake)
            _code, output = await run_cli(
                ["doctor"],
                cwd=tmp_path,
                env=cli_environment(
                    CODEX_CONF_PATH=str(config), CREDENTIALS_DIRECTORY=str(credentials)
                ),
            )
    assert "set in systemd credential telegram_bot_token" in output
    assert "the config file" in output
    assert "(mode 0644)" in output
    assert TOKEN not in output


def _children(pid: int) -> list[int]:
    return sorted(tree(pid) - {pid})
