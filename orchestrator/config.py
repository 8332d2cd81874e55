"""The configuration: `conf.toml` decoded into frozen Structs, plus the secrets from `.env`.

Where things come from:

- the file: ``$CODEX_CONF_PATH``, else ``~/.codex-orchestrator/conf.toml``;
- the token: ``TELEGRAM_BOT_TOKEN`` from the real environment, else a ``.env`` file in the
  current directory, else one beside the config file (python-dotenv; ``os.environ`` is never
  modified);
- relative ``working_directory``, ``system_prompt_file``, role prompt files and ``state_dir``
  resolve against the config file's folder; ``~`` expands.

Every problem raises `ConfigError` whose message is one line naming the file, the key path
and the fix; the CLI prints it and exits 2. Unknown keys are rejected (a typo must not be
silently ignored). Key names are a contract (DESIGN.md): do not rename them.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, final

import msgspec
from dotenv import dotenv_values

from orchestrator.errors import ConfigError
from orchestrator.wire.codex_mcp import CODEX_MCP_VERSION

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "DEFAULT_CODEX_COMMAND",
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
    "worker_environment",
]

DEFAULT_CODEX_COMMAND: Final = ("npx", "-y", f"@openai/codex@{CODEX_MCP_VERSION}", "mcp-server")
"""The pinned Codex: the last release with ``mcp-server`` (it is gone from 0.154.0).
Never the unrelated npm package named just ``codex``."""

TOKEN_VARIABLE: Final = "TELEGRAM_BOT_TOKEN"
CONF_PATH_VARIABLE: Final = "CODEX_CONF_PATH"
DEFAULT_STATE_DIR: Final = "~/.codex-orchestrator"

_TOKEN_SHAPE: Final = re.compile(r"^\d+:[A-Za-z0-9_-]{20,}$")


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
    polling: PollingConfig = PollingConfig()


class CodexConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[codex]``: how workers are started and supervised."""

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
    env: dict[str, str] = {}

    def argv(self) -> tuple[str, ...]:
        """The command that starts one MCP server: `command`, or the pinned default."""
        return self.command or DEFAULT_CODEX_COMMAND


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


class RolePrompts(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[profiles.NAME.role_prompts]``: instruction files overriding the shipped ones."""

    selector: str = ""
    planner: str = ""
    developer: str = ""
    reviewer: str = ""


class Profile(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[profiles.NAME]``: where and how Codex works for a chat."""

    working_directory: str = "."
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
        return Path(explicit).expanduser()
    return Path(DEFAULT_STATE_DIR).expanduser() / "conf.toml"


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
    path = (path or default_config_path(environ)).expanduser().absolute()
    shown = str(path)
    config = _resolve(_decode(path, shown), path.parent, shown)
    token, source = _find_token(environ, cwd or Path.cwd(), path.parent)
    if require_token and not token:
        raise ConfigError(
            ".env",
            TOKEN_VARIABLE,
            "the bot token is not set",
            f"put {TOKEN_VARIABLE}=<token from @BotFather> in the environment or in a .env "
            f"file in the current directory or in {path.parent}",
        )
    if token and not _TOKEN_SHAPE.match(token):
        raise ConfigError(
            source,
            TOKEN_VARIABLE,
            "the bot token does not look like a Telegram token (<digits>:<35 characters>)",
            "copy the token exactly as @BotFather printed it",
        )
    return LoadedConfig(config=config, path=path, token=Secret(token), token_source=source)


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


def _resolve(config: Config, folder: Path, shown: str) -> Config:
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
        working_directory = _absolute(profile.working_directory, folder)
        if not working_directory.is_dir():
            raise ConfigError(
                shown,
                f"{where}.working_directory",
                f"{working_directory} is not an existing directory",
                "create it or point working_directory at an existing folder",
            )
        prompt_file = _existing_file(
            profile.system_prompt_file, folder, shown, f"{where}.system_prompt_file"
        )
        roles = profile.role_prompts
        resolved[name] = msgspec.structs.replace(
            profile,
            working_directory=str(working_directory),
            system_prompt_file=prompt_file,
            role_prompts=RolePrompts(
                **{
                    role: _existing_file(
                        getattr(roles, role), folder, shown, f"{where}.role_prompts.{role}"
                    )
                    for role in RolePrompts.__struct_fields__
                }
            ),
        )
    return msgspec.structs.replace(
        config,
        state_dir=str(_absolute(config.state_dir, folder)),
        profiles=resolved,
    )


def _check_ranges(config: Config, shown: str) -> None:
    rules: list[tuple[str, bool, str]] = [
        ("telegram.polling.timeout", 0 <= config.telegram.polling.timeout <= 50, "0 to 50"),
        ("telegram.polling.limit", 1 <= config.telegram.polling.limit <= 100, "1 to 100"),
        ("telegram.max_chunks", config.telegram.max_chunks >= 1, "at least 1"),
        ("telegram.request_timeout", config.telegram.request_timeout > 0, "positive"),
        ("telegram.rate_limit", config.telegram.rate_limit >= 0, "0 (unlimited) or more"),
        ("codex.pool_size", config.codex.pool_size >= 1, "at least 1"),
        ("codex.calls_per_worker", config.codex.calls_per_worker >= 1, "at least 1"),
        ("sessions.queue_limit", config.sessions.queue_limit >= 1, "at least 1"),
        ("traces.preview_chars", config.traces.preview_chars >= 0, "0 or more"),
    ]
    for name in (
        "startup_timeout",
        "request_timeout",
        "stall_timeout",
        "affinity_wait",
        "ping_interval",
    ):
        rules.append((f"codex.{name}", getattr(config.codex, name) > 0, "positive"))
    for key, ok, allowed in rules:
        if not ok:
            raise ConfigError(shown, key, "value out of range", f"use a value {allowed}")
    if config.codex.command and not config.codex.command[0]:
        raise ConfigError(
            shown, "codex.command", "the program name is empty", 'e.g. ["codex", "mcp-server"]'
        )
    if not (config.telegram.api_base_url.startswith(("http://", "https://"))):
        raise ConfigError(
            shown,
            "telegram.api_base_url",
            "not an http(s) URL",
            'use "https://api.telegram.org" or your Bot API server\'s URL',
        )


def _absolute(value: str, folder: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (folder / path).resolve()


def _existing_file(value: str, folder: Path, shown: str, key: str) -> str:
    if not value:
        return ""
    path = _absolute(value, folder)
    if not path.is_file():
        raise ConfigError(shown, key, f"{path} does not exist", "create the file or fix the path")
    return str(path)


def _find_token(environ: Mapping[str, str], cwd: Path, config_folder: Path) -> tuple[str, str]:
    """The token and where it came from: environment, then ./.env, then the config's .env."""
    if environ.get(TOKEN_VARIABLE):
        return environ[TOKEN_VARIABLE].strip(), "environment"
    for folder in dict.fromkeys((cwd.absolute(), config_folder)):
        dotenv = folder / ".env"
        if dotenv.is_file():
            value = dotenv_values(dotenv).get(TOKEN_VARIABLE) or ""
            if value:
                return value.strip(), str(dotenv)
    return "", ".env"


def worker_environment(codex: CodexConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of one Codex worker: ours minus the bot token, plus ``[codex.env]``.

    Codex needs PATH, HOME, CODEX_HOME and its API keys; it never needs our Telegram token,
    and commands it runs must not be able to read it.
    """
    inherited = {key: value for key, value in environ.items() if key != TOKEN_VARIABLE}
    return inherited | dict(codex.env)
