"""``doctor`` as a process against the real Codex 0.153.4 and a fake Telegram: with a Codex
that can authenticate every check passes (exit 0); without a login it says the command to
run, built from the configured worker command."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import trio

from tests.bot_process import cli_environment, run_cli
from tests.fakes.mock_model import write_codex_home
from tests.fakes.telegram_server import open_fake_telegram

if TYPE_CHECKING:
    from pathlib import Path

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
CEILING = 120


def config(folder: Path, telegram_url: str, codex_binary: Path, codex_home: Path) -> Path:
    (folder / "work").mkdir(exist_ok=True)
    path = folder / "conf.toml"
    path.write_text(
        f"state_dir = {json.dumps(str(folder / 'state'))}\n"
        f"[telegram]\nallowed_users = [42]\napi_base_url = {json.dumps(telegram_url)}\n"
        f'[codex]\ncommand = [{json.dumps(str(codex_binary))}, "mcp-server"]\npool_size = 1\n'
        f"[codex.env]\nCODEX_HOME = {json.dumps(str(codex_home))}\n"
        f"[profiles.default]\nworking_directory = {json.dumps(str(folder / 'work'))}\n"
    )
    return path


async def doctor(tmp_path: Path, codex_binary: Path, codex_home: Path) -> tuple[int, str]:
    with trio.fail_after(CEILING):
        async with open_fake_telegram(TOKEN) as tg:
            path = config(tmp_path, tg.base_url, codex_binary, codex_home)
            return await run_cli(
                ["doctor", "--config", str(path)],
                cwd=tmp_path,
                env=cli_environment(TELEGRAM_BOT_TOKEN=TOKEN),
                within=CEILING,
            )


async def test_doctor_passes_with_a_codex_that_can_authenticate(
    tmp_path: Path, codex_binary: Path
) -> None:
    home = write_codex_home(tmp_path / "codex-home", "http://127.0.0.1:9/v1")
    code, output = await doctor(tmp_path, codex_binary, home)
    assert code == 0, output
    assert "All checks passed." in output
    assert "0.153.4" in output
    assert "model provider 'mock'" in output
    assert TOKEN not in output


async def test_doctor_names_the_login_command_of_the_configured_codex(
    tmp_path: Path, codex_binary: Path
) -> None:
    home = tmp_path / "codex-home"
    home.mkdir()
    code, output = await doctor(tmp_path, codex_binary, home)
    assert code == 1
    auth = next(line for line in output.splitlines() if line.startswith("codex auth "))
    assert "FAIL" in auth
    assert f"`CODEX_HOME={home} {codex_binary} login`" in auth
