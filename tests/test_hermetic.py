"""The suite reads no ``.env``, config or HOME of the machine it runs on (tests/conftest.py).

After the README's ``cp .env.example .env`` the repository holds a ``.env`` with the
placeholder token; a developer may have ``~/.codex-orchestrator/conf.toml`` and a token in
their shell. None of it may change what a test sees.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio

from orchestrator.config import default_config_path, load_config
from tests.bot_process import cli_environment, run_cli
from tests.conftest import MACHINE_HOME, UNSET

REPO = Path(__file__).resolve().parents[1]


def test_nothing_of_the_machine_is_visible() -> None:
    assert Path(os.environ["HOME"]) != MACHINE_HOME
    assert Path.home() != MACHINE_HOME
    assert not Path.cwd().resolve().is_relative_to(REPO)
    assert not (Path.cwd() / ".env").exists()
    for name in UNSET:
        assert name not in os.environ, name
    assert not default_config_path(os.environ).is_relative_to(MACHINE_HOME)
    assert not default_config_path(os.environ).exists()


def test_load_config_by_default_finds_no_token(tmp_path: Path) -> None:
    """What `start` and the CliRunner tests use: os.environ and the current directory."""
    (tmp_path / "work").mkdir()
    path = tmp_path / "conf.toml"
    path.write_text(f"[profiles.default]\nworking_directory = '{tmp_path / 'work'}'\n")
    loaded = load_config(path, require_token=False)
    assert not loaded.token


async def test_a_process_under_test_reads_the_dotenv_of_its_own_cwd_only(tmp_path: Path) -> None:
    """The regression this guards: ``doctor`` run by a test found the repository's .env.

    Here the test's folder holds a poisoned .env: the process sees that one (proof that a
    cwd .env is read at all), while its HOME and environment are the suite's empty ones.
    """
    bot = tmp_path / "bot"
    poisoned = tmp_path / "poisoned"
    elsewhere = tmp_path / "elsewhere"
    for folder in (bot, poisoned, elsewhere, tmp_path / "work"):
        folder.mkdir()
    path = bot / "conf.toml"
    path.write_text(f"[profiles.default]\nworking_directory = '{tmp_path / 'work'}'\n")
    (poisoned / ".env").write_text("TELEGRAM_BOT_TOKEN=poisoned\n")
    code, output = await run_cli(
        ["start", "--config", str(path)], cwd=poisoned, env=cli_environment()
    )
    assert code == 2
    assert f"{poisoned / '.env'}: TELEGRAM_BOT_TOKEN: the bot token does not look like" in output
    code, output = await run_cli(
        ["start", "--config", str(path)], cwd=elsewhere, env=cli_environment()
    )
    assert code == 2
    assert ".env: TELEGRAM_BOT_TOKEN: the bot token is not set" in output


async def test_processes_under_test_write_no_bytecode_beside_the_sources(tmp_path: Path) -> None:
    """A machine that turned bytecode off gets it kept in ``.cache/pycache`` for the suite's
    processes (tests/conftest.py), and never in a ``__pycache__`` next to a module."""
    prefix = os.environ.get("PYTHONPYCACHEPREFIX")
    if prefix is None:  # the machine writes bytecode where Python always does
        assert not os.environ.get("PYTHONDONTWRITEBYTECODE")
        return
    assert not os.environ.get("PYTHONDONTWRITEBYTECODE")
    assert Path(prefix) == REPO / ".cache" / "pycache"
    module = tmp_path / "freshly_written.py"
    module.write_text("ANSWER = 42\n")
    await trio.run_process(
        [sys.executable, "-c", "import freshly_written"], cwd=tmp_path, env=cli_environment()
    )
    assert not (tmp_path / "__pycache__").exists()
    cached = Path(prefix, *tmp_path.resolve().parts[1:])  # the source's folder, mirrored
    assert [path.name.split(".")[0] for path in cached.glob("*.pyc")] == ["freshly_written"]
