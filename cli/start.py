"""``codex-orchestrator start``: wire the real edges to the actor tree and run it.

This is the only place that builds concrete adapters: the Bot API over httpx at
``telegram.api_base_url`` and Codex workers from ``codex.command``, of the backend
``codex.backend`` names (``codex mcp-server`` or ``codex app-server``). Everything below takes
them as parameters. Exit codes: 0 after a graceful drain, 1 when the bot could not run (no
Codex worker could start, a supervisor gave up), 2 when Telegram rejected the token (as a
configuration error: restarting cannot fix it, so the systemd unit's
``RestartPreventExitStatus=2`` stops there), 128 + signal when forced. Telegram being
unreachable at start is not an exit: the root waits for it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

import trio

from actors.root import run_system
from cli.doctor import DoctorContext, check_codex_auth
from cli.doctor_app_server import auth_row
from cli.doctor_codex_auth import login_command
from orchestrator import disk, instance_lock, rename_exchange, stops
from orchestrator.agent_fence import AgentFence, bot_fence
from orchestrator.config import TOKEN_VARIABLE
from orchestrator.disk import secure_state_dir
from orchestrator.edges.codex_app_server import CodexAppServer, open_codex_app_server
from orchestrator.edges.codex_mcp import open_codex_process
from orchestrator.edges.git import GitCli
from orchestrator.edges.http1_proxy import proxy_shown
from orchestrator.edges.processes import WORKER_MARK, stop_leftovers
from orchestrator.edges.proxy_relay import serve_proxy_relays
from orchestrator.edges.subreaper import enable_child_subreaper, reap_adopted
from orchestrator.edges.telegram_http import open_telegram_api
from orchestrator.edges.undumpable import make_undumpable
from orchestrator.errors import TelegramUnauthorized, WorkerStartError
from orchestrator.logging import configure_logging
from orchestrator.shutdown import (
    EXIT_ESCALATED,
    EXIT_TOKEN_REJECTED,
    ShutdownController,
    run_root,
)
from orchestrator.worker_environment import codex_home, worker_environment

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping
    from contextlib import AbstractAsyncContextManager

    from cli.doctor_result import CheckResult
    from orchestrator.config import LoadedConfig
    from orchestrator.ports import CodexWorker

__all__ = ["run"]

logger: Final = logging.getLogger("codex_orchestrator")

AUTH_SECONDS: Final = 10.0
"""Seconds the start-up waits for Codex to say who it is logged in as (app-server), before
the first worker counts as ready without the answer."""


def run(loaded: LoadedConfig, *, log_level: str) -> int:
    """Run the bot in this process until it is stopped; return the exit code."""
    os.umask(0o077)  # everything the bot and its workers create is private to its user
    token = loaded.token.reveal()
    configure_logging(log_level, secrets=[token])
    logger.info("starting with %s", loaded.path)
    # Children started from now on do not inherit the token; our /proc/PID/environ keeps it,
    # closed to the other processes of this user (those without CAP_SYS_PTRACE).
    os.environ.pop(TOKEN_VARIABLE, None)
    if not make_undumpable():
        logger.debug("this system cannot close the bot's /proc files to its user's processes")
    for warning in loaded.permission_warnings():
        logger.warning("%s", warning)
    try:
        for report in secure_state_dir(Path(loaded.config.state_dir)):
            logger.error("state_dir: %s", report)
    except OSError as error:  # the bot's own writes will say more; do not hide the cause
        logger.error("state_dir %s could not be made private: %s", loaded.config.state_dir, error)
    try:
        with instance_lock.holding(Path(loaded.config.state_dir)):
            disk.remove_temporaries(Path(loaded.config.state_dir))
            stops.watch()  # a Ctrl-Z is not a slow disk
            try:
                return trio.run(_main, loaded)
            finally:
                rename_exchange.remove_left_behind()
    except instance_lock.AlreadyRunning as running:
        logger.critical("stopped: %s", running)
        return EXIT_ESCALATED
    except OSError as error:
        logger.critical("stopped: cannot lock state_dir %s: %s", loaded.config.state_dir, error)
        return EXIT_ESCALATED


async def _roll_over_worker_log(path: Path, max_bytes: int, keep: int) -> None:
    """Keep a worker's stderr log below ``disk.rotate_mb``: it rolls over when its worker
    starts (each worker appends to its own file). A disk that refuses is only logged: the
    worker may still start (its log open fails later if the disk is really gone)."""
    try:
        await disk.run_sync(disk.roll_over, path, max_bytes, keep)
    except OSError as error:
        logger.error("cannot roll over the worker log %s: %s", path, error)


async def _warn_if_codex_is_not_logged_in(loaded: LoadedConfig) -> None:
    """One WARNING line per doubtful auth row of ``doctor`` (the same check), with the
    command that fixes it; starting goes on (the first request would fail, not the bot).
    On ``app-server`` Codex itself is asked, once its first worker is up
    (`_warn_if_app_server_is_not_logged_in`)."""
    context = DoctorContext(config_path=loaded.path, environ=os.environ, loaded=loaded)
    for row in await check_codex_auth(context):
        _warn_about_auth(row)


async def _warn_if_app_server_is_not_logged_in(codex: CodexAppServer, login: str) -> None:
    """Doctor's ``codex auth`` row for ``app-server`` (``account/read`` on a worker), as a
    WARNING when it is not ok; bounded, as a refresh of the login may go online."""
    with trio.move_on_after(AUTH_SECONDS):
        _warn_about_auth(await auth_row(codex, login))


def _warn_about_auth(row: CheckResult) -> None:
    """A doctor ``codex auth`` row that is not ok, as one WARNING line with its fix."""
    if row.status != "ok":
        logger.warning("Codex auth: %s; %s", row.detail, row.fix or "see `doctor`")


def _agent_fence(loaded: LoadedConfig, environment: Mapping[str, str]) -> AgentFence:
    """What the commands of sandboxed threads may not read: the bot's own files and state,
    and Codex's login and transcripts (blocking: resolves paths, reads Codex's config.toml).
    The images folder and Codex's transcripts folder are made now, so that threads started
    before the first photo, and the first thread, fence them off too."""
    state_dir = Path(loaded.config.state_dir)
    codex = codex_home(environment)
    for folder in (state_dir / "images", codex / "sessions"):
        with contextlib.suppress(OSError):  # a photo's download, or Codex, says what is wrong
            disk.ensure_folder(folder)
    return bot_fence((path for _, path in loaded.secret_files), state_dir, codex)


async def _main(loaded: LoadedConfig) -> int:
    config = loaded.config
    await _warn_if_codex_is_not_logged_in(loaded)
    subreaper = enable_child_subreaper()
    if subreaper:
        logger.debug("orphaned Codex commands are re-parented to this process")
    mark = os.path.abspath(config.state_dir)  # noqa: ASYNC240 (a string operation, no I/O)
    leftovers = await stop_leftovers(mark)
    if leftovers:
        logger.warning(
            "stopped %d processes an earlier run on this state_dir left behind (it was killed)",
            len(leftovers),
        )
    environment = worker_environment(config.codex, os.environ, state_dir=config.state_dir)
    environment[WORKER_MARK] = mark
    logs = Path(config.state_dir) / "logs"
    home = Path(environment.get("HOME") or config.state_dir)
    await trio.to_thread.run_sync(lambda: home.mkdir(parents=True, exist_ok=True))
    open_worker: Callable[..., AbstractAsyncContextManager[CodexWorker]]
    if config.codex.backend == "app-server":
        fence = await trio.to_thread.run_sync(lambda: _agent_fence(loaded, environment))
        open_worker = functools.partial(open_codex_app_server, fence=fence)
    else:  # 0.153.4 runs an approved command sandboxed under a fence: approvals would break
        open_worker = open_codex_process

    auth_asked = False

    @asynccontextmanager
    async def codex_factory(worker_id: int) -> AsyncIterator[CodexWorker]:
        nonlocal auth_asked
        stderr_log = logs / f"codex-worker-{worker_id}.log"
        await _roll_over_worker_log(
            stderr_log, config.disk.rotate_mb * 1024 * 1024, config.disk.rotate_keep
        )
        async with open_worker(
            config.codex.argv(),
            env=environment,
            worker_id=worker_id,
            stderr_log=stderr_log,
            startup_timeout=config.codex.startup_timeout,
        ) as worker:
            if isinstance(worker, CodexAppServer) and not auth_asked:
                auth_asked = True  # once a run: a replaced worker has the same login
                await _warn_if_app_server_is_not_logged_in(worker, login_command(config.codex))
            yield worker

    failure: list[tuple[str, int]] = []

    async def body(controller: ShutdownController) -> None:
        async with trio.open_nursery() as nursery:
            if subreaper:  # what our workers leave to us is ours to reap
                nursery.start_soon(reap_adopted)
            # before the first worker starts, and stopped after the last one (`serve`)
            await nursery.start(serve_proxy_relays, environment)
            try:
                await serve(controller)
            finally:
                nursery.cancel_scope.cancel()

    async def serve(controller: ShutdownController) -> None:
        proxy = proxy_shown(config.telegram.api_base_url)
        if proxy:
            logger.info("reaching Telegram through the proxy %s", proxy)
        try:
            async with open_telegram_api(
                loaded.token.reveal(),
                base_url=config.telegram.api_base_url,
                request_timeout=config.telegram.request_timeout,
            ) as telegram:
                await run_system(
                    config,
                    shutdown=controller,
                    telegram=telegram,
                    codex_factory=codex_factory,
                    secrets=(loaded.token.reveal(),),
                    own_files=tuple(str(path) for _, path in loaded.secret_files),
                    git=GitCli(),
                )
        except* TelegramUnauthorized:
            failure.append(
                (
                    "Telegram rejected the bot token (401 Unauthorized): check TELEGRAM_BOT_TOKEN",
                    EXIT_TOKEN_REJECTED,
                )
            )
        except* WorkerStartError as group:
            failure.append(
                (
                    f"no Codex worker could start ({group.exceptions[0]}); "
                    "run `codex-orchestrator doctor`",
                    EXIT_ESCALATED,
                )
            )

    code = await run_root(body, ShutdownController())
    if failure:
        why, code = failure[0]
        logger.critical("stopped: %s", why)
        return code
    logger.info("stopped (exit code %d)", code)
    return code
