"""The configuration: `conf.toml` decoded into frozen Structs, plus the secrets from `.env`.

Where things come from:

- the file: ``$CODEX_CONF_PATH``, else ``~/.codex-orchestrator/conf.toml``;
- the token: ``TELEGRAM_BOT_TOKEN`` from the real environment, else a ``.env`` file in the
  current directory, else one beside the config file (python-dotenv; ``os.environ`` is never
  modified);
- relative ``working_directory``, ``system_prompt_file``, role prompt files and ``state_dir``
  resolve against the config file's folder; ``~`` expands (to ``$HOME`` of `environ`).

Safety rule (DESIGN.md): a profile's working directory is the agent's writable workspace, so it
must not contain the config file, a ``.env`` file holding the token, or ``state_dir`` (nor lie
inside ``state_dir``); symlinks are resolved before comparing. Numbers are checked against
ranges that make sense (a long-poll timeout of 0 is 1,000+ requests a second; a negative
approval timeout crashed the chat), and ``telegram.api_base_url`` must be a plain
``http(s)://host[:port][/path]``.

Every problem raises `ConfigError` whose message is one line naming the file, the key path
and the fix; the CLI prints it and exits 2. Unknown keys are rejected (a typo must not be
silently ignored). Key names are a contract (DESIGN.md): do not rename them.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, final
from urllib.parse import urlsplit

import msgspec
from dotenv import dotenv_values

from orchestrator.errors import ConfigError
from orchestrator.wire.codex_app_server import CODEX_APP_SERVER_VERSION
from orchestrator.wire.codex_mcp import CODEX_MCP_VERSION

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "DEFAULT_APP_SERVER_COMMAND",
    "DEFAULT_CODEX_COMMAND",
    "WORKER_ENV_ALLOWED",
    "CodexConfig",
    "Config",
    "LoadedConfig",
    "PollingConfig",
    "Profile",
    "RolePrompts",
    "Secret",
    "TelegramConfig",
    "default_config_path",
    "load_config",
    "token_error",
    "worker_environment",
]

DEFAULT_CODEX_COMMAND: Final = ("npx", "-y", f"@openai/codex@{CODEX_MCP_VERSION}", "mcp-server")
"""The pinned Codex: the last release with ``mcp-server`` (it is gone from 0.154.0).
Never the unrelated npm package named just ``codex``."""

DEFAULT_APP_SERVER_COMMAND: Final = (
    "npx",
    "-y",
    f"@openai/codex@{CODEX_APP_SERVER_VERSION}",
    "app-server",
)
"""The pinned Codex for ``backend = "app-server"``: the release the edge was measured on."""

WORKER_ENV_ALLOWED: Final = (
    "PATH",
    "HOME",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TERM",
    "TZ",
    "USER",
    "LOGNAME",
    "SHELL",
    "TMPDIR",
    "CODEX_HOME",
    "SSL_CERT_*",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "npm_config_*",
    "NPM_CONFIG_*",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
)
"""The variables an app-server worker inherits (``*`` ends a prefix): every variable of the
app-server reaches the commands the model runs (reference/CODEX-APP-SERVER.md §5.3), so
nothing else is passed, secrets included; ``[codex.env]`` and ``codex.env_passthrough`` add
more. Codex itself needs none of the others: its login is in CODEX_HOME."""

TOKEN_VARIABLE: Final = "TELEGRAM_BOT_TOKEN"
CONF_PATH_VARIABLE: Final = "CODEX_CONF_PATH"
DEFAULT_STATE_DIR: Final = "~/.codex-orchestrator"

_TOKEN_SHAPE: Final = re.compile(r"^\d+:[A-Za-z0-9_-]{20,}$")
_PLACEHOLDER_MARK: Final = "replace-with"
"""`.env.example` ships ``TELEGRAM_BOT_TOKEN=123456789:replace-with-the-token-from-botfather``:
well-formed, so it must be recognised by this mark, not by its shape."""

MAX_POLL_TIMEOUT: Final = 50
"""Seconds. The Bot API server clamps getUpdates' ``timeout`` to 50 (telegram-bot-api:
``LONG_POLL_MAX_TIMEOUT = 50``); a larger value would only be a lie in the config."""
MAX_POOL_SIZE: Final = 64
"""Workers. Each is a Codex process (~100-200 MB resident, up to ``recycle_rss_mb``) started
at once at start-up, and each runs an agent that sends messages within Telegram's ~30
messages/s per bot; beyond 64 the machine or the flood limit gives out first. Raise it here
(with a test) if a deployment needs more."""
MAX_CALLS_PER_WORKER: Final = 64
MAX_RATE_LIMIT: Final = 1000.0
"""Calls/s. Telegram's cloud API allows ~30; a self-hosted Bot API server more."""
WORKSPACE_FIX: Final = (
    "point working_directory at the project Codex should work in, "
    'e.g. working_directory = "~/projects/my-repo", a folder that holds none of conf.toml, '
    ".env and state_dir"
)


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every config section: frozen, and unknown keys are errors."""


class PollingConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[telegram.polling]``: the getUpdates long poll."""

    timeout: int = 30
    limit: int = 100


class TelegramConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[telegram]``."""

    allowed_users: tuple[int, ...] = ()
    api_base_url: str = "https://api.telegram.org"
    request_timeout: float = 30.0
    max_chunks: int = 4
    rate_limit: float = 30.0
    chat_spacing: bool = True
    retry_backoff_max: float = 60.0
    polling: PollingConfig = PollingConfig()


class CodexConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[codex]``: how workers are started and supervised."""

    backend: Literal["mcp", "app-server"] = "mcp"
    command: tuple[str, ...] = ()
    pool_size: int = 2
    calls_per_worker: int = 1
    startup_timeout: float = 60.0
    request_timeout: float = 1800.0
    stall_timeout: float = 300.0
    affinity_wait: float = 30.0
    ping_interval: float = 30.0
    recycle_rss_mb: int = 1024
    recycle_threads: int = 200
    cold_start: bool = False
    endpoint_failure_limit: float = 90.0
    own_home: bool = True
    env_passthrough: tuple[str, ...] = ()
    env: dict[str, str] = {}

    def argv(self) -> tuple[str, ...]:
        """The command that starts one worker: `command`, or the backend's pinned default."""
        if self.command:
            return self.command
        return DEFAULT_APP_SERVER_COMMAND if self.backend == "app-server" else DEFAULT_CODEX_COMMAND

    @property
    def subcommand(self) -> str:
        """``mcp-server`` or ``app-server``: the word `argv` ends with by default."""
        return "app-server" if self.backend == "app-server" else "mcp-server"


class SessionsConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[sessions]``: chat behaviour."""

    idle_ttl: float = 3600.0
    queue_limit: int = 10
    batch_window: float = 1.0
    approval_timeout: float = 600.0


class TracesConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[traces]``."""

    preview_chars: int = 200


class ShutdownConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[shutdown]``."""

    drain_grace: float = 60.0


class DiskConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[disk]``: how much the append-only files may grow (traces, worker logs)."""

    rotate_mb: int = 50
    rotate_keep: int = 5


class RolePrompts(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[profiles.NAME.role_prompts]``: instruction files overriding the shipped ones."""

    selector: str = ""
    planner: str = ""
    developer: str = ""
    reviewer: str = ""


class Profile(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[profiles.NAME]``: where and how Codex works for a chat."""

    working_directory: str = ""
    """Required in conf.toml (no default: the config folder itself would be the workspace)."""
    model: str = ""
    sandbox: Literal["read-only", "workspace-write", "danger-full-access"] = "workspace-write"
    approval_policy: Literal["on-request", "never"] = "on-request"
    system_prompt_file: str = ""
    default_mode: Literal["single", "plan"] = "plan"
    role_prompts: RolePrompts = RolePrompts()


class Config(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole ``conf.toml``, with paths resolved to absolute ones by `load_config`."""

    state_dir: str = DEFAULT_STATE_DIR
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    default_profile: str = "default"
    telegram: TelegramConfig = TelegramConfig()
    codex: CodexConfig = CodexConfig()
    sessions: SessionsConfig = SessionsConfig()
    traces: TracesConfig = TracesConfig()
    shutdown: ShutdownConfig = ShutdownConfig()
    disk: DiskConfig = DiskConfig()
    profiles: dict[str, Profile] = {}


@final
class Secret:
    """A secret string that never shows itself in ``repr``, ``str`` or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself; pass it only to the edge that needs it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret(set, {len(self._value)} chars)" if self._value else "Secret(unset)"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


class LoadedConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A validated config, the file it came from, and the token."""

    config: Config
    path: Path
    token: Secret
    token_source: str


def default_config_path(environ: Mapping[str, str]) -> Path:
    """``$CODEX_CONF_PATH``, else ``~/.codex-orchestrator/conf.toml``."""
    explicit = environ.get(CONF_PATH_VARIABLE, "")
    if explicit:
        return _expand(explicit, environ)
    return _expand(DEFAULT_STATE_DIR, environ) / "conf.toml"


def load_config(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    require_token: bool = True,
) -> LoadedConfig:
    """Load, validate and resolve the configuration.

    Args:
        path: the config file; default `default_config_path`.
        environ: the environment (default ``os.environ``); only read.
        cwd: where to look for the first ``.env`` (default the current directory).
        require_token: whether a missing token is an error (``doctor`` reports it instead).

    Raises:
        ConfigError: with a one-line message naming the file, the key and the fix.
    """
    environ = os.environ if environ is None else environ
    path = _expand(str(path), environ) if path else default_config_path(environ)
    path = path.absolute()
    shown = str(path)
    config = _resolve(_decode(path, shown), path.parent, shown, environ)
    token, source, dotenvs = _find_token(environ, cwd or Path.cwd(), path.parent)
    _check_workspaces(config, path, dotenvs, shown)
    secret = Secret(token)
    if require_token:
        problem = token_error(secret, source, path.parent)
        if problem is not None:
            raise problem
    return LoadedConfig(config=config, path=path, token=secret, token_source=source)


def token_error(token: Secret, source: str, config_folder: Path) -> ConfigError | None:
    """What is wrong with the token (unset, the `.env.example` placeholder, malformed), if
    anything. `load_config` raises it for ``start``; ``doctor`` shows it in its token row."""
    value = token.reveal()
    if not value:
        return ConfigError(
            ".env",
            TOKEN_VARIABLE,
            "the bot token is not set",
            f"put {TOKEN_VARIABLE}=<token from @BotFather> in the environment or in a .env "
            f"file in the current directory or in {config_folder}",
        )
    if _PLACEHOLDER_MARK in value:
        return ConfigError(
            source,
            TOKEN_VARIABLE,
            "still the placeholder from .env.example",
            f"put the token from @BotFather (/mybots → API Token) in {source}",
        )
    if not _TOKEN_SHAPE.match(value):
        return ConfigError(
            source,
            TOKEN_VARIABLE,
            "the bot token does not look like a Telegram token (<digits>:<35 characters>)",
            "copy the token exactly as @BotFather printed it",
        )
    return None


def _decode(path: Path, shown: str) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            shown,
            "",
            "the config file does not exist",
            f"copy conf.toml.example to {shown}, or point {CONF_PATH_VARIABLE} at your file",
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(
            shown, "", f"cannot read the file ({error.__class__.__name__})", "check it"
        ) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(
            shown, "", f"TOML syntax error: {error}", "fix the TOML syntax at that line"
        ) from None
    # Profiles one by one, so an error names the profile (msgspec says `profiles[...]`).
    profiles = raw.get("profiles", {})
    if isinstance(profiles, dict):
        for name, body in profiles.items():
            try:
                msgspec.convert(body, Profile)
            except msgspec.ValidationError as error:
                raise _validation_error(shown, str(error), prefix=f"profiles.{name}") from None
    try:
        return msgspec.convert(raw, Config)
    except msgspec.ValidationError as error:
        raise _validation_error(shown, str(error)) from None


_PATH_IN_ERROR: Final = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_UNKNOWN_FIELD: Final = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`")


def _validation_error(shown: str, message: str, prefix: str = "") -> ConfigError:
    """Turn msgspec's ``Expected `int`, got `str` - at `$.codex.pool_size``` into our line."""
    match = _PATH_IN_ERROR.search(message)
    key = ""
    problem = message
    if match:
        key = match["path"]
        problem = message[: match.start()]
    key = ".".join(part for part in (prefix, key) if part)
    unknown = _UNKNOWN_FIELD.match(problem)
    if unknown:
        full_key = f"{key}.{unknown['field']}" if key else unknown["field"]
        return ConfigError(
            shown,
            full_key,
            "unknown key",
            "remove it or fix its spelling (conf.toml.example lists every key)",
        )
    problem = problem[0].lower() + problem[1:] if problem else "invalid value"
    return ConfigError(shown, key, problem, "use the type and values shown in conf.toml.example")


def _resolve(config: Config, folder: Path, shown: str, environ: Mapping[str, str]) -> Config:
    """Check cross-key rules and make every path absolute."""
    _check_ranges(config, shown)
    profiles = dict(config.profiles) or {"default": Profile()}
    if config.default_profile not in profiles:
        raise ConfigError(
            shown,
            "default_profile",
            f"no profile named {config.default_profile!r} (profiles: {', '.join(profiles)})",
            f"add [profiles.{config.default_profile}] or set default_profile to one of them",
        )
    resolved: dict[str, Profile] = {}
    for name, profile in profiles.items():
        where = f"profiles.{name}"
        if not profile.working_directory.strip():
            raise ConfigError(
                shown,
                f"{where}.working_directory",
                "not set (Codex needs a folder to work in)",
                WORKSPACE_FIX,
            )
        working_directory = _absolute(profile.working_directory, folder, environ)
        if not working_directory.is_dir():
            raise ConfigError(
                shown,
                f"{where}.working_directory",
                f"{working_directory} is not an existing directory",
                "create it or point working_directory at an existing folder",
            )
        prompt_file = _existing_file(
            profile.system_prompt_file, folder, shown, f"{where}.system_prompt_file", environ
        )
        roles = profile.role_prompts
        resolved[name] = msgspec.structs.replace(
            profile,
            working_directory=str(working_directory),
            system_prompt_file=prompt_file,
            role_prompts=RolePrompts(
                **{
                    role: _existing_file(
                        getattr(roles, role),
                        folder,
                        shown,
                        f"{where}.role_prompts.{role}",
                        environ,
                    )
                    for role in RolePrompts.__struct_fields__
                }
            ),
        )
    return msgspec.structs.replace(
        config,
        state_dir=str(_absolute(config.state_dir, folder, environ)),
        profiles=resolved,
    )


_Rule = tuple[str, float, float, float, str]
"""(key, value, lowest, highest, what the value means); `highest` may be ``math.inf``."""


def _check_ranges(config: Config, shown: str) -> None:
    """Every number against a range that makes sense; floats must also be finite (TOML has
    ``nan`` and ``inf``, and trio rejects a ``nan`` deadline at the first use)."""
    telegram, polling, codex = config.telegram, config.telegram.polling, config.codex
    sessions = config.sessions
    inf = math.inf
    rules: list[_Rule] = [
        (
            "telegram.polling.timeout",
            polling.timeout,
            1,
            MAX_POLL_TIMEOUT,
            "seconds of one getUpdates long poll; Telegram caps it at 50, and 0 would poll "
            "non-stop",
        ),
        ("telegram.polling.limit", polling.limit, 1, 100, "updates per poll (Telegram: 1-100)"),
        ("telegram.request_timeout", telegram.request_timeout, 1, 600, "seconds"),
        ("telegram.retry_backoff_max", telegram.retry_backoff_max, 1, 600, "seconds"),
        ("telegram.max_chunks", telegram.max_chunks, 1, 50, "4096-character messages"),
        (
            "codex.pool_size",
            codex.pool_size,
            1,
            MAX_POOL_SIZE,
            "warm Codex processes, all started at once",
        ),
        (
            "codex.calls_per_worker",
            codex.calls_per_worker,
            1,
            MAX_CALLS_PER_WORKER,
            "calls at once per worker",
        ),
        ("codex.startup_timeout", codex.startup_timeout, 1, inf, "seconds"),
        ("codex.request_timeout", codex.request_timeout, 1, inf, "seconds"),
        ("codex.stall_timeout", codex.stall_timeout, 1, inf, "seconds"),
        (
            "codex.endpoint_failure_limit",
            codex.endpoint_failure_limit,
            10,
            inf,
            "seconds a turn may go without progress (only reconnect notices, or silence while "
            "no command runs) before it is stopped",
        ),
        ("codex.affinity_wait", codex.affinity_wait, 0.001, inf, "seconds"),
        (
            "codex.ping_interval",
            codex.ping_interval,
            1,
            inf,
            "seconds between pings of an idle worker",
        ),
        ("codex.recycle_rss_mb", codex.recycle_rss_mb, 0, inf, "MB; 0 turns the limit off"),
        (
            "codex.recycle_threads",
            codex.recycle_threads,
            1,
            inf,
            "threads a worker creates before it is restarted; there is no 'off', use a large "
            "number",
        ),
        ("sessions.idle_ttl", sessions.idle_ttl, 1, inf, "seconds"),
        ("sessions.queue_limit", sessions.queue_limit, 1, 1000, "prompts per chat"),
        ("sessions.batch_window", sessions.batch_window, 0, 60, "seconds; 0 = no batching"),
        (
            "sessions.approval_timeout",
            sessions.approval_timeout,
            1,
            86400,
            "seconds an approval waits before it counts as deny",
        ),
        ("traces.preview_chars", config.traces.preview_chars, 0, inf, "characters; 0 = none"),
        ("shutdown.drain_grace", config.shutdown.drain_grace, 0, inf, "seconds"),
        ("disk.rotate_mb", config.disk.rotate_mb, 1, 100_000, "MB per file before it rolls over"),
        ("disk.rotate_keep", config.disk.rotate_keep, 1, 1000, "rolled-over files kept"),
    ]
    for key, value, lowest, highest, meaning in rules:
        if not (math.isfinite(value) and lowest <= value <= highest):
            allowed = f"at least {lowest:g}" if highest == inf else f"{lowest:g} to {highest:g}"
            raise ConfigError(
                shown, key, f"{value!r} is out of range", f"use a value {allowed} ({meaning})"
            )
    rate = telegram.rate_limit
    if not (math.isfinite(rate) and (rate == 0 or 1 <= rate <= MAX_RATE_LIMIT)):
        raise ConfigError(
            shown,
            "telegram.rate_limit",
            f"{rate!r} is out of range (below 1 it would round down to unlimited)",
            f"use 1 to {MAX_RATE_LIMIT:g} calls per second (Telegram allows ~30), or 0 for "
            "unlimited (self-hosted Bot API servers only)",
        )
    for index, user in enumerate(telegram.allowed_users):
        if user <= 0:
            raise ConfigError(
                shown,
                f"telegram.allowed_users[{index}]",
                f"{user} is not a user id (user ids are positive; negative ids are groups)",
                "put the numeric id of each Telegram user, e.g. allowed_users = [123456789]",
            )
    if config.codex.command and not config.codex.command[0]:
        raise ConfigError(
            shown,
            "codex.command",
            "the program name is empty",
            f'e.g. ["codex", "{config.codex.subcommand}"]',
        )
    command = config.codex.command
    other = "mcp-server" if config.codex.backend == "app-server" else "app-server"
    if command and command[-1] == other:
        raise ConfigError(
            shown,
            "codex.command",
            f"it starts `{other}` but codex.backend is {config.codex.backend!r}",
            f'set backend = "{"mcp" if other == "mcp-server" else "app-server"}", or end the '
            f'command with "{config.codex.subcommand}"',
        )
    for index, name in enumerate(config.codex.env_passthrough):
        if name == TOKEN_VARIABLE or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(
                shown,
                f"codex.env_passthrough[{index}]",
                f"{name!r} is not a variable a worker may inherit",
                "list plain variable names, never TELEGRAM_BOT_TOKEN",
            )
    problem = _url_problem(telegram.api_base_url)
    if problem:
        raise ConfigError(
            shown,
            "telegram.api_base_url",
            f"{problem}",
            'use "https://api.telegram.org", or your Bot API server as '
            "http(s)://host[:port][/path] without query, fragment or user:password",
        )


def _url_problem(url: str) -> str:
    """Why `url` is not a plain ``http(s)://host[:port][/path]``, or "" when it is one."""
    if not url or url != url.strip() or any(ch.isspace() or ord(ch) < 32 for ch in url):
        return "empty or contains spaces"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        return "not a valid URL (bad port or brackets)"
    if parts.scheme not in ("http", "https"):
        return "not an http(s) URL"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "contains credentials (user:password@)"
    if not parts.hostname:
        return "has no host"
    if parts.query or parts.fragment or "?" in url or "#" in url:
        return "has a query or fragment"
    if port == 0:
        return "port 0"
    return ""


def _expand(value: str, environ: Mapping[str, str]) -> Path:
    """``~`` and ``~/...`` expand to `environ`'s HOME (``~user`` as the system says)."""
    home = environ.get("HOME")
    if home and (value == "~" or value.startswith("~/")):
        return Path(home) / value[2:]
    return Path(value).expanduser()


def _absolute(value: str, folder: Path, environ: Mapping[str, str]) -> Path:
    path = _expand(value, environ)
    return path if path.is_absolute() else (folder / path).resolve()


def _existing_file(
    value: str, folder: Path, shown: str, key: str, environ: Mapping[str, str]
) -> str:
    if not value:
        return ""
    path = _absolute(value, folder, environ)
    if not path.is_file():
        raise ConfigError(shown, key, f"{path} does not exist", "create the file or fix the path")
    return str(path)


def _find_token(
    environ: Mapping[str, str], cwd: Path, config_folder: Path
) -> tuple[str, str, list[Path]]:
    """The token, where it came from (environment, ./.env, then the config's .env), and
    every candidate ``.env`` that defines it (the workspace must hold none of them)."""
    token, source = "", ".env"
    if environ.get(TOKEN_VARIABLE):
        token, source = environ[TOKEN_VARIABLE].strip(), "environment"
    dotenvs: list[Path] = []
    for folder in dict.fromkeys((cwd.absolute(), config_folder)):
        dotenv = folder / ".env"
        if dotenv.is_file():
            value = (dotenv_values(dotenv).get(TOKEN_VARIABLE) or "").strip()
            if value:
                dotenvs.append(dotenv)
                if not token:
                    token, source = value, str(dotenv)
    return token, source, dotenvs


def _check_workspaces(config: Config, path: Path, dotenvs: list[Path], shown: str) -> None:
    """No profile's working directory may hold the bot's own files or lie inside state_dir:
    the agent can write there, and Codex edited conf.toml's allowed_users unasked."""
    state_dir = Path(config.state_dir).resolve()
    files = [("the config file", path), *(("the .env file", dotenv) for dotenv in dotenvs)]
    for name, profile in config.profiles.items():
        workspace = Path(profile.working_directory).resolve()
        found = ""
        for what, file in files:
            # Both where the file is (its folder resolved) and what it points to.
            for candidate in (file.parent.resolve() / file.name, file.resolve()):
                if candidate.is_relative_to(workspace):
                    found = f"contains {what} {candidate}"
                    break
            if found:
                break
        if not found and state_dir.is_relative_to(workspace):
            found = f"contains state_dir {state_dir}"
        if not found and workspace.is_relative_to(state_dir):
            found = f"lies inside state_dir {state_dir}"
        if found:
            raise ConfigError(
                shown,
                f"profiles.{name}.working_directory",
                f"{workspace} {found}, which Codex could then read and rewrite",
                WORKSPACE_FIX,
            )


def worker_environment(
    codex: CodexConfig, environ: Mapping[str, str], *, state_dir: str | None = None
) -> dict[str, str]:
    """The environment of one Codex worker; never the bot token, whatever the backend.

    - ``mcp``: ours minus the bot token, plus ``[codex.env]`` (unchanged behaviour).
    - ``app-server``: only `WORKER_ENV_ALLOWED` and ``codex.env_passthrough`` from ours, plus
      ``[codex.env]``. Commands the model runs see all of it (§5.3). With ``own_home`` (the
      default) and a `state_dir`, HOME is ``<state_dir>/worker-home``: commands run in a login
      shell (``bash -lc``), which would otherwise source the user's profile before every
      command; CODEX_HOME (the login) and the npm cache stay the user's.
    """
    if codex.backend == "mcp":
        inherited = {key: value for key, value in environ.items() if key != TOKEN_VARIABLE}
        return inherited | dict(codex.env)
    allowed = (*WORKER_ENV_ALLOWED, *codex.env_passthrough)
    inherited = {
        key: value
        for key, value in environ.items()
        if key != TOKEN_VARIABLE and any(_allowed(key, pattern) for pattern in allowed)
    }
    home = environ.get("HOME", "")
    if codex.own_home and state_dir and home:
        inherited.setdefault("CODEX_HOME", str(Path(home) / ".codex"))
        if not any(key.lower() == "npm_config_cache" for key in inherited):
            inherited["npm_config_cache"] = str(Path(home) / ".npm")
        inherited["HOME"] = str(Path(state_dir) / "worker-home")
    merged = inherited | dict(codex.env)
    merged.pop(TOKEN_VARIABLE, None)
    return merged


def _allowed(key: str, pattern: str) -> bool:
    return key.startswith(pattern[:-1]) if pattern.endswith("*") else key == pattern
