"""The environment a Codex worker starts with: what it inherits from the bot's, what it is
given, and never the bot token.

Every variable of an app-server reaches the commands the model runs (measured on Codex
0.171.0), and those commands may have been prompted by anyone who can write to the chat or
the repository: so on that backend only an allow-list passes. `start` and `doctor` both
build the workers' environment here, so what ``doctor`` checks is what the workers get.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

from orchestrator.config_token import TOKEN_VARIABLE

if TYPE_CHECKING:
    from collections.abc import Mapping

    from orchestrator.config import CodexConfig

__all__ = ["WORKER_ENV_ALLOWED", "codex_home", "worker_environment"]

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
app-server reaches the commands the model runs (measured on Codex 0.171.0), so
nothing else is passed, secrets included; ``[codex.env]`` and ``codex.env_passthrough`` add
more. Codex itself needs none of the others: its login is in CODEX_HOME."""


def worker_environment(
    codex: CodexConfig, environ: Mapping[str, str], *, state_dir: str | None = None
) -> dict[str, str]:
    """The environment of one Codex worker; never the bot token, whatever the backend.

    - ``mcp``: ours minus the bot token, plus ``[codex.env]`` (unchanged behaviour).
    - ``app-server``: only `WORKER_ENV_ALLOWED` and ``codex.env_passthrough`` from ours, plus
      ``[codex.env]``. Commands the model runs see all of it. With ``own_home`` (the
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
        inherited.setdefault("CODEX_HOME", str(codex_home(environ)))  # the user's login
        if not any(key.lower() == "npm_config_cache" for key in inherited):
            inherited["npm_config_cache"] = str(Path(home) / ".npm")
        inherited["HOME"] = str(Path(state_dir) / "worker-home")
    merged = inherited | dict(codex.env)
    merged.pop(TOKEN_VARIABLE, None)
    return merged


def _allowed(key: str, pattern: str) -> bool:
    return key.startswith(pattern[:-1]) if pattern.endswith("*") else key == pattern


def codex_home(environment: Mapping[str, str]) -> Path:
    """Where a worker with `environment` keeps its login and config.toml: CODEX_HOME, else
    ``~/.codex`` of its HOME."""
    home = environment.get("CODEX_HOME") or Path(environment.get("HOME", "~")) / ".codex"
    return Path(home).expanduser()
