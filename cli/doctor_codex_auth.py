"""Doctor's ``codex auth`` row on the ``mcp`` backend: whether the pinned Codex can
authenticate (a login in CODEX_HOME, an API key it reads, a custom provider), and the exact
command that logs the configured Codex in, which ``start`` repeats in its warning. (On
``app-server`` the worker probe asks Codex itself: `cli.doctor_app_server`.)"""

from __future__ import annotations

import shlex
import tomllib
from typing import TYPE_CHECKING

from cli.doctor_result import CheckResult
from orchestrator import disk
from orchestrator.config import CONFIG_LIMIT
from orchestrator.worker_environment import codex_home, worker_environment

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from orchestrator.config import CodexConfig, LoadedConfig

__all__ = ["codex_auth_rows", "login_command"]


def login_command(codex: CodexConfig) -> str:
    """The command that logs the configured Codex in, runnable as printed: the worker
    command with ``login`` in place of ``mcp-server`` (so ``npx -y @openai/codex@… login``
    for the default, where no ``codex`` is on PATH), with ``[codex.env]``'s CODEX_HOME."""
    argv = list(codex.argv())
    login = [("login" if part in ("mcp-server", "app-server") else part) for part in argv]
    if "login" not in login:
        login.append("login")
    command = shlex.join(login)
    if codex.env.get("CODEX_HOME"):
        command = f"CODEX_HOME={shlex.quote(codex.env['CODEX_HOME'])} {command}"
    return command


def _codex_settings(path: Path) -> dict[str, object]:
    try:  # as the bot's own config is read: a FIFO or a device there does not hang doctor
        return tomllib.loads(disk.read_operator_file(path, CONFIG_LIMIT).decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def codex_auth_rows(loaded: LoadedConfig, environ: Mapping[str, str]) -> list[CheckResult]:
    """How the pinned Codex authenticates (measured on Codex 0.153.4):

    - the ``openai`` provider (the default) needs a login stored in ``$CODEX_HOME/auth.json``
      (``codex login``; ChatGPT or ``--with-api-key``), CODEX_HOME defaulting to ``~/.codex``;
      ``OPENAI_API_KEY``/``CODEX_API_KEY`` in the server's environment are *not* used (no
      Authorization header was sent with them set);
    - with ``cli_auth_credentials_store = "keyring"`` (or ``"auto"``) the login is in the OS
      keyring, which doctor cannot see;
    - a custom ``model_provider`` needs no login; with ``env_key`` it reads that variable.
    """
    codex = loaded.config.codex
    env = worker_environment(codex, environ)
    home = codex_home(env)
    config_file = home / "config.toml"
    settings = _codex_settings(config_file)
    login = login_command(codex)
    provider_id = str(settings.get("model_provider") or "openai")
    providers = settings.get("model_providers")
    provider = providers.get(provider_id) if isinstance(providers, dict) else None
    if provider_id != "openai" and not (
        isinstance(provider, dict) and provider.get("requires_openai_auth")
    ):
        env_key = provider.get("env_key") if isinstance(provider, dict) else None
        if isinstance(env_key, str) and env_key and not env.get(env_key):
            return [
                CheckResult(
                    check="codex auth",
                    status="FAIL",
                    detail=f"model provider {provider_id!r} ({config_file}) reads its key from "
                    f"{env_key}, which the workers' environment lacks",
                    fix=f"set {env_key} in the bot's environment or in [codex.env]",
                )
            ]
        return [
            CheckResult(
                check="codex auth",
                status="ok",
                detail=f"custom model provider {provider_id!r} in {config_file} (no login needed)",
            )
        ]
    if (home / "auth.json").is_file():
        return [
            CheckResult(
                check="codex auth",
                status="ok",
                detail=f"logged in ({home}); should it expire, log in again: `{login}`",
            )
        ]
    if settings.get("cli_auth_credentials_store") in ("keyring", "auto"):
        return [
            CheckResult(
                check="codex auth",
                status="warn",
                detail=f"no {home / 'auth.json'}; the login may be in the OS keyring "
                "(cli_auth_credentials_store)",
                fix=f"check with `{login} status`; log in with `{login}`",
            )
        ]
    ignored = [name for name in ("OPENAI_API_KEY", "CODEX_API_KEY") if env.get(name)]
    if ignored:
        return [
            CheckResult(
                check="codex auth",
                status="FAIL",
                detail=f"Codex is not logged in (no {home / 'auth.json'}); it does not read "
                f"{ignored[0]} from its environment",
                fix=f"store the key once: `printenv {ignored[0]} | {login} --with-api-key`",
            )
        ]
    return [
        CheckResult(
            check="codex auth",
            status="FAIL",
            detail=f"Codex is not logged in (no {home / 'auth.json'})",
            fix=f"run `{login}` (add --device-auth on a machine without a browser)",
        )
    ]
