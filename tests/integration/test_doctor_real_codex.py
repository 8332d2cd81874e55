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
from tests.integration.app_server_fixtures import app_server_codex

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["app_server_codex"]

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
CEILING = 120


def config(
    folder: Path,
    telegram_url: str,
    codex_binary: Path,
    codex_home: Path,
    backend: str = "mcp",
) -> Path:
    (folder / "work").mkdir(exist_ok=True)
    path = folder / "conf.toml"
    word = "app-server" if backend == "app-server" else "mcp-server"
    path.write_text(
        f"state_dir = {json.dumps(str(folder / 'state'))}\n"
        f"[telegram]\nallowed_users = [42]\napi_base_url = {json.dumps(telegram_url)}\n"
        f"[codex]\nbackend = {json.dumps(backend)}\n"
        f'command = [{json.dumps(str(codex_binary))}, "{word}"]\npool_size = 1\n'
        f"[codex.env]\nCODEX_HOME = {json.dumps(str(codex_home))}\n"
        f"[profiles.default]\nworking_directory = {json.dumps(str(folder / 'work'))}\n"
    )
    return path


async def doctor(
    tmp_path: Path, codex_binary: Path, codex_home: Path, backend: str = "mcp"
) -> tuple[int, str]:
    with trio.fail_after(CEILING):
        async with open_fake_telegram(TOKEN) as tg:
            path = config(tmp_path, tg.base_url, codex_binary, codex_home, backend)
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
    fence = next(line for line in output.splitlines() if line.startswith("agent fence "))
    assert " warn " in fence, fence
    assert "the config file and state_dir" in fence, fence
    assert 'codex.backend = "app-server"' in fence
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


async def test_doctor_checks_the_app_server_backend(tmp_path: Path, app_server_codex: Path) -> None:
    home = write_codex_home(tmp_path / "codex-home", "http://127.0.0.1:9/v1", model="gpt-5.5")
    code, output = await doctor(tmp_path, app_server_codex, home, backend="app-server")
    assert code == 0, output
    assert "codex app-server 0.171.0: handshake" in output
    assert "the model provider needs no OpenAI login" in output
    assert "codex models" in output
    fence = next(line for line in output.splitlines() if line.startswith("agent fence "))
    assert " ok " in fence, fence  # a sandboxed thread started in the bot's profile
    assert TOKEN not in output


async def test_doctor_asks_the_app_server_who_is_logged_in(
    tmp_path: Path, app_server_codex: Path
) -> None:
    home = tmp_path / "codex-home"
    home.mkdir()
    code, output = await doctor(tmp_path, app_server_codex, home, backend="app-server")
    assert code == 1
    auth = next(line for line in output.splitlines() if line.startswith("codex auth "))
    assert "FAIL" in auth
    assert "not logged in" in auth
    assert f"`CODEX_HOME={home} {app_server_codex} login`" in auth
