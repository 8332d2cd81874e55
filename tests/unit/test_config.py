"""Config loading: defaults, resolution, .env precedence and one-line errors naming the key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from orchestrator.config import DEFAULT_CODEX_COMMAND, load_config, worker_environment
from orchestrator.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
ENV = {"TELEGRAM_BOT_TOKEN": TOKEN, "HOME": "/nonexistent-home"}


def write(folder: Path, text: str) -> Path:
    path = folder / "conf.toml"
    path.write_text(text)
    return path


def fail(path: Path, environ: dict[str, str] | None = None, **kw) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=ENV if environ is None else environ, cwd=path.parent, **kw)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message or ".env" in message or message.startswith("environment")
    assert "Fix:" in message
    assert TOKEN not in message
    return info.value


def test_example_config_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "conf.toml"
    shutil.copy(REPO / "conf.toml.example", path)
    loaded = load_config(path, environ=ENV, cwd=tmp_path)
    config = loaded.config
    assert config.codex.argv() == DEFAULT_CODEX_COMMAND
    assert config.codex.pool_size == 2
    assert config.telegram.polling.timeout == 30
    assert config.telegram.api_base_url == "https://api.telegram.org"
    assert config.profiles["default"].working_directory == str(tmp_path)
    assert config.profiles["default"].sandbox == "workspace-write"
    assert config.profiles["default"].approval_policy == "on-request"
    assert config.profiles["default"].default_mode == "plan"
    assert config.state_dir == "/nonexistent-home/.codex-orchestrator" or config.state_dir.endswith(
        ".codex-orchestrator"
    )
    assert loaded.token.reveal() == TOKEN
    assert TOKEN not in repr(loaded)


def test_empty_file_gets_a_default_profile(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""), environ=ENV, cwd=tmp_path).config
    assert list(config.profiles) == ["default"]


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "system.md").write_text("be brief")
    (tmp_path / "prompts" / "review.md").write_text("be strict")
    path = write(
        tmp_path,
        'state_dir = "state"\n[profiles.default]\nworking_directory = "project"\n'
        'system_prompt_file = "prompts/system.md"\n'
        '[profiles.default.role_prompts]\nreviewer = "prompts/review.md"\n',
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = load_config(path, environ=ENV, cwd=elsewhere).config
    profile = config.profiles["default"]
    assert profile.working_directory == str(tmp_path / "project")
    assert profile.system_prompt_file == str(tmp_path / "prompts" / "system.md")
    assert profile.role_prompts.reviewer == str(tmp_path / "prompts" / "review.md")
    assert config.state_dir == str(tmp_path / "state")


def test_conf_path_variable_is_used(tmp_path: Path) -> None:
    path = write(tmp_path, "log_level = 'DEBUG'\n")
    loaded = load_config(environ={**ENV, "CODEX_CONF_PATH": str(path)}, cwd=tmp_path)
    assert loaded.path == path
    assert loaded.config.log_level == "DEBUG"


def test_missing_file(tmp_path: Path) -> None:
    error = fail(tmp_path / "conf.toml")
    assert "does not exist" in str(error)
    assert "conf.toml.example" in error.fix


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    error = fail(write(tmp_path, "log_level = 'INFO'\n[codex\npool_size = 2\n"))
    assert "line 2" in str(error)


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[codex]\npool_size = 'two'\n", "codex.pool_size", "expected `int`, got `str`"),
        ("[codex]\npool_sise = 2\n", "codex.pool_sise", "unknown key"),
        ("colour = 'blue'\n", "colour", "unknown key"),
        ("[telegram]\nallowed_users = [1, 'x']\n", "telegram.allowed_users[1]", "expected"),
        ("[profiles.work]\nsandbox = 'yolo'\n", "profiles.work.sandbox", "invalid enum value"),
        ("[profiles.work]\nmodle = 'x'\n", "profiles.work.modle", "unknown key"),
        ("[codex]\npool_size = 0\n", "codex.pool_size", "out of range"),
        ("[telegram.polling]\ntimeout = 99\n", "telegram.polling.timeout", "out of range"),
        ("default_profile = 'nope'\n", "default_profile", "no profile named 'nope'"),
        (
            "[profiles.default]\nworking_directory = 'missing'\n",
            "profiles.default.working_directory",
            "is not an existing directory",
        ),
        (
            "[profiles.default]\nsystem_prompt_file = 'missing.md'\n",
            "profiles.default.system_prompt_file",
            "does not exist",
        ),
    ],
)
def test_bad_values_name_file_key_and_fix(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    error = fail(write(tmp_path, text))
    assert error.key == key
    assert problem in str(error)
    assert f": {key}: " in str(error)


def test_missing_token(tmp_path: Path) -> None:
    error = fail(write(tmp_path, ""), environ={})
    assert error.key == "TELEGRAM_BOT_TOKEN"
    assert "@BotFather" in error.fix


def test_missing_token_allowed_for_doctor(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, ""), environ={}, cwd=tmp_path, require_token=False)
    assert not loaded.token


def test_malformed_token_is_rejected_without_echoing_it(tmp_path: Path) -> None:
    error = fail(write(tmp_path, ""), environ={"TELEGRAM_BOT_TOKEN": "not-a-token-secret"})
    assert "not-a-token-secret" not in str(error)


def test_dotenv_precedence(tmp_path: Path) -> None:
    config_folder = tmp_path / "conf"
    config_folder.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    path = write(config_folder, "")
    other = "987654321:BBHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    (config_folder / ".env").write_text(f"TELEGRAM_BOT_TOKEN={other}\n")
    assert load_config(path, environ={}, cwd=cwd).token.reveal() == other
    (cwd / ".env").write_text(f"TELEGRAM_BOT_TOKEN={TOKEN}\n")
    loaded = load_config(path, environ={}, cwd=cwd)
    assert loaded.token.reveal() == TOKEN
    assert loaded.token_source == str(cwd / ".env")
    env_token = "555555555:CCHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    assert (
        load_config(path, environ={"TELEGRAM_BOT_TOKEN": env_token}, cwd=cwd).token.reveal()
        == env_token
    )


def test_worker_environment_drops_the_token_and_adds_codex_env(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, "[codex.env]\nCODEX_HOME = '/srv/codex'\n"), environ=ENV, cwd=tmp_path
    ).config
    env = worker_environment(config.codex, {**ENV, "PATH": "/bin"})
    assert env["CODEX_HOME"] == "/srv/codex"
    assert env["PATH"] == "/bin"
    assert "TELEGRAM_BOT_TOKEN" not in env
