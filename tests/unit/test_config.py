"""Config loading: defaults, resolution, .env precedence and one-line errors naming the key."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import msgspec
import pytest

from orchestrator.config import (
    DEFAULT_CODEX_COMMAND,
    USER_IDS_FIX,
    load_config,
    token_error,
)
from orchestrator.errors import ConfigError
from orchestrator.worker_environment import worker_environment

REPO = Path(__file__).resolve().parents[2]
TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
ENV = {"TELEGRAM_BOT_TOKEN": TOKEN, "HOME": "/nonexistent-home"}


def write(folder: Path, text: str, *, work: bool = True) -> Path:
    """``folder/conf.toml`` with `text`, after a default profile working in ``folder/work``
    (unless `work` is false or `text` has its own ``[profiles.default]``)."""
    path = folder / "conf.toml"
    (folder / "work").mkdir(exist_ok=True)
    if work and "[profiles.default]" not in text:
        text = f"{text}\n[profiles.default]\nworking_directory = 'work'\n"
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
    """Where the README puts it: ~/.codex-orchestrator/conf.toml, working in ~/projects/my-repo."""
    home = tmp_path / "home"
    folder = home / ".codex-orchestrator"
    folder.mkdir(parents=True)
    (home / "projects" / "my-repo").mkdir(parents=True)
    path = folder / "conf.toml"
    shutil.copy(REPO / "conf.toml.example", path)
    loaded = load_config(path, environ={**ENV, "HOME": str(home)}, cwd=tmp_path)
    config = loaded.config
    assert config.codex.argv() == DEFAULT_CODEX_COMMAND
    assert config.codex.pool_size == 2
    assert config.telegram.polling.timeout == 30
    assert config.telegram.api_base_url == "https://api.telegram.org"
    assert config.profiles["default"].working_directory == str(home / "projects" / "my-repo")
    assert config.profiles["default"].sandbox == "workspace-write"
    assert config.profiles["default"].approval_policy == "on-request"
    assert config.profiles["default"].default_mode == "plan"
    assert config.state_dir == str(folder)
    assert loaded.token.reveal() == TOKEN
    assert TOKEN not in repr(loaded)


def test_example_config_never_makes_its_own_folder_the_workspace(tmp_path: Path) -> None:
    """Its working_directory is neither "." nor anything that resolves to the config folder."""
    path = tmp_path / "conf.toml"
    shutil.copy(REPO / "conf.toml.example", path)
    text = path.read_text()
    assert 'working_directory = "."' not in text
    assert 'working_directory = "~/projects/my-repo"' in text


def test_empty_file_needs_a_working_directory(tmp_path: Path) -> None:
    error = fail(write(tmp_path, "", work=False))
    assert error.key == "profiles.default.working_directory"
    assert "not set" in error.problem


def test_a_profile_is_made_for_a_file_without_profiles_only_with_a_workspace(
    tmp_path: Path,
) -> None:
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


def test_a_config_that_is_no_file_or_not_text_is_refused_at_once(tmp_path: Path) -> None:
    """A FIFO or a device named by mistake blocked the start (a FIFO's open waits for a
    writer) or was read for ever (/dev/zero); a folder, a binary or a huge file said only
    "cannot read the file (UnicodeDecodeError)"."""
    fifo = tmp_path / "conf.fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b'log_level = "\xff"\n')
    huge = tmp_path / "huge.toml"
    huge.write_text("#" * (2 * 1024 * 1024))
    for path, problem in [
        (fifo, "it is not a file (a folder, a FIFO or a device)"),
        (Path("/dev/zero"), "it is not a file (a folder, a FIFO or a device)"),
        (folder, "it is not a file (a folder, a FIFO or a device)"),
        (binary, "it is not UTF-8 text (byte 13)"),
        (huge, "it is over 1024 KB, too big for a config file"),
    ]:
        with pytest.raises(ConfigError) as info:
            load_config(path, environ=ENV, cwd=tmp_path)
        assert info.value.problem == problem


def test_a_token_file_that_is_a_fifo_is_named_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "token")
    error = fail(write(tmp_path, "[telegram]\ntoken_file = 'token'\n"), environ={"HOME": "/x"})
    assert error.key == "telegram.token_file"
    assert "(not a file)" in str(error)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (
            '[profiles.default]\nworking_directory = "wo\\u0000rk"\n',
            "profiles.default.working_directory",
        ),
        ('[telegram]\ntoken_file = "\\u0000"\n', "telegram.token_file"),
        ('[codex]\ncommand = ["codex", "app\\u0000server"]\n', "codex.command"),
        ('[codex.env]\nCODEX_HOME = "/x\\u0000"\n', "codex.env.CODEX_HOME"),
    ],
)
def test_a_nul_character_in_a_value_is_named_not_a_crash(
    tmp_path: Path, text: str, key: str
) -> None:
    """TOML can spell a NUL (``\\u0000``); no path, argv or variable can hold one."""
    error = fail(write(tmp_path, text))
    assert error.key == key
    assert "NUL" in str(error)


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[codex]\npool_size = 'two'\n", "codex.pool_size", "expected `int`, got `str`"),
        ("[codex]\npool_sise = 2\n", "codex.pool_sise", "unknown key"),
        ("colour = 'blue'\n", "colour", "unknown key"),
        ("[telegram]\nallowed_users = [1, 'x']\n", "telegram.allowed_users[1]", "expected"),
        ("[profiles.work]\nsandbox = 'yolo'\n", "profiles.work.sandbox", "'yolo' is not a choice"),
        ("[codex]\nbackend = 'app'\n", "codex.backend", "'app' is not a choice"),
        ("[profiles.work]\nmodle = 'x'\n", "profiles.work.modle", "unknown key"),
        ("[codex]\npool_size = 0\n", "codex.pool_size", "out of range"),
        ("[telegram.polling]\ntimeout = 99\n", "telegram.polling.timeout", "out of range"),
        ("[telegram.polling]\ntimeout = 0\n", "telegram.polling.timeout", "out of range"),
        ("[telegram.polling]\ntimeout = 51\n", "telegram.polling.timeout", "out of range"),
        ("[telegram.polling]\nlimit = 0\n", "telegram.polling.limit", "out of range"),
        ("[telegram]\nrate_limit = 0.5\n", "telegram.rate_limit", "round down to unlimited"),
        ("[telegram]\nrate_limit = -1.0\n", "telegram.rate_limit", "out of range"),
        ("[telegram]\nrate_limit = inf\n", "telegram.rate_limit", "out of range"),
        ("[telegram]\nrequest_timeout = 0.0\n", "telegram.request_timeout", "out of range"),
        ("[telegram]\nmax_chunks = 0\n", "telegram.max_chunks", "out of range"),
        ("[telegram]\nallowed_users = [-100123]\n", "telegram.allowed_users[0]", "groups"),
        ("[codex]\npool_size = 65\n", "codex.pool_size", "out of range"),
        ("[codex]\ncalls_per_worker = 0\n", "codex.calls_per_worker", "out of range"),
        ("[codex]\nrecycle_threads = 0\n", "codex.recycle_threads", "out of range"),
        ("[codex]\nrecycle_threads = -5\n", "codex.recycle_threads", "out of range"),
        ("[codex]\nrecycle_rss_mb = -1\n", "codex.recycle_rss_mb", "out of range"),
        ("[codex]\nping_interval = 0.01\n", "codex.ping_interval", "out of range"),
        ("[codex]\nstartup_timeout = nan\n", "codex.startup_timeout", "out of range"),
        ("[codex]\nrequest_timeout = inf\n", "codex.request_timeout", "out of range"),
        ("[codex]\nstall_timeout = 0.0\n", "codex.stall_timeout", "out of range"),
        ("[codex]\naffinity_wait = -1.0\n", "codex.affinity_wait", "out of range"),
        ("[sessions]\napproval_timeout = -1.0\n", "sessions.approval_timeout", "out of range"),
        ("[sessions]\napproval_timeout = 0.0\n", "sessions.approval_timeout", "out of range"),
        ("[sessions]\nidle_ttl = 0.0\n", "sessions.idle_ttl", "out of range"),
        ("[sessions]\nbatch_window = -0.5\n", "sessions.batch_window", "out of range"),
        ("[sessions]\nqueue_limit = 0\n", "sessions.queue_limit", "out of range"),
        ("[traces]\npreview_chars = -1\n", "traces.preview_chars", "out of range"),
        ("[traces]\nkeep_days = -1\n", "traces.keep_days", "out of range"),
        ("[shutdown]\ndrain_grace = -1.0\n", "shutdown.drain_grace", "out of range"),
        ("[shutdown]\ndrain_grace = nan\n", "shutdown.drain_grace", "out of range"),
        ("[files]\nimage_retention = 10.0\n", "files.image_retention", "out of range"),
        ("[files]\ninbox_dir = '../out'\n", "files.inbox_dir", "not a folder inside"),
        ("[files]\ninbox_dir = '/tmp/in'\n", "files.inbox_dir", "not a folder inside"),
        ("[files]\ninbox_dir = ' '\n", "files.inbox_dir", "not a folder inside"),
        ("default_profile = 'nope'\n", "default_profile", "no profile named 'nope'"),
        (
            "[profiles.default]\nworking_directory = 'missing'\n",
            "profiles.default.working_directory",
            "is not an existing directory",
        ),
        (
            "[profiles.default]\nworking_directory = 'work'\nsystem_prompt_file = 'x.md'\n",
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


@pytest.mark.parametrize(
    ("text", "fix"),
    [
        ("[codex]\nbackend = 'app'\n", 'use one of "mcp", "app-server"'),
        (
            "[profiles.work]\nsandbox = 'yolo'\n",
            'use one of "read-only", "workspace-write", "danger-full-access"',
        ),
        ("log_level = 'LOUD'\n", 'use one of "DEBUG", "INFO", "WARNING", "ERROR"'),
    ],
)
def test_a_word_that_is_not_one_of_the_choices_is_told_the_choices(
    tmp_path: Path, text: str, fix: str
) -> None:
    assert fail(write(tmp_path, text)).fix == fix


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[telegram]\nallowed_users = ['@alice']\n", "telegram.allowed_users[0]"),
        ("[telegram]\nallowed_users = '123'\n", "telegram.allowed_users"),
        ("[profiles.work]\nusers = ['bob']\n", "profiles.work.users"),
    ],
)
def test_a_username_where_an_id_goes_is_told_to_use_the_id(
    tmp_path: Path, text: str, key: str
) -> None:
    error = fail(write(tmp_path, text))
    assert error.key.startswith(key)
    assert error.fix == USER_IDS_FIX


def test_missing_token(tmp_path: Path) -> None:
    error = fail(write(tmp_path, ""), environ={})
    assert error.key == "TELEGRAM_BOT_TOKEN"
    assert "not set" in error.problem
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


def test_the_placeholder_token_of_env_example_is_named_as_such(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    error = fail(path, environ={})
    assert error.key == "TELEGRAM_BOT_TOKEN"
    assert "placeholder" in error.problem
    assert "@BotFather" in error.fix
    assert error.file == str(tmp_path / ".env")
    # doctor loads without raising, and asks token_error itself
    loaded = load_config(path, environ={}, cwd=tmp_path, require_token=False)
    problem = token_error(loaded.token, loaded.token_source, tmp_path)
    assert problem is not None
    assert str(problem) == str(error)


# --- A: the agent's workspace never holds the bot's own files ------------------------------


def workspace_error(path: Path, environ: dict[str, str] | None = None, cwd: Path | None = None):
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=ENV if environ is None else environ, cwd=cwd or path.parent)
    error = info.value
    assert error.key == "profiles.default.working_directory", str(error)
    assert "\n" not in str(error)
    assert "working_directory" in error.fix
    assert "~/projects/my-repo" in error.fix
    return error


def test_workspace_may_not_be_the_config_folder(tmp_path: Path) -> None:
    path = write(tmp_path, "[profiles.default]\nworking_directory = '.'\n")
    error = workspace_error(path)
    assert f"contains the config file {path}" in error.problem


def test_workspace_may_not_contain_the_config_folder(tmp_path: Path) -> None:
    folder = tmp_path / "repo" / "bot"
    folder.mkdir(parents=True)
    path = write(folder, "[profiles.default]\nworking_directory = '..'\n")
    assert "contains the config file" in workspace_error(path).problem


def test_workspace_may_not_contain_the_dotenv_that_holds_the_token(tmp_path: Path) -> None:
    config_folder = tmp_path / "conf"
    work = tmp_path / "work"
    config_folder.mkdir()
    work.mkdir()
    path = write(config_folder, f"[profiles.default]\nworking_directory = '{work}'\n")
    (work / ".env").write_text(f"TELEGRAM_BOT_TOKEN={TOKEN}\n")
    # started from inside the project: ./.env is the token's file
    error = workspace_error(path, environ={}, cwd=work)
    assert f"contains the .env file {work / '.env'}" in error.problem
    # even when the environment's token wins, that file still holds a token
    workspace_error(path, environ={"TELEGRAM_BOT_TOKEN": TOKEN}, cwd=work)


def test_a_project_dotenv_without_the_token_is_the_projects_business(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / ".env").write_text("DATABASE_URL=postgres://localhost/app\n")
    path = write(tmp_path, "")
    assert load_config(path, environ=ENV, cwd=work).config.profiles["default"]


@pytest.mark.parametrize(
    ("state_dir", "workspace", "problem"),
    [
        ("work/state", "work", "contains state_dir"),
        ("state", "state/work", "lies inside state_dir"),
        ("state", "state", "contains state_dir"),
    ],
)
def test_workspace_and_state_dir_are_apart(
    tmp_path: Path, state_dir: str, workspace: str, problem: str
) -> None:
    (tmp_path / workspace).mkdir(parents=True)
    path = write(
        tmp_path,
        f"state_dir = '{state_dir}'\n[profiles.default]\nworking_directory = '{workspace}'\n",
    )
    assert problem in workspace_error(path).problem


def test_the_default_state_dir_under_home_counts(tmp_path: Path) -> None:
    """working_directory = "~" holds ~/.codex-orchestrator (the default state_dir)."""
    home = tmp_path / "home"
    home.mkdir()
    conf = tmp_path / "conf"
    conf.mkdir()
    path = write(conf, "[profiles.default]\nworking_directory = '~'\n")
    error = workspace_error(path, environ={**ENV, "HOME": str(home)})
    assert f"contains state_dir {home / '.codex-orchestrator'}" in error.problem


def test_symlinks_are_resolved_before_comparing(tmp_path: Path) -> None:
    config_folder = tmp_path / "conf"
    config_folder.mkdir()
    (tmp_path / "innocent-looking").symlink_to(config_folder)
    path = write(
        config_folder,
        f"[profiles.default]\nworking_directory = '{tmp_path / 'innocent-looking'}'\n",
    )
    assert "contains the config file" in workspace_error(path).problem


def test_a_config_file_symlinked_from_inside_the_workspace_counts(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    real = write(tmp_path / "work", "", work=False)  # the file itself lives in the workspace
    real.write_text(f"[profiles.default]\nworking_directory = '{work}'\n")
    link_folder = tmp_path / "etc"
    link_folder.mkdir()
    (link_folder / "conf.toml").symlink_to(real)
    error = workspace_error(link_folder / "conf.toml")
    assert f"contains the config file {real}" in error.problem


def test_tilde_expands_in_working_directory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "projects" / "app").mkdir(parents=True)
    path = write(tmp_path, "[profiles.default]\nworking_directory = '~/projects/app'\n")
    config = load_config(path, environ={**ENV, "HOME": str(home)}, cwd=tmp_path).config
    assert config.profiles["default"].working_directory == str(home / "projects" / "app")


# --- B: telegram.api_base_url is a plain http(s)://host[:port][/path] ----------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("api.telegram.org", "not an http(s) URL"),
        ("ftp://api.telegram.org", "not an http(s) URL"),
        ("https://", "has no host"),
        ("https://:8081", "has no host"),
        ("https://api.telegram.org:99999", "bad port"),
        ("https://api.telegram.org:abc", "bad port"),
        ("https://user:pw@api.telegram.org", "credentials"),
        ("https://api.telegram.org/?x=1", "query or fragment"),
        ("https://api.telegram.org/#top", "query or fragment"),
        ("https://api.telegram.org /", "spaces"),
        ("", "empty"),
        ("http://[::1", "bad port or brackets"),
    ],
)
def test_malformed_api_base_url(tmp_path: Path, url: str, problem: str) -> None:
    error = fail(write(tmp_path, f"[telegram]\napi_base_url = '{url}'\n"))
    assert error.key == "telegram.api_base_url"
    assert problem in error.problem


@pytest.mark.parametrize(
    "url",
    ["https://api.telegram.org", "http://127.0.0.1:8081", "https://tg.example.com/bot-api/"],
)
def test_plain_api_base_urls_are_fine(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, f"[telegram]\napi_base_url = '{url}'\n")
    assert load_config(path, environ=ENV, cwd=tmp_path).config.telegram.api_base_url == url


def test_zero_rate_limit_still_means_unlimited(tmp_path: Path) -> None:
    path = write(tmp_path, "[telegram]\nrate_limit = 0.0\n[codex]\nrecycle_rss_mb = 0\n")
    config = load_config(path, environ=ENV, cwd=tmp_path).config
    assert config.telegram.rate_limit == 0
    assert config.codex.recycle_rss_mb == 0


def test_the_backend_picks_the_pinned_command_and_defaults_to_mcp(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""), environ=ENV, cwd=tmp_path).config
    assert config.codex.backend == "mcp"
    assert config.codex.endpoint_failure_limit == 90.0
    app = load_config(
        write(tmp_path, "[codex]\nbackend = 'app-server'\n"), environ=ENV, cwd=tmp_path
    ).config
    assert app.codex.argv() == ("npx", "-y", "@openai/codex@0.171.0", "app-server")
    own = load_config(
        write(
            tmp_path, "[codex]\nbackend = 'app-server'\ncommand = ['/bin/codex', 'app-server']\n"
        ),
        environ=ENV,
        cwd=tmp_path,
    ).config
    assert own.codex.argv() == ("/bin/codex", "app-server")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[codex]\nbackend = 'stdio'\n", "codex.backend"),
        ("[codex]\nendpoint_failure_limit = 5\n", "codex.endpoint_failure_limit"),
        ("[codex]\nendpoint_failure_limit = nan\n", "codex.endpoint_failure_limit"),
        ("[codex]\ncommand = ['codex', 'app-server']\n", "codex.command"),
        ("[codex]\nbackend = 'app-server'\ncommand = ['codex', 'mcp-server']\n", "codex.command"),
        ("[codex]\nenv_passthrough = ['TELEGRAM_BOT_TOKEN']\n", "codex.env_passthrough[0]"),
        ("[codex.env]\n'A=B' = 'x'\n", "codex.env.A=B"),  # the OS refuses it at the spawn
        ("[codex.env]\n'' = 'x'\n", "codex.env."),
    ],
)
def test_backend_keys_are_checked(tmp_path: Path, text: str, key: str) -> None:
    error = fail(write(tmp_path, text))
    assert error.key == key


def test_an_app_server_worker_gets_an_allow_listed_environment(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            "[codex]\nbackend = 'app-server'\nenv_passthrough = ['MY_TOOL']\n"
            "[codex.env]\nEXTRA = 'x'\n",
        ),
        environ=ENV,
        cwd=tmp_path,
    ).config
    ours = {
        **ENV,
        "PATH": "/bin",
        "HOME": "/home/me",
        "LC_ALL": "C.UTF-8",
        "https_proxy": "http://proxy:3128",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "OPENAI_API_KEY": "sk-x",
        "MY_TOOL": "1",
    }
    env = worker_environment(config.codex, ours, state_dir="/state")
    assert env == {
        "PATH": "/bin",
        "HOME": "/state/worker-home",
        "CODEX_HOME": "/home/me/.codex",
        "npm_config_cache": "/home/me/.npm",
        "LC_ALL": "C.UTF-8",
        "https_proxy": "http://proxy:3128",
        "MY_TOOL": "1",
        "EXTRA": "x",
    }
    shared = msgspec.structs.replace(config.codex, own_home=False)
    env = worker_environment(shared, {**ours, "CODEX_HOME": "/c"}, state_dir="/state")
    assert (env["HOME"], env["CODEX_HOME"]) == ("/home/me", "/c")
    assert "TELEGRAM_BOT_TOKEN" not in env


@pytest.mark.parametrize(
    ("worktrees", "problem"),
    [
        ("work/trees", "lies inside the working directory"),
        ("state/trees", "lies inside state_dir"),
        (".", "contains the config file"),
    ],
)
def test_branch_worktrees_stay_out_of_the_repository_and_the_bots_files(
    tmp_path: Path, worktrees: str, problem: str
) -> None:
    path = write(
        tmp_path,
        "state_dir = 'state'\n[profiles.default]\nworking_directory = 'work'\n"
        f"worktrees_dir = '{worktrees}'\n",
    )
    error = fail(path)
    assert error.key == "profiles.default.worktrees_dir"
    assert problem in error.problem
    assert "outside the repository" in error.fix


def test_branch_worktrees_default_next_to_the_repository(tmp_path: Path) -> None:
    path = write(tmp_path, "state_dir = 'state'\n")
    profile = load_config(path, environ=ENV, cwd=tmp_path).config.profiles["default"]
    assert profile.worktrees_folder() == tmp_path / "work.worktrees"
    path.write_text(
        "state_dir = 'state'\n[profiles.default]\nworking_directory = 'work'\n"
        "worktrees_dir = 'trees'\n"
    )
    profile = load_config(path, environ=ENV, cwd=tmp_path).config.profiles["default"]
    assert profile.worktrees_folder() == tmp_path / "trees"
