"""The configuration: `conf.toml` decoded into frozen Structs, plus the bot token.

Where things come from:

- the file: ``$CODEX_CONF_PATH``, else ``~/.codex-orchestrator/conf.toml``;
- the token: ``telegram.token_file``, a systemd credential, ``TELEGRAM_BOT_TOKEN`` or a
  ``.env`` file (`orchestrator.config_token` has the order and why a file is the safe route);
- relative ``working_directory``, ``worktrees_dir``, ``system_prompt_file``, role prompt
  files, ``state_dir`` and ``telegram.token_file`` resolve against the config file's folder;
  ``~`` expands (to ``$HOME`` of `environ`).

Safety rule (docs/architecture.md, "Safety"; checked in `orchestrator.config_checks`): a
profile's working directory is the agent's writable workspace, so it must not contain the
config file, a ``.env`` file holding the token, the token file or ``state_dir`` (nor lie inside
``state_dir``); symlinks are resolved before comparing. Numbers are checked against ranges that
make sense, and ``telegram.api_base_url`` must be a plain ``http(s)://host[:port][/path]``.

Every problem raises `ConfigError` whose message is one line naming the file, the key path
and the fix; the CLI prints it and exits 2. Unknown keys are rejected (a typo must not be
silently ignored). Key names are a contract (docs/architecture.md, Contracts): do not rename them.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, final, get_args, get_type_hints

import msgspec

from orchestrator import disk
from orchestrator.config_checks import (
    MAX_CALLS_PER_WORKER,
    MAX_POLL_TIMEOUT,
    MAX_POOL_SIZE,
    MAX_RATE_LIMIT,
    WORKSPACE_FIX,
    check_no_nul,
    check_profile_users,
    check_ranges,
    check_workspaces,
    check_worktrees,
)
from orchestrator.config_token import (
    OPERATOR_TEXT,
    TOKEN_NOT_IN_FILE,
    TOKEN_VARIABLE,
    find_token,
    secret_file_warnings,
)
from orchestrator.config_token import token_error as _token_error
from orchestrator.errors import ConfigError
from orchestrator.wire.codex_app_server import CODEX_APP_SERVER_VERSION
from orchestrator.wire.codex_mcp import CODEX_MCP_VERSION

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "DEFAULT_APP_SERVER_COMMAND",
    "DEFAULT_CODEX_COMMAND",
    "MAX_CALLS_PER_WORKER",
    "MAX_POLL_TIMEOUT",
    "MAX_POOL_SIZE",
    "MAX_RATE_LIMIT",
    "TOKEN_VARIABLE",
    "USER_IDS_FIX",
    "WORKSPACE_FIX",
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

CONF_PATH_VARIABLE: Final = "CODEX_CONF_PATH"

CONFIG_LIMIT: Final = 1024 * 1024
"""Bytes a config file may hold (the example is about 12 KB): more is the wrong file."""

DEFAULT_STATE_DIR: Final = "~/.codex-orchestrator"


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
    token_file: str = ""
    """A file holding only the bot token; resolved against the config folder by `load_config`."""
    request_timeout: float = 30.0
    max_chunks: int = 4
    rate_limit: float = 30.0
    chat_spacing: bool = True
    retry_backoff_max: float = 60.0
    group_requests: Literal["all", "addressed"] = "all"
    """Which messages of allowed users in a group run: ``all`` of them, as in a private chat,
    or only those ``addressed`` to the bot (a mention of it, a reply to one of its messages,
    a command). Under Telegram's privacy mode (the default) the bot gets only the latter
    anyway; a bot that reads everything (privacy off, or an admin) needs ``addressed`` to
    leave the members' talk alone."""
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
    stale_after: float = 600.0
    """Seconds a message sent while the bot was offline may wait at Telegram and still run
    by itself; one that waited longer is offered with a button instead (0: always run)."""


class TracesConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[traces]``."""

    preview_chars: int = 200
    keep_days: int = 30


class ShutdownConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[shutdown]``."""

    drain_grace: float = 60.0


class DiskConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[disk]``: how much the append-only files may grow (traces, worker logs)."""

    rotate_mb: int = 50
    rotate_keep: int = 5


class FilesConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[files]``: what users send (photos, documents) and what the bot keeps of it."""

    inbox_dir: str = "inbox"
    """Where a document lands, relative to the profile's working directory."""
    image_retention: float = 86400.0
    """Seconds a photo is kept in ``state_dir/images`` (Codex reads it when the turn starts)."""


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
    users: tuple[int, ...] | None = None
    """Telegram user ids that may use this profile; None (the key absent): every allowed user.
    Required for a profile that leaves the sandbox or turns approvals off."""
    worktrees_dir: str = ""
    """Where ``/branch`` puts git worktrees of `working_directory`'s repository; "": a folder
    next to it, ``<working_directory>.worktrees``. Never inside the repository or state_dir."""

    def allows(self, user_id: int) -> bool:
        """Whether `user_id` (already on the allow-list) may use this profile."""
        return self.users is None or user_id in self.users

    def worktrees_folder(self) -> Path:
        """The folder that holds this profile's branch worktrees (``worktrees_dir``)."""
        if self.worktrees_dir:
            return Path(self.worktrees_dir)
        workspace = Path(self.working_directory)
        return workspace.with_name(f"{workspace.name}.worktrees")

    @property
    def privileged(self) -> bool:
        """The agent runs outside the sandbox, or nobody is asked before it acts."""
        return self.sandbox == "danger-full-access" or self.approval_policy == "never"


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
    files: FilesConfig = FilesConfig()
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
    token_from_file: bool = False
    """The token came from ``telegram.token_file`` or a systemd credential, not the environment."""
    secret_files: tuple[tuple[str, Path], ...] = ()
    """(what, path) of every file holding a secret: the config file, ``.env``, the token file."""

    def permission_warnings(self) -> list[str]:
        """Which of `secret_files` other users can read or write, one line each with the fix."""
        return secret_file_warnings(self.secret_files)

    def secret_warnings(self) -> list[tuple[str, str, str]]:
        """``doctor``'s rows about the token's safety: (check, problem, fix)."""
        rows = [] if self.token_from_file else [TOKEN_NOT_IN_FILE]
        for warning in self.permission_warnings():
            what, _, fix = warning.partition(": run ")
            rows.append(("permissions", what, fix))
        return rows


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
    token_file = config.telegram.token_file
    found = find_token(
        environ,
        cwd or Path.cwd(),
        path.parent,
        token_file=Path(token_file) if token_file else None,
        shown=shown,
    )
    secret_files = (("the config file", path), *found.files)
    check_workspaces(config, secret_files, shown)
    check_worktrees(config, secret_files, shown)
    secret = Secret(found.value)
    if require_token:
        problem = token_error(secret, found.source, path.parent)
        if problem is not None:
            raise problem
    return LoadedConfig(
        config=config,
        path=path,
        token=secret,
        token_source=found.source,
        token_from_file=found.from_file,
        secret_files=secret_files,
    )


def token_error(token: Secret, source: str, config_folder: Path) -> ConfigError | None:
    """What is wrong with the token (unset, the `.env.example` placeholder, malformed), if
    anything. `load_config` raises it for ``start``; ``doctor`` shows it in its token row."""
    return _token_error(token.reveal(), source, config_folder)


def _decode(path: Path, shown: str) -> Config:
    try:
        data = disk.read_operator_file(path, CONFIG_LIMIT)
        text = data.decode(OPERATOR_TEXT)
    except FileNotFoundError:
        raise ConfigError(
            shown,
            "",
            "the config file does not exist",
            f"copy conf.toml.example to {shown}, or point {CONF_PATH_VARIABLE} at your file",
        ) from None
    except (disk.NotARegularFile, IsADirectoryError):
        raise ConfigError(
            shown,
            "",
            "it is not a file (a folder, a FIFO or a device)",
            f"point {CONF_PATH_VARIABLE} at your conf.toml",
        ) from None
    except OSError as error:
        raise ConfigError(
            shown,
            "",
            f"cannot read the file ({error.strerror or error})",
            "check its path and permissions",
        ) from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            shown, "", f"it is not UTF-8 text (byte {error.start})", "save it as UTF-8"
        ) from None
    if len(data) > CONFIG_LIMIT:
        raise ConfigError(
            shown,
            "",
            f"it is over {CONFIG_LIMIT // 1024} KB, too big for a config file",
            f"point {CONF_PATH_VARIABLE} at your conf.toml",
        )
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(
            shown, "", f"TOML syntax error: {error}", "fix the TOML syntax at that line"
        ) from None
    check_no_nul(raw, shown)
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


_USER_IDS: Final = re.compile(r"^(telegram\.allowed_users|profiles\.[^.]+\.users)\b")
USER_IDS_FIX: Final = (
    "put the numeric id of each Telegram user, not a @username, e.g. allowed_users = "
    "[123456789] (a user the bot turns away is told their id)"
)
"""The fix for a list of users that is not a list of ids: usernames can change hands, ids
cannot, so the allow-list takes ids only (the README says how to find yours)."""

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
    if _USER_IDS.match(key):  # "@alice" or "123" where the numeric id goes
        return ConfigError(shown, key, problem, USER_IDS_FIX)
    choices = _choices(key)
    if choices:  # msgspec says "invalid enum value 'app'"
        value = problem.removeprefix("invalid enum value ")
        words = ", ".join(f'"{choice}"' for choice in choices)
        return ConfigError(shown, key, f"{value} is not a choice", f"use one of {words}")
    return ConfigError(shown, key, problem, "use the type and values shown in conf.toml.example")


def _choices(key: str) -> tuple[str, ...]:
    """The values the key `key` (``codex.backend``, ``profiles.NAME.sandbox``) allows when it
    is one of a few words, in the order the Config declares them; () for any other key."""
    info: msgspec.inspect.Type = msgspec.inspect.type_info(Config)
    owner: type | None = None
    name = ""
    for part in key.split("."):
        if isinstance(info, msgspec.inspect.DictType):  # `part` names a profile
            info = info.value_type
            continue
        if not isinstance(info, msgspec.inspect.StructType):
            return ()
        field = next((field for field in info.fields if field.encode_name == part), None)
        if field is None:
            return ()
        owner, name, info = info.cls, field.name, field.type
    if owner is None or not isinstance(info, msgspec.inspect.LiteralType):
        return ()
    return tuple(str(value) for value in get_args(get_type_hints(owner)[name]))


def _resolve(config: Config, folder: Path, shown: str, environ: Mapping[str, str]) -> Config:
    """Check cross-key rules and make every path absolute."""
    check_ranges(config, shown)
    profiles = dict(config.profiles) or {"default": Profile()}
    if config.default_profile not in profiles:
        raise ConfigError(
            shown,
            "default_profile",
            f"no profile named {config.default_profile!r} (profiles: {', '.join(profiles)})",
            f"add [profiles.{config.default_profile}] or set default_profile to one of them",
        )
    check_profile_users(config.telegram.allowed_users, profiles, config.default_profile, shown)
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
            worktrees_dir=(
                str(_absolute(profile.worktrees_dir, folder, environ))
                if profile.worktrees_dir
                else ""
            ),
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
        telegram=msgspec.structs.replace(
            config.telegram,
            token_file=(
                str(_absolute(config.telegram.token_file, folder, environ))
                if config.telegram.token_file
                else ""
            ),
        ),
        profiles=resolved,
    )


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
