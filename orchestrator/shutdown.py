"""Graceful shutdown: one controller, driven by signals in production and by tests directly.

The first SIGINT/SIGTERM sets `ShutdownController.requested` (drain: stop intake, let runs
finish within the drain grace); so does SIGHUP (the terminal closed, the ssh session ended),
unless the bot was started with it ignored (``nohup``): its default action killed the bot on
the spot and left the workers, in sessions of their own, and the commands they ran going on
without it until the next start. A second signal forces: the root scope is cancelled and the
process exits with 128 + signal number. A second signal within `DUPLICATE_SIGNAL_WINDOW` of
the first is the same signal delivered twice and is ignored: ``uv run`` (and other wrappers
without a TTY) forward the SIGINT a supervisor sends to the whole group, so the bot receives it
once from the wrapper and once directly; a person who means "force" presses Ctrl-C again
later than that. Everything below the signal watcher depends only on
the controller's events, never on signals, so tests trigger a drain with `request()`.

`run_root` maps how the tree ended to the process exit code:

- 0: the tree finished after a requested drain (or on its own);
- 1: a supervisor escalated (`RestartIntensityExceeded`) or an unexpected error escaped;
- 2 (`EXIT_TOKEN_REJECTED`, decided by ``cli.start``): Telegram rejected the token;
- 128 + signum: forced by a second signal.
"""

from __future__ import annotations

import logging
import signal
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final, final

import trio

from orchestrator.errors import RestartIntensityExceeded, describe

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

__all__ = [
    "DUPLICATE_SIGNAL_WINDOW",
    "EXIT_ESCALATED",
    "EXIT_OK",
    "EXIT_TOKEN_REJECTED",
    "ShutdownController",
    "StartGuard",
    "exit_code_for",
    "handled_signals",
    "run_root",
    "start_unless_stopped",
    "watch_signals",
]

logger: Final = logging.getLogger(__name__)

EXIT_OK: Final = 0
EXIT_ESCALATED: Final = 1
EXIT_TOKEN_REJECTED: Final = 2
"""Telegram rejected the token: a configuration error (as `ConfigError`'s exit 2), so the
service manager must not restart (``RestartPreventExitStatus=2``)."""

DRAIN_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def handled_signals() -> tuple[signal.Signals, ...]:
    """The signals that drain the bot: `DRAIN_SIGNALS`, less a SIGHUP ignored when the bot
    started (``nohup``: whoever started it wants it to outlive the terminal)."""
    hangup_ignored = signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    return tuple(s for s in DRAIN_SIGNALS if not (s is signal.SIGHUP and hangup_ignored))


DUPLICATE_SIGNAL_WINDOW: Final = 1.0
"""Seconds after the first signal in which another one is a duplicate delivery, not a force."""


@final
class ShutdownController:
    """Shared shutdown state: `requested` (drain) and the forcing signal, if any.

    The root passes the controller to the actors that take part in the drain; they wait on
    `requested` and never look at signals themselves.
    """

    def __init__(self) -> None:
        self.requested = trio.Event()
        self.forced_by: int | None = None
        self._root_scope: trio.CancelScope | None = None

    def request(self, reason: str = "requested") -> None:
        """Start a graceful drain (idempotent)."""
        if not self.requested.is_set():
            logger.warning("shutting down (%s): draining; send the signal again to force", reason)
            self.requested.set()

    def force(self, signum: int) -> None:
        """Cancel the root scope now; the exit code becomes 128 + `signum`."""
        logger.warning("forced shutdown by signal %d", signum)
        self.forced_by = signum
        self.requested.set()
        if self._root_scope is not None:
            self._root_scope.cancel()

    def bind_root(self, scope: trio.CancelScope) -> None:
        """Tell the controller which scope `force` cancels."""
        self._root_scope = scope


@final
class StartGuard:
    """What `start_unless_stopped` yields: `ready` ends the start (a stop from then on is a
    drain, the body's business); `stopped` says whether a stop ended the start first."""

    def __init__(self) -> None:
        self.is_ready = False
        self.stopped = False

    def ready(self) -> None:
        """The start is over: a stop no longer cancels the body."""
        self.is_ready = True


@asynccontextmanager
async def start_unless_stopped(stop: trio.Event) -> AsyncIterator[StartGuard]:
    """Run the body, a start that a stop must end at once, cancelled when `stop` is set
    before the body calls `StartGuard.ready`.

    A drain stops what runs; before the bot runs anything (Telegram unreachable, workers
    still starting: a first ``npx`` download takes a minute) there is nothing to drain, and
    a stop used to wait for the start to finish, or for ever while Telegram stayed away.
    The body's own teardown (a worker's process tree) runs under the cancel, shielded where
    it must be. After the block `StartGuard.stopped` says whether the stop ended it.
    """
    guard = StartGuard()
    async with trio.open_nursery() as watch:

        async def watcher() -> None:
            await stop.wait()
            if not guard.is_ready:
                guard.stopped = True
                watch.cancel_scope.cancel()

        watch.start_soon(watcher)
        yield guard
        watch.cancel_scope.cancel()


async def watch_signals(
    controller: ShutdownController,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The signal adapter: the first of `handled_signals` drains, a second one forces.

    A signal within `DUPLICATE_SIGNAL_WINDOW` seconds of the first is logged and ignored
    (see the module docstring). Runs until cancelled. Must run in the main thread (trio's
    signal rule).
    """
    first_at: float | None = None
    with trio.open_signal_receiver(*handled_signals()) as signals:
        task_status.started()
        async for signum in signals:
            now = trio.current_time()
            if first_at is None and not controller.requested.is_set():
                first_at = now
                controller.request(signal.Signals(signum).name)
            elif first_at is not None and now - first_at < DUPLICATE_SIGNAL_WINDOW:
                logger.info(
                    "%s again within %g s: a duplicate delivery, ignored (send it again later "
                    "to force)",
                    signal.Signals(signum).name,
                    DUPLICATE_SIGNAL_WINDOW,
                )
            else:
                controller.force(signum)


def exit_code_for(error: BaseException | None, controller: ShutdownController) -> int:
    """The process exit code for how the root ended (see the module docstring)."""
    if controller.forced_by is not None:
        return 128 + controller.forced_by
    if error is None:
        return EXIT_OK
    return EXIT_ESCALATED


async def run_root(
    body: Callable[[ShutdownController], Awaitable[None]],
    controller: ShutdownController,
    *,
    with_signals: bool = True,
) -> int:
    """Run `body(controller)` under the signal watcher and return the exit code.

    `body` should return once a requested drain is complete. An escalation
    (`RestartIntensityExceeded`) or any other error ends the run with exit code 1, logged.
    """
    error: BaseException | None = None
    with trio.CancelScope() as root_scope:
        controller.bind_root(root_scope)
        try:
            async with trio.open_nursery() as nursery:
                if with_signals:
                    await nursery.start(watch_signals, controller)
                await body(controller)
                nursery.cancel_scope.cancel()
        except* RestartIntensityExceeded as group:
            error = group.exceptions[0]
            logger.critical("a supervisor gave up: %s", describe(error))
        except* Exception as group:
            error = group.exceptions[0]
            if controller.forced_by is not None:
                # A forced stop cancels everything at once, mid-drain: a task that was handing
                # something to an actor already gone fails on its way out. One line, no
                # traceback: the stop was asked for, and the exit code says it was forced.
                logger.warning("forced stop interrupted the drain (%s)", describe(error))
            else:
                logger.critical("the bot stopped on an unexpected error", exc_info=error)
    return exit_code_for(error, controller)
