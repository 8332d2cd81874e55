"""What a user sees when the configuration is wrong: ``start`` and ``doctor`` run as real
processes, with an explicit environment, agree on exit code 2 and on the key they name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.bot_process import cli_environment, run_cli

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
REPO_ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"
NO_CODEX = '["/nonexistent/codex", "mcp-server"]'


def config(folder: Path, extra: str = "", *, workspace: str | None = None) -> Path:
    """``folder/conf.toml``: a workspace in ``folder/work`` (or `workspace`), then `extra`."""
    (folder / "work").mkdir(exist_ok=True)
    path = folder / "conf.toml"
    where = json.dumps(str(folder / "work")) if workspace is None else json.dumps(workspace)
    path.write_text(
        f"state_dir = {json.dumps(str(folder / 'state'))}\n{extra}\n"
        f"[profiles.default]\nworking_directory = {where}\n"
    )
    return path


async def both(path: Path, cwd: Path, **env: str) -> tuple[tuple[int, str], tuple[int, str]]:
    environment = cli_environment(CODEX_CONF_PATH=str(path), **env)
    return (
        await run_cli(["start"], cwd=cwd, env=environment),
        await run_cli(["doctor"], cwd=cwd, env=environment),
    )


def one_line_naming(output: str, path: Path, key: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"codex-orchestrator: {path}: {key}: "), lines[0]
    assert "Fix: " in lines[0]
    assert "Traceback" not in output
    return lines[0]


def doctor_line_naming(output: str, path: Path, key: str) -> str:
    assert "Traceback" not in output
    rows = [line for line in output.splitlines() if f"{path}: {key}: " in line]
    assert len(rows) == 1, output
    assert " FAIL " in rows[0]
    return rows[0]


async def test_a_workspace_holding_the_config_is_refused_by_start_and_doctor(
    tmp_path: Path,
) -> None:
    """The old example's working_directory = "." : the config folder itself."""
    path = config(tmp_path, workspace=".")
    (start, start_out), (doctor, doctor_out) = await both(path, tmp_path, TELEGRAM_BOT_TOKEN=TOKEN)
    key = "profiles.default.working_directory"
    assert start == 2
    line = one_line_naming(start_out, path, key)
    assert f"contains the config file {path}" in line
    assert 'working_directory = "~/projects/my-repo"' in line
    assert doctor == 2
    assert f"contains the config file {path}" in doctor_line_naming(doctor_out, path, key)
    assert TOKEN not in start_out + doctor_out


async def test_a_workspace_holding_the_tokens_dotenv_is_refused(tmp_path: Path) -> None:
    """Started from inside the project, whose .env holds the token."""
    bot = tmp_path / "bot"
    project = tmp_path / "project"
    bot.mkdir()
    project.mkdir()
    path = config(bot, workspace=str(project))
    (project / ".env").write_text(f"TELEGRAM_BOT_TOKEN={TOKEN}\n")
    (start, start_out), (doctor, doctor_out) = await both(path, project)
    key = "profiles.default.working_directory"
    assert start == 2
    assert f"contains the .env file {project / '.env'}" in one_line_naming(start_out, path, key)
    assert doctor == 2
    doctor_line_naming(doctor_out, path, key)
    assert TOKEN not in start_out + doctor_out


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("[telegram.polling]\ntimeout = 0", "telegram.polling.timeout"),
        ("[telegram]\nrate_limit = 0.5", "telegram.rate_limit"),
        ('[telegram]\napi_base_url = "https://user:pw@api.telegram.org"', "telegram.api_base_url"),
        ('[telegram]\napi_base_url = "api.telegram.org"', "telegram.api_base_url"),
        ('[telegram]\napi_base_url = "https://api.telegram.org:http"', "telegram.api_base_url"),
        ("[codex]\npool_size = 1000", "codex.pool_size"),
        ("[codex]\nrecycle_threads = 0", "codex.recycle_threads"),
        ("[sessions]\napproval_timeout = -1.0", "sessions.approval_timeout"),
        ("[codex]\npoolsize = 2", "codex.poolsize"),
    ],
)
async def test_start_and_doctor_name_the_same_bad_key(tmp_path: Path, extra: str, key: str) -> None:
    path = config(tmp_path, extra)
    (start, start_out), (doctor, doctor_out) = await both(path, tmp_path, TELEGRAM_BOT_TOKEN=TOKEN)
    assert (start, doctor) == (2, 2)
    line = one_line_naming(start_out, path, key)
    row = doctor_line_naming(doctor_out, path, key)
    problem = line.split(f"{key}: ", 1)[1].split(". Fix: ")[0]
    assert problem in row  # the same words, not just the same key


async def test_the_env_example_placeholder_is_called_a_placeholder(tmp_path: Path) -> None:
    """README step 2 copies .env.example to .env; forgetting to fill it in is named as such."""
    path = config(tmp_path, f"[codex]\ncommand = {NO_CODEX}")
    shutil.copy(REPO_ENV_EXAMPLE, tmp_path / ".env")
    (start, start_out), (doctor, doctor_out) = await both(path, tmp_path)
    dotenv = tmp_path / ".env"
    assert start == 2
    lines = [line for line in start_out.splitlines() if line.strip()]
    assert lines == [
        f"codex-orchestrator: {dotenv}: TELEGRAM_BOT_TOKEN: still the placeholder from "
        f".env.example. Fix: put the token from @BotFather (/mybots → API Token) in {dotenv}"
    ]
    assert doctor == 2
    row = next(line for line in doctor_out.splitlines() if line.startswith("token "))
    assert "FAIL" in row
    assert "still the placeholder from .env.example" in row
    assert "put the token from @BotFather" in row
    assert "telegram" in doctor_out  # Telegram is not asked with a placeholder
    assert "replace-with" not in doctor_out
