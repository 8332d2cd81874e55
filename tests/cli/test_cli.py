"""The command line, as a user sees it: exit codes, messages, no token in any output."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from cli import doctor
from cli.app import app
from orchestrator import __version__

if TYPE_CHECKING:
    from pathlib import Path

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
runner = CliRunner()


def workspace(tmp_path: Path) -> str:
    """A ``[profiles.default]`` working in ``tmp_path/work`` (required by every config)."""
    (tmp_path / "work").mkdir(exist_ok=True)
    return f"[profiles.default]\nworking_directory = '{tmp_path / 'work'}'\n"


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"codex-orchestrator {__version__}"


def test_help_lists_the_commands_and_stays_light() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "start" in result.output
    assert "doctor" in result.output
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, cli.app; cli.app.app(['--help'], standalone_mode=False); "
            "print(sorted(m for m in ('trio', 'httpx', 'mcp', 'rich', 'pydantic') "
            "if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip().splitlines()[-1] == "[]"


def test_console_version_skips_heavy_imports() -> None:
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.argv = ['codex-orchestrator', '--version']; import cli.app; "
            "cli.app.main(); "
            "print(sorted(m for m in ('trio', 'httpx', 'mcp', 'rich', 'pydantic') "
            "if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip().splitlines() == [f"codex-orchestrator {__version__}", "[]"]


def test_start_with_a_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "conf.toml"
    path.write_text("[codex]\npool_size = 'x'\n")
    result = runner.invoke(app, ["start", "--config", str(path)], env={"TELEGRAM_BOT_TOKEN": TOKEN})
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line]
    assert len(lines) == 1
    assert "codex.pool_size" in lines[0]
    assert str(path) in lines[0]
    assert "Fix:" in lines[0]
    assert TOKEN not in result.output


def test_start_without_a_config_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["start", "--config", str(tmp_path / "missing.toml")],
        env={"TELEGRAM_BOT_TOKEN": TOKEN},
    )
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_the_bare_command_runs_the_bot_as_start_does(tmp_path: Path) -> None:
    """The original product ran with ``codex-orchestrator`` alone; so does this one."""
    path = tmp_path / "conf.toml"
    path.write_text("[codex]\npool_size = 'x'\n")
    env = {"TELEGRAM_BOT_TOKEN": TOKEN, "CODEX_CONF_PATH": str(path)}
    bare, start = runner.invoke(app, [], env=env), runner.invoke(app, ["start"], env=env)
    assert (bare.exit_code, bare.output) == (start.exit_code, start.output)
    assert bare.exit_code == 2
    assert "codex.pool_size" in bare.output
    assert "Usage:" not in bare.output


def test_start_with_a_bad_log_level_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "conf.toml"
    path.write_text(workspace(tmp_path))
    result = runner.invoke(
        app,
        ["start", "--config", str(path), "--log-level", "LOUD"],
        env={"TELEGRAM_BOT_TOKEN": TOKEN},
    )
    assert result.exit_code == 2
    assert "--log-level" in result.output


@pytest.fixture
def config_checks_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        doctor,
        "CHECKS",
        [doctor.check_config, doctor.check_token, doctor.check_allowed_users, doctor.check_folders],
    )


@pytest.mark.usefixtures("config_checks_only")
def test_doctor_all_ok(tmp_path: Path) -> None:
    path = tmp_path / "conf.toml"
    path.write_text(
        f"state_dir = '{tmp_path / 'state'}'\n[telegram]\nallowed_users = [42]\n"
        + workspace(tmp_path)
    )
    result = runner.invoke(
        app, ["doctor", "--config", str(path)], env={"TELEGRAM_BOT_TOKEN": TOKEN}
    )
    assert result.exit_code == 0, result.output
    assert "All checks passed." in result.output
    assert "token" in result.output
    assert "(35 chars)" in result.output or "chars)" in result.output
    assert TOKEN not in result.output


@pytest.mark.usefixtures("config_checks_only")
def test_doctor_reports_a_missing_token_as_a_config_error_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "conf.toml"
    path.write_text(f"state_dir = '{tmp_path / 'state'}'\n" + workspace(tmp_path))
    result = runner.invoke(app, ["doctor", "--config", str(path)], env={"TELEGRAM_BOT_TOKEN": ""})
    assert result.exit_code == 2
    assert "FAIL" in result.output
    assert ".env: TELEGRAM_BOT_TOKEN: the bot token is not set" in result.output
    assert "@BotFather" in result.output
    assert "warn" in result.output  # empty allowed_users


@pytest.mark.usefixtures("config_checks_only")
def test_doctor_with_a_broken_config(tmp_path: Path) -> None:
    path = tmp_path / "conf.toml"
    path.write_text("[codex\n")
    result = runner.invoke(
        app, ["doctor", "--config", str(path)], env={"TELEGRAM_BOT_TOKEN": TOKEN}
    )
    assert result.exit_code == 2
    assert f"{path}: TOML syntax error" in result.output


def test_doctor_flags_a_codex_without_mcp_server(tmp_path: Path) -> None:
    fake_codex = tmp_path / "codex"
    fake_codex.write_text(  # what Codex 0.154.0 and later answer
        "#!/bin/sh\n"
        'if [ "$1" = mcp-server ]; then\n'
        "  echo \"error: unrecognized subcommand 'mcp-server'\" >&2; exit 2\n"
        "fi\n"
        "echo 'codex-cli 0.160.0'\n"
    )
    fake_codex.chmod(0o755)
    path = tmp_path / "conf.toml"
    path.write_text(
        f"[codex]\ncommand = ['{fake_codex}', 'mcp-server']\npool_size = 1\n" + workspace(tmp_path)
    )
    ctx = doctor.DoctorContext(config_path=path, environ={"PATH": "/usr/bin:/bin"})
    import trio

    checks = [doctor.check_config, doctor.check_codex_command, doctor.check_worker_pool]
    rows = trio.run(doctor.run_checks, checks, ctx)
    version_row = next(row for row in rows if row.check == "codex version")
    assert version_row.status == "FAIL"
    assert "0.160.0" in version_row.detail
    assert "0.153.4" in version_row.fix
    assert 'backend = "app-server"' in version_row.fix
    worker_row = next(row for row in rows if row.check == "worker 0")
    assert worker_row.status == "FAIL"
    assert "unrecognized subcommand" in worker_row.detail
    assert worker_row.fix == doctor.PIN_FIX


@pytest.mark.parametrize(
    ("backend", "sandboxes", "named"),
    [
        ("mcp", ["workspace-write", "danger-full-access"], "default"),
        ("mcp", ["read-only", "workspace-write"], "default, other"),
        ("mcp", ["danger-full-access", "danger-full-access"], None),
        ("app-server", ["workspace-write", "read-only"], None),
    ],
    ids=["mcp-one-sandboxed", "mcp-both", "mcp-unsandboxed", "app-server"],
)
def test_doctor_says_what_a_sandboxed_agent_can_read_on_mcp(
    tmp_path: Path, backend: str, sandboxes: list[str], named: str | None
) -> None:
    """Codex 0.153.4 cannot take the agent fence without breaking approvals, so on the mcp
    backend doctor says what a sandboxed agent can read and how to fence it; on app-server
    the row comes from the probe (above), and an unsandboxed profile reads everything."""
    import trio

    (tmp_path / ".env").write_text(f"TELEGRAM_BOT_TOKEN={TOKEN}\n")
    (tmp_path / "other").mkdir()
    path = tmp_path / "conf.toml"
    path.write_text(
        f"[telegram]\nallowed_users = [1]\n[codex]\nbackend = '{backend}'\n"
        + workspace(tmp_path)
        + f"sandbox = '{sandboxes[0]}'\nusers = [1]\n"
        + f"[profiles.other]\nworking_directory = '{tmp_path / 'other'}'\n"
        + f"sandbox = '{sandboxes[1]}'\nusers = [1]\n"
    )
    ctx = doctor.DoctorContext(config_path=path, environ={})
    rows = trio.run(doctor.run_checks, [doctor.check_config, doctor.check_agent_fence], ctx)
    assert [row.status for row in rows if row.check == "config"] == ["ok"], rows
    fence = [row for row in rows if row.check == "agent fence"]
    if named is None:
        assert fence == []
        return
    (row,) = fence
    assert row.status == "warn"
    assert "the config file, the .env file and state_dir" in row.detail, row.detail
    assert f"(profiles: {named})" in row.detail
    assert row.fix == doctor.MCP_FENCE_FIX


def test_doctor_missing_codex_command(tmp_path: Path) -> None:
    path = tmp_path / "conf.toml"
    path.write_text(
        "[codex]\ncommand = ['definitely-not-a-codex-binary', 'mcp-server']\n" + workspace(tmp_path)
    )
    ctx = doctor.DoctorContext(config_path=path, environ={"PATH": "/usr/bin:/bin"})
    import trio

    rows = trio.run(doctor.run_checks, [doctor.check_config, doctor.check_codex_command], ctx)
    assert rows[-1].status == "FAIL"
    assert "not found" in rows[-1].detail
    assert "`npm install -g @openai/codex@0.153.4`" in rows[-1].fix
    assert "full path of the codex binary" in rows[-1].fix


def test_doctor_without_npx_says_how_to_get_codex(tmp_path: Path) -> None:
    """The default command is npx; without it the fix installs Node or Codex itself."""
    path = tmp_path / "conf.toml"
    path.write_text(workspace(tmp_path))
    empty = tmp_path / "empty-path"
    empty.mkdir()
    ctx = doctor.DoctorContext(config_path=path, environ={"PATH": str(empty)})
    import trio

    rows = trio.run(doctor.run_checks, [doctor.check_config, doctor.check_codex_command], ctx)
    assert rows[-1].status == "FAIL"
    assert "npx not found" in rows[-1].detail
    assert "npm install -g @openai/codex@0.153.4" in rows[-1].fix
    assert 'codex.command = ["codex", "mcp-server"]' in rows[-1].fix


def auth_rows(tmp_path: Path, text: str, environ: dict[str, str]) -> list[doctor.CheckResult]:
    import trio

    path = tmp_path / "conf.toml"
    path.write_text(text + workspace(tmp_path))
    ctx = doctor.DoctorContext(config_path=path, environ=environ)
    rows = trio.run(doctor.run_checks, [doctor.check_config, doctor.check_codex_auth], ctx)
    assert rows[0].status == "ok", rows
    return rows[1:]


def test_doctor_codex_auth_with_codex_home_from_codex_env(tmp_path: Path) -> None:
    home = tmp_path / "codex-home"
    home.mkdir()
    text = f"[codex.env]\nCODEX_HOME = '{home}'\n"
    [row] = auth_rows(tmp_path, text, {})
    assert row.status == "FAIL"
    assert "not logged in" in row.detail
    # runnable as printed: no `codex` on PATH with the default command, so through npx
    assert f"`CODEX_HOME={home} npx -y @openai/codex@0.153.4 login`" in row.fix
    (home / "auth.json").write_text("{}")
    [row] = auth_rows(tmp_path, text, {})
    assert row.status == "ok"
    # a login that expires later is refused with a 401 in the chat, which points here
    assert f"log in again: `CODEX_HOME={home} npx -y @openai/codex@0.153.4 login`" in row.detail


def test_doctor_codex_auth_default_home_and_own_command(tmp_path: Path) -> None:
    home = tmp_path / "user"
    (home / ".codex").mkdir(parents=True)
    text = "[codex]\ncommand = ['/opt/codex/bin/codex', 'mcp-server']\n"
    [row] = auth_rows(tmp_path, text, {"HOME": str(home)})
    assert row.status == "FAIL"
    assert str(home / ".codex" / "auth.json") in row.detail
    assert "`/opt/codex/bin/codex login`" in row.fix
    (home / ".codex" / "auth.json").write_text("{}")
    [row] = auth_rows(tmp_path, text, {"HOME": str(home)})
    assert row.status == "ok"


def test_doctor_codex_auth_api_key_in_the_environment_is_not_a_login(tmp_path: Path) -> None:
    """Measured: Codex 0.153.4 mcp-server sends no Authorization header with only
    OPENAI_API_KEY (or CODEX_API_KEY) set; the key must be stored with --with-api-key."""
    home = tmp_path / "codex-home"
    home.mkdir()
    text = f"[codex.env]\nCODEX_HOME = '{home}'\nOPENAI_API_KEY = 'sk-test'\n"
    [row] = auth_rows(tmp_path, text, {})
    assert row.status == "FAIL"
    assert "does not read OPENAI_API_KEY" in row.detail
    assert "printenv OPENAI_API_KEY | CODEX_HOME=" in row.fix
    assert "login --with-api-key" in row.fix


def test_doctor_codex_auth_custom_provider(tmp_path: Path) -> None:
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        'model_provider = "local"\n[model_providers.local]\nname = "L"\n'
        'base_url = "http://127.0.0.1:9/v1"\nenv_key = "LOCAL_KEY"\n'
    )
    text = f"[codex.env]\nCODEX_HOME = '{home}'\n"
    [row] = auth_rows(tmp_path, text, {})
    assert row.status == "FAIL"
    assert "LOCAL_KEY" in row.detail
    assert "[codex.env]" in row.fix
    [row] = auth_rows(tmp_path, text, {"LOCAL_KEY": "k"})
    assert row.status == "ok"
    assert "'local'" in row.detail


def test_doctor_codex_auth_keyring_cannot_be_seen(tmp_path: Path) -> None:
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text('cli_auth_credentials_store = "keyring"\n')
    [row] = auth_rows(tmp_path, f"[codex.env]\nCODEX_HOME = '{home}'\n", {})
    assert row.status == "warn"
    assert "npx -y @openai/codex@0.153.4 login status" in row.fix


async def test_doctor_names_the_login_command_beside_an_app_server_login(tmp_path: Path) -> None:
    """A login that expires later is refused with a 401 in the chat, which points to doctor."""
    from cli.doctor_app_server import probe_app_server
    from tests.fakes.app_server_script import FakeAppServer

    fake = FakeAppServer(tmp_path)
    rows = await probe_app_server(
        0, fake.argv(), env=fake.env(), startup_seconds=10, login="codex login", details=True
    )
    (auth,) = [row for row in rows if row.check == "codex auth"]
    assert auth.status == "ok"
    assert auth.detail == (
        "logged in: me@example.com (plus); should it expire, log in again: `codex login`"
    )


@pytest.mark.parametrize(
    ("options", "status", "said"),
    [
        ({}, "ok", "a sandboxed agent cannot read the bot's files"),
        ({"no_permission_profiles": True}, "warn", "without the bot's permission profile"),
        (
            {"thread_start_error": "fs sandbox helper failed: bwrap: No permissions"},
            "FAIL",
            "a sandboxed thread did not start: fs sandbox helper failed",
        ),
        ({"thread_start_error": "something else"}, "warn", "did not start: something else"),
    ],
    ids=["taken", "ignored", "sandbox-broken", "other-refusal"],
)
async def test_doctor_tries_the_agent_fence_on_an_app_server(
    tmp_path: Path, options: dict[str, object], status: str, said: str
) -> None:
    """A sandboxed thread starts in the bot's permission profile (ephemeral: no rollout);
    only a refusal that names the sandbox fails, as it would fail every sandboxed request."""
    from cli.doctor_app_server import probe_app_server
    from orchestrator.agent_fence import AgentFence
    from tests.fakes.app_server_script import FakeAppServer

    fake = FakeAppServer(tmp_path)
    fake.options.update(options)
    (tmp_path / "conf.toml").write_text("")
    fence = AgentFence(own_files=[tmp_path / "conf.toml"], state_dir=tmp_path / "state")
    rows = await probe_app_server(
        0,
        fake.argv(),
        env=fake.env(),
        startup_seconds=10,
        login="codex login",
        details=True,
        fence=fence,
        fence_cwd=str(tmp_path),
    )
    (row,) = [row for row in rows if row.check == "agent fence"]
    assert (row.status, said in row.detail) == (status, True), row
    if status == "FAIL":
        assert "bubblewrap" in row.fix
    (start,) = fake.received("thread/start")
    assert start["params"]["ephemeral"] is True
    assert start["params"]["config"] == fence.thread_config("workspace-write")
