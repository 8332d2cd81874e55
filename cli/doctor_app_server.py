"""The doctor's probe of the ``app-server`` backend: start one ``codex app-server`` through the
real edge, handshake (``initialize``), ask who it is logged in as (``account/read``) and which
models it offers (``model/list``), start an ephemeral sandboxed thread in the bot's
permission profile (the agent fence), stop it.

Kept apart from `cli.doctor` so the edge is imported only when the probe runs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec
import trio

from cli.doctor_result import CheckResult
from orchestrator.agent_fence import PROFILE_NAME
from orchestrator.edges.codex_app_server import open_codex_app_server
from orchestrator.edges.jsonrpc_lines import Refused
from orchestrator.errors import WorkerStartError, WorkerUnavailable
from orchestrator.wire.codex_app_server import CODEX_APP_SERVER_VERSION

if TYPE_CHECKING:
    from collections.abc import Mapping

    from orchestrator.agent_fence import AgentFence
    from orchestrator.edges.codex_app_server import CodexAppServer
    from orchestrator.wire.codex_app_server import AccountReadResponse

__all__ = ["auth_row", "probe_app_server"]

REQUEST_SECONDS = 30.0
"""Seconds for ``account/read`` and ``model/list`` (a refresh of the login may go online)."""


async def probe_app_server(
    index: int,
    argv: tuple[str, ...],
    *,
    env: Mapping[str, str],
    startup_seconds: float,
    login: str,
    details: bool,
    fence: AgentFence | None = None,
    fence_cwd: str = "",
) -> list[CheckResult]:
    """Start worker `index`, handshake, and report; with `details` also the login, the
    models and, given a `fence` and the folder to try it in, whether Codex runs a sandboxed
    thread in it."""
    name = f"worker {index}"
    began = trio.current_time()
    rows: list[CheckResult] = []
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "stderr.log"
        try:
            async with open_codex_app_server(
                argv,
                env=env,
                worker_id=index,
                stderr_log=log,
                startup_timeout=startup_seconds,
                fence=fence,
            ) as codex:
                handshake_ms = (trio.current_time() - began) * 1000
                version = codex.server_version or "(unknown version)"
                pinned = version == CODEX_APP_SERVER_VERSION
                rows.append(
                    CheckResult(
                        check=name,
                        status="ok" if pinned else "warn",
                        detail=f"codex app-server {version}: handshake {handshake_ms:.0f} ms",
                        fix=""
                        if pinned
                        else f"the app-server backend was measured on {CODEX_APP_SERVER_VERSION}; "
                        f'pin it: command = ["npx", "-y", '
                        f'"@openai/codex@{CODEX_APP_SERVER_VERSION}", "app-server"]',
                    )
                )
                if details:
                    with trio.move_on_after(REQUEST_SECONDS):
                        rows.append(await auth_row(codex, login))
                        rows.append(await _models_row(codex))
                        if fence is not None and fence_cwd:
                            rows.append(await _fence_row(codex, fence_cwd))
        except WorkerStartError as error:
            said = log.read_text(errors="replace") if log.exists() else ""
            last_line = (said.strip().splitlines() or [""])[-1][:160]
            return [
                CheckResult(
                    check=name,
                    status="FAIL",
                    detail=f"did not start: {error} {last_line}".strip(),
                    fix="run codex.command by hand to see why; it must be `codex app-server` "
                    "(Codex 0.153.4 or later); raise codex.startup_timeout if npx is slow",
                )
            ]
    return rows


async def auth_row(codex: CodexAppServer, login: str) -> CheckResult:
    """The ``codex auth`` row: who Codex says it is logged in as (``account/read``); `login`
    is the command that logs it in. ``start`` logs it too when it is not ok."""
    return _account_row(await _account(codex), login)


async def _account(codex: CodexAppServer) -> AccountReadResponse | str:
    try:
        return await codex.controls_api.read_account()
    except (Refused, WorkerUnavailable, msgspec.DecodeError) as error:
        return str(error) or type(error).__name__


def _account_row(account: AccountReadResponse | str, login: str) -> CheckResult:
    if isinstance(account, str):
        return CheckResult(
            check="codex auth",
            status="FAIL",
            detail=f"account/read failed: {account[:160]}",
            fix=f"log in with `{login}`",
        )
    if account.account is not None:
        who = account.account.email or account.account.type
        plan = f" ({account.account.plan_type})" if account.account.plan_type else ""
        return CheckResult(
            check="codex auth",
            status="ok",
            detail=f"logged in: {who}{plan}; should it expire, log in again: `{login}`",
        )
    if not account.requires_openai_auth:
        return CheckResult(
            check="codex auth", status="ok", detail="the model provider needs no OpenAI login"
        )
    return CheckResult(
        check="codex auth",
        status="FAIL",
        detail="Codex is not logged in (account/read: no account)",
        fix=f"run `{login}` (add --device-auth on a machine without a browser)",
    )


async def _models_row(codex: CodexAppServer) -> CheckResult:
    try:
        models = await codex.controls_api.list_models()
    except (Refused, WorkerUnavailable, msgspec.DecodeError) as error:
        return CheckResult(
            check="codex models",
            status="warn",
            detail=f"model/list failed: {str(error)[:160]}",
            fix="check the Codex login and the network",
        )
    if not models:
        return CheckResult(
            check="codex models",
            status="warn",
            detail="model/list offered no model",
            fix="check the Codex login and model_provider in CODEX_HOME/config.toml",
        )
    shown = ", ".join(models[:6]) + (f" and {len(models) - 6} more" if len(models) > 6 else "")
    return CheckResult(check="codex models", status="ok", detail=shown)


FENCE_FIX: Final = (
    "install bubblewrap (e.g. apt install bubblewrap) and allow unprivileged user namespaces "
    "(Codex's sandbox prerequisites); until then sandboxed requests fail"
)


async def _fence_row(codex: CodexAppServer, cwd: str) -> CheckResult:
    """The ``agent fence`` row: a sandboxed thread starts in the bot's permission profile
    (`orchestrator.agent_fence`), which keeps the bot's own files from the agent. Only a
    refusal that names the sandbox fails: the same refusal would fail every sandboxed
    request; anything else is a warning."""
    try:
        profile = await codex.controls_api.try_fence(cwd)
    except (Refused, WorkerUnavailable, msgspec.DecodeError) as error:
        said = str(error)
        sandbox = any(word in said.lower() for word in ("sandbox", "bwrap", "bubblewrap"))
        return CheckResult(
            check="agent fence",
            status="FAIL" if sandbox else "warn",
            detail=f"a sandboxed thread did not start: {said[:200]}",
            fix=FENCE_FIX if sandbox else "run codex.command by hand to see why",
        )
    if profile != PROFILE_NAME:
        return CheckResult(
            check="agent fence",
            status="warn",
            detail="Codex runs sandboxed threads without the bot's permission profile: a "
            "sandboxed agent can read the token file, the config and state_dir",
            fix=f"use the pinned Codex {CODEX_APP_SERVER_VERSION} (codex.command)",
        )
    return CheckResult(
        check="agent fence",
        status="ok",
        detail="a sandboxed agent cannot read the bot's files, state_dir or Codex's login",
    )
