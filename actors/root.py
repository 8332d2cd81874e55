"""The root of the actor tree: starts everything in order and drains it in reverse.

::

    root
    ├── tracer         started first, stopped last: everyone traces
    ├── sender         all outbound Telegram calls
    ├── worker pool    warm before the poller starts
    ├── router         chat actors live in its nursery
    └── poller         started last, stopped first

Shutdown follows the data flow (docs/architecture.md, "The actor tree"). When
`ShutdownController.requested` is set, the poller's scope is cancelled (updates not handed off
stay unconfirmed at Telegram); the root closes the router's inbox; the router closes every
chat inbox and the chats finish their requests within ``shutdown.drain_grace``; then the pool
stops its workers with their process trees, the sender delivers the last messages (bounded by
`SENDER_FLUSH_GRACE`; replies it could not deliver stay in ``state_dir/outbox/`` and go out
first on the next start), and the tracer writes what is left.

The root assembles collaborators and passes them down; it holds no state of its own.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING, Final

import trio

from actors import chat_files, router, telegram_poller, telegram_sender, tracer
from actors.chat_texts import menu_commands
from actors.telegram_outbox import Outbox
from actors.worker_pool import open_worker_pool
from orchestrator.errors import TelegramRetryAfter, TelegramTransientError, TelegramUnauthorized
from orchestrator.messages import RouterMsg, SenderMsg, TraceRecord
from orchestrator.outage import Outage, Recovery
from orchestrator.session_store import SessionStore
from orchestrator.shutdown import start_unless_stopped
from orchestrator.supervision import ChildSpec, RestartPolicy, backoff_delay, supervise_one
from orchestrator.update_ledger import UpdateLedger
from orchestrator.words import plural

if TYPE_CHECKING:
    from actors.worker_pool import WorkerPoolHandle
    from orchestrator.config import Config
    from orchestrator.ports import BotIdentity, CodexWorkerFactory, GitWorktrees, TelegramApi
    from orchestrator.shutdown import ShutdownController

__all__ = [
    "POLLER_POLICY",
    "ROUTER_INBOX_SIZE",
    "SENDER_FLUSH_GRACE",
    "SENDER_INBOX_SIZE",
    "run_system",
]

logger: Final = logging.getLogger(__name__)

ROUTER_INBOX_SIZE: Final = 16
"""Poller → router: small; when full the poller blocks and Telegram keeps the updates."""

SENDER_INBOX_SIZE: Final = 256
"""Chats → sender: producers block when full; live updates coalesce inside the sender."""

SENDER_FLUSH_GRACE: Final = 30.0
"""Seconds the sender gets after the drain to deliver the last messages."""

CONNECT_BACKOFF_INITIAL: Final = 1.0
"""Seconds before the second getMe at start when Telegram could not be reached."""

CONNECT_BACKOFF_MAX: Final = 10.0
"""Cap on the delay between getMe attempts at start: a long outage is tried every 5 to 10 s,
so the bot comes up within seconds once Telegram or the network is back."""

POLLER_POLICY: Final = RestartPolicy(intensity=3, period=60.0, backoff_initial=1.0)
"""Network trouble is handled inside the poller; a crash here is a bug: escalate quickly."""


async def run_system(
    config: Config,
    *,
    shutdown: ShutdownController,
    telegram: TelegramApi,
    codex_factory: CodexWorkerFactory,
    secrets: tuple[str, ...] = (),
    own_files: tuple[str, ...] = (),
    rng: random.Random | None = None,
    git: GitWorktrees | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the whole bot until a requested drain has completed.

    Reports started once the poller is polling (the pool is warm by then). Waits for
    Telegram first: ``getMe`` is retried with backoff while Telegram cannot be reached.

    Raises:
        TelegramUnauthorized: Telegram rejected the token (at getMe or later).
        RestartIntensityExceeded: a supervisor gave up.
        WorkerStartError: no Codex worker could be started.
    """
    rng = rng or random.Random()
    state_dir = Path(config.state_dir)
    trace_handle, trace_inbox = tracer.open_trace_mailbox()
    async with trio.open_nursery() as outer:
        outer.start_soon(
            lambda: tracer.run(
                trace_inbox,
                traces_dir=state_dir / "traces",
                secrets=secrets,
                rotate_bytes=config.disk.rotate_mb * 1024 * 1024,
                rotate_keep=config.disk.rotate_keep,
                keep_days=config.traces.keep_days,
            )
        )
        try:
            identity = await _wait_for_telegram(telegram, rng, shutdown.requested)
            if identity is None:
                logger.info("stopped before Telegram could be reached")
                return
            logger.info("connected to Telegram as @%s", identity.username)
            if not config.telegram.allowed_users:
                logger.warning("telegram.allowed_users is empty: nobody can use this bot")
            if identity.can_read_all_group_messages and config.telegram.group_requests == "all":
                logger.info(
                    "@%s reads every message of its groups (privacy mode off): each message "
                    'of an allowed user there runs; telegram.group_requests = "addressed" runs '
                    "only mentions, replies to the bot and commands",
                    identity.username,
                )
            sender_send, sender_inbox = trio.open_memory_channel[SenderMsg](SENDER_INBOX_SIZE)
            recovery = Recovery()  # the end of an outage: seen by the poller, for the sender
            outbox, pending = await Outbox.open(state_dir / "outbox", secrets=secrets)
            async with trio.open_nursery() as edge:
                edge.start_soon(
                    lambda: telegram_sender.run(
                        sender_inbox,
                        telegram,
                        max_chunks=config.telegram.max_chunks,
                        rng=rng,
                        trace=trace_handle.emit,
                        commands=menu_commands(app_server=config.codex.backend == "app-server"),
                        global_rate=config.telegram.rate_limit,
                        chat_spacing=config.telegram.chat_spacing,
                        outbox=outbox,
                        pending=pending,
                        retry_backoff_max=config.telegram.retry_backoff_max,
                        secrets=secrets,
                        recovery=recovery,
                    )
                )
                with sender_send:
                    codex = config.codex
                    # A stop while the workers start ends the start (`start_unless_stopped`).
                    async with (
                        start_unless_stopped(shutdown.requested) as warming,
                        open_worker_pool(
                            codex_factory,
                            size=codex.pool_size,
                            calls_per_worker=codex.calls_per_worker,
                            affinity_wait=codex.affinity_wait,
                            stall_timeout=codex.stall_timeout,
                            request_timeout=codex.request_timeout,
                            ping_interval=codex.ping_interval,
                            recycle_rss_mb=codex.recycle_rss_mb,
                            recycle_threads=codex.recycle_threads,
                            cold_start=codex.cold_start,
                            endpoint_failure_limit=codex.endpoint_failure_limit,
                            rng=rng,
                            trace=trace_handle.emit,
                        ) as pool,
                    ):
                        warming.ready()
                        logger.info("%s warm", plural(codex.pool_size, "Codex worker"))
                        await _run_front(
                            config,
                            shutdown=shutdown,
                            telegram=telegram,
                            bot_username=identity.username,
                            pool=pool,
                            sender=sender_send,
                            outbox=outbox,
                            trace=trace_handle,
                            rng=rng,
                            secrets=secrets,
                            own_files=own_files,
                            git=git,
                            recovery=recovery,
                            task_status=task_status,
                        )
                    if warming.stopped:
                        logger.info("stopped while the Codex workers were starting")
                # The sender's inbox is closed: it delivers what is pending, then returns.
                edge.cancel_scope.deadline = trio.current_time() + SENDER_FLUSH_GRACE
        finally:
            trace_handle.close()


async def _wait_for_telegram(
    telegram: TelegramApi, rng: random.Random, stop: trio.Event
) -> BotIdentity | None:
    """``getMe`` until Telegram answers: network trouble, 5xx and 429 are waited out with
    backoff (logged at once, then once a minute, without a traceback: `orchestrator.outage`),
    so a bot started while the network or Telegram is down comes up when they do instead of
    exhausting systemd's restarts. None when `stop` (a shutdown) is set first: nothing runs
    yet, so a stop during the wait ends the bot at once.

    Raises:
        TelegramUnauthorized: the token was rejected (no retry can fix that).
    """
    identity = None
    async with start_unless_stopped(stop):
        identity = await _get_me(telegram, rng)
    return identity


async def _get_me(telegram: TelegramApi, rng: random.Random) -> BotIdentity:
    """``getMe``, retried with backoff until Telegram answers (`_wait_for_telegram`)."""
    outage = Outage(logger, "getMe", "Telegram is not reachable")
    while True:
        try:
            identity = await telegram.get_me()
        except TelegramRetryAfter as error:
            delay = error.retry_after
            logger.warning("Telegram asks to wait %g s (flood control) before getMe", delay)
        except TelegramTransientError as error:
            delay = backoff_delay(
                outage.attempts,
                rng,
                initial=CONNECT_BACKOFF_INITIAL,
                maximum=CONNECT_BACKOFF_MAX,
            )
            outage.failed(error, delay)
        else:
            outage.succeeded()
            return identity
        await trio.sleep(delay)


async def _run_front(
    config: Config,
    *,
    shutdown: ShutdownController,
    telegram: TelegramApi,
    bot_username: str,
    pool: WorkerPoolHandle,
    sender: trio.MemorySendChannel[SenderMsg],
    outbox: Outbox,
    trace: tracer.TraceHandle,
    rng: random.Random,
    secrets: tuple[str, ...],
    own_files: tuple[str, ...],
    git: GitWorktrees | None,
    recovery: Recovery,
    task_status: trio.TaskStatus[None],
) -> None:
    """Router and poller: the router starts first, the poller stops first."""
    state_dir = Path(config.state_dir)
    ledger = await UpdateLedger.open(state_dir / "updates.json")
    store = SessionStore(state_dir / "sessions", secrets=secrets)
    router_send, router_inbox = trio.open_memory_channel[RouterMsg](ROUTER_INBOX_SIZE)
    janitor = trio.CancelScope()  # deletes photos past their retention until the drain

    async def prune_images() -> None:
        with janitor:
            await chat_files.prune_images_forever(state_dir, config.files.image_retention)

    async with trio.open_nursery() as front:
        front.start_soon(prune_images)
        await front.start(
            lambda task_status: router.run(
                router_inbox,
                sender=sender.clone(),
                pool=pool,
                store=store,
                config=config,
                trace=trace.emit,
                drain_grace=config.shutdown.drain_grace,
                files=telegram,
                git=git,
                outbox=outbox,
                secrets=secrets,
                own_files=own_files,
                forced=lambda: shutdown.forced_by is not None,
                task_status=task_status,
            )
        )
        with router_send:

            async def poller(
                *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
            ) -> None:
                await telegram_poller.run(
                    telegram,
                    router_send.clone(),
                    ledger=ledger,
                    bot_username=bot_username,
                    poll_seconds=config.telegram.polling.timeout,
                    limit=config.telegram.polling.limit,
                    rng=rng,
                    trace=trace.emit,
                    preview_chars=config.traces.preview_chars,
                    allowed_users=config.telegram.allowed_users,
                    recovery=recovery,
                    stale_after=config.sessions.stale_after,
                    task_status=task_status,
                )

            async def supervised_poller(
                *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
            ) -> None:
                await supervise_one(
                    ChildSpec(name="telegram poller", run=poller),
                    POLLER_POLICY,
                    rng=rng,
                    fatal=(TelegramUnauthorized,),
                    task_status=task_status,
                )

            async with trio.open_nursery() as intake:
                await intake.start(supervised_poller)
                logger.info("polling Telegram for updates")
                task_status.started()
                await shutdown.requested.wait()
                logger.info("draining: the poller stopped; running requests may finish")
                trace.emit(TraceRecord(event="shutdown", detail="drain started"))
                intake.cancel_scope.cancel()
                janitor.cancel()
        # router_send is closed here: the router drains its chats and returns.
