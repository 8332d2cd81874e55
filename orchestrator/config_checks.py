"""The cross-key checks of the configuration: number ranges, the Bot API URL, what a
profile's workspace must not contain, and no NUL in any value.

`orchestrator.config` calls them while it loads the file and re-exports the public names;
every problem raises `ConfigError` naming the file, the key and the fix.
"""

from __future__ import annotations

import math
import re
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from orchestrator.config_token import TOKEN_VARIABLE
from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from orchestrator.config import Config, Profile

__all__ = [
    "MAX_CALLS_PER_WORKER",
    "MAX_POLL_TIMEOUT",
    "MAX_POOL_SIZE",
    "MAX_RATE_LIMIT",
    "WORKSPACE_FIX",
    "check_no_nul",
    "check_profile_users",
    "check_ranges",
    "check_workspaces",
    "check_worktrees",
    "url_problem",
]

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


_Rule = tuple[str, float, float, float, str]
"""(key, value, lowest, highest, what the value means); `highest` may be ``math.inf``."""


def check_no_nul(raw: object, shown: str) -> None:
    """No value of the file as parsed holds a NUL character (TOML can spell one,
    ``\\u0000``): no path, argument or environment variable can carry it, and Python raises
    ``ValueError`` at its first use."""
    key = _key_with_nul(raw)
    if key is not None:
        raise ConfigError(
            shown,
            key,
            "holds a NUL character (\\u0000), which no path, command or variable can carry",
            "remove it",
        )


def _key_with_nul(value: object, key: str = "") -> str | None:
    """The first key whose value holds a NUL character (`check_no_nul`)."""
    if isinstance(value, str):
        return key if "\0" in value else None
    if isinstance(value, dict):
        for name, item in value.items():
            found = _key_with_nul(item, f"{key}.{name}" if key else str(name))
            if found is not None:
                return found
    if isinstance(value, list):
        for item in value:
            found = _key_with_nul(item, key)
            if found is not None:
                return found
    return None


def check_ranges(config: Config, shown: str) -> None:
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
        (
            "sessions.stale_after",
            sessions.stale_after,
            0,
            inf,
            "seconds a message sent while the bot was offline may wait and still run by "
            "itself; 0 = always run",
        ),
        ("traces.preview_chars", config.traces.preview_chars, 0, inf, "characters; 0 = none"),
        (
            "traces.keep_days",
            config.traces.keep_days,
            0,
            36_500,
            "days of trace files kept, today included; 0 = keep them all",
        ),
        ("shutdown.drain_grace", config.shutdown.drain_grace, 0, inf, "seconds"),
        ("disk.rotate_mb", config.disk.rotate_mb, 1, 100_000, "MB per file before it rolls over"),
        ("disk.rotate_keep", config.disk.rotate_keep, 1, 1000, "rolled-over files kept"),
        ("files.image_retention", config.files.image_retention, 60, inf, "seconds"),
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
    for name in config.codex.env:
        if not name or "=" in name:  # the kernel's environment is NAME=value lines
            raise ConfigError(
                shown,
                f"codex.env.{name}",
                f"{name!r} is not a variable name (a worker could not start)",
                'name each variable without "=", e.g. CODEX_HOME = "/srv/codex-home"',
            )
    inbox = PurePosixPath(config.files.inbox_dir)
    if inbox.is_absolute() or ".." in inbox.parts or not config.files.inbox_dir.strip():
        raise ConfigError(
            shown,
            "files.inbox_dir",
            f"{config.files.inbox_dir!r} is not a folder inside the working directory",
            'use a relative folder name without "..", e.g. "inbox"',
        )
    problem = url_problem(telegram.api_base_url)
    if problem:
        raise ConfigError(
            shown,
            "telegram.api_base_url",
            f"{problem}",
            'use "https://api.telegram.org", or your Bot API server as '
            "http(s)://host[:port][/path] without query, fragment or user:password",
        )


def url_problem(url: str) -> str:
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


def _exposure(folder: Path, secret_files: Sequence[tuple[str, Path]], state_dir: Path) -> str:
    """How a Codex workspace `folder` (resolved) would expose the bot's own files or state,
    in words ("contains the config file /x/conf.toml"); "" when it does not."""
    for what, file in secret_files:
        # Both where the file is (its folder resolved) and what it points to.
        for candidate in (file.parent.resolve() / file.name, file.resolve()):
            if candidate.is_relative_to(folder):
                return f"contains {what} {candidate}"
    if state_dir.is_relative_to(folder):
        return f"contains state_dir {state_dir}"
    if folder.is_relative_to(state_dir):
        return f"lies inside state_dir {state_dir}"
    return ""


def check_workspaces(config: Config, secret_files: Sequence[tuple[str, Path]], shown: str) -> None:
    """No profile's working directory may hold the bot's own files (the config file, ``.env``,
    the token file: `secret_files`) or lie inside state_dir: the agent can write there, and
    Codex edited conf.toml's allowed_users unasked."""
    state_dir = Path(config.state_dir).resolve()
    for name, profile in config.profiles.items():
        workspace = Path(profile.working_directory).resolve()
        found = _exposure(workspace, secret_files, state_dir)
        if found:
            raise ConfigError(
                shown,
                f"profiles.{name}.working_directory",
                f"{workspace} {found}, which Codex could then read and rewrite",
                WORKSPACE_FIX,
            )


def check_worktrees(config: Config, secret_files: Sequence[tuple[str, Path]], shown: str) -> None:
    """A profile's branch worktrees (``/branch``) are workspaces too, and must stay out of the
    repository itself: their folder may hold none of the bot's own files and state_dir, and
    lie neither inside state_dir nor inside the working directory."""
    state_dir = Path(config.state_dir).resolve()
    for name, profile in config.profiles.items():
        folder = profile.worktrees_folder().resolve()
        workspace = Path(profile.working_directory).resolve()
        found = _exposure(folder, secret_files, state_dir)
        if not found and folder.is_relative_to(workspace):
            found = f"lies inside the working directory {workspace}"
        if found:
            raise ConfigError(
                shown,
                f"profiles.{name}.worktrees_dir",
                f"{folder} {found}; branch worktrees are Codex's workspaces",
                "point worktrees_dir at a folder of its own outside the repository, e.g. "
                'worktrees_dir = "~/projects/my-repo.worktrees"',
            )


def check_profile_users(
    allowed: Sequence[int], profiles: Mapping[str, Profile], default: str, shown: str
) -> None:
    """Profiles are permissions: ``profiles.NAME.users`` names who may use a profile (absent:
    every allowed user). A profile that leaves the sandbox or turns approvals off must name
    them, every id named must be allowed at all, and the default profile (the one every new
    chat starts with) must be usable by every allowed user."""
    for name, profile in profiles.items():
        key = f"profiles.{name}.users"
        if profile.users is None:
            if profile.privileged:
                what = (
                    'sandbox = "danger-full-access"'
                    if profile.sandbox == "danger-full-access"
                    else 'approval_policy = "never"'
                )
                raise ConfigError(
                    shown,
                    key,
                    f"not set, but the profile has {what}: every allowed user could switch to "
                    "it and run anything unasked",
                    "name who may use it, e.g. users = [123456789] (ids from "
                    "telegram.allowed_users)",
                )
            continue
        if not profile.users:
            raise ConfigError(
                shown, key, "empty: nobody could use the profile", "name its users or remove it"
            )
        for index, user in enumerate(profile.users):
            if user not in allowed:
                raise ConfigError(
                    shown,
                    f"{key}[{index}]",
                    f"{user} is not in telegram.allowed_users",
                    "add the id to telegram.allowed_users too, or remove it here",
                )
    users = profiles[default].users
    left_out = [user for user in allowed if users is not None and user not in users]
    if left_out:
        raise ConfigError(
            shown,
            "default_profile",
            f"profile {default!r} is the default, but users {left_out} may not use it (every "
            "new chat starts in the default profile)",
            "make the default a profile every allowed user may use (no users key), e.g. a "
            "sandboxed one, and switch to the restricted one with /profile NAME",
        )
