"""Restart supervision: one_for_one restarts with capped, jittered backoff and an intensity limit.

Neither trio nor the libraries we use have supervisors, so this module owns the policy
(`RestartPolicy`), the description of a child (`ChildSpec`) and the restart loop around one
child (`supervise_one`). one_for_one over several children is one `supervise_one` per child
in a shared nursery; one_for_all is what a plain trio nursery already does.

Rules (those of Erlang/OTP supervisors):

- Only `Exception` counts as a crash. `trio.Cancelled` and `KeyboardInterrupt` pass through.
- A crash is recorded at `trio.current_time()`; crashes older than `period` are forgotten.
  More than `intensity` crashes inside the window → `RestartIntensityExceeded`, chained from
  the last error, which makes the parent nursery cancel its siblings (escalation).
- Between restarts the loop sleeps `backoff_delay` (``min(backoff_max, backoff_initial *
  multiplier**n)`` scaled by jitter from an injected `random.Random`); a run that lasted at
  least `period` resets the backoff.
- ``permanent`` children always restart; ``transient`` ones stay down after a clean return;
  ``temporary`` ones never restart (a crash is reported, then the loop returns).

A crash is logged once. A failure the bot raises on purpose (an `OrchestratorError`: a Codex
worker that died, a server that would not start) is one line in its own words, since it is
expected in a bot that runs for weeks; anything else is a bug and keeps its traceback. The
nurseries a failure passes through wrap it in groups of one; the log names the failure,
never "Exceptions from Trio nursery".
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, Literal, Protocol

import msgspec
import trio

from orchestrator.errors import (
    OrchestratorError,
    RestartIntensityExceeded,
    describe,
    sole_failure,
)

if TYPE_CHECKING:
    import random

__all__ = [
    "ChildRun",
    "ChildSpec",
    "CrashHandler",
    "Restart",
    "RestartPolicy",
    "backoff_delay",
    "supervise_one",
]

logger: Final = logging.getLogger(__name__)

Restart = Literal["permanent", "transient", "temporary"]


class ChildRun(Protocol):
    """A child's body: runs until done, calls ``task_status.started()`` when ready."""

    def __call__(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> Awaitable[None]:
        """Run the child once."""
        ...


CrashHandler = Callable[[str, Exception, int], None]
"""Called with (child name, error, restart number) after each crash, before the backoff."""


class RestartPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How a supervisor restarts a child.

    Attributes:
        intensity: crashes tolerated within `period`; one more escalates.
        period: the sliding window, in seconds.
        backoff_initial: the first delay before a restart, in seconds.
        backoff_max: the cap on the delay.
        multiplier: growth of the delay per consecutive crash.
        jitter: fraction of the delay that is random (0 = none, 1 = full jitter).
    """

    intensity: int = 5
    period: float = 60.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5


class ChildSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A supervised child: its name (for logs and errors), body and restart type."""

    name: str
    run: ChildRun
    restart: Restart = "permanent"
    returns_by_design: bool = False
    """A permanent child that returns to be replaced (a Codex worker retired after a cancel
    or a recycle, which logs why itself): its return is logged at INFO, not as a warning."""


def backoff_delay(
    attempt: int,
    rng: random.Random,
    *,
    initial: float,
    maximum: float,
    multiplier: float = 2.0,
    jitter: float = 0.5,
) -> float:
    """The delay before retry number `attempt` (0-based): capped exponential, jittered.

    The one backoff of the bot: supervisors between restarts, the poller between failed polls,
    the sender between retries of a call. With ``d = min(maximum, initial * multiplier**attempt)``
    and jitter j, the delay is uniform in ``[(1 - j) * d, d]``, drawn from the injected `rng`:
    it never exceeds `maximum` and never drops below ``(1 - j) * initial``. Any `attempt` is
    fine: past the cap (even where the power would overflow a float, after days of outage) the
    delay stays at `maximum`.
    """
    try:
        grown = initial * multiplier**attempt
    except OverflowError:
        grown = maximum
    return min(maximum, grown) * (1.0 - jitter * rng.random())


async def supervise_one(
    spec: ChildSpec,
    policy: RestartPolicy,
    *,
    rng: random.Random,
    on_crash: CrashHandler | None = None,
    fatal: tuple[type[Exception], ...] = (),
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run `spec` and restart it according to `policy` until it may stay down.

    Errors of the `fatal` types propagate at once: restarting cannot help (a bad token).

    Reports started once the child's first incarnation has started. A crash of the first
    incarnation before it started propagates at once (the caller's ``nursery.start`` fails),
    so a broken child cannot be mistaken for a started one.

    Raises:
        RestartIntensityExceeded: more than ``policy.intensity`` crashes within
            ``policy.period``; chained from the last crash.
    """
    crash_times: deque[float] = deque()
    attempt = 0
    status = _ForwardingStatus(task_status)
    while True:
        run_began = trio.current_time()
        try:
            await spec.run(task_status=status)
        except Exception as error:
            if not status.has_started or isinstance(error, fatal):
                raise
            now = trio.current_time()
            if now - run_began >= policy.period:
                attempt = 0
            crash_times.append(now)
            while crash_times and now - crash_times[0] > policy.period:
                crash_times.popleft()
            _log_crash(spec.name, error, len(crash_times), policy.period)
            if on_crash is not None:
                on_crash(spec.name, error, attempt + 1)
            if spec.restart == "temporary":
                return
            if len(crash_times) > policy.intensity:
                raise RestartIntensityExceeded(
                    spec.name, len(crash_times), policy.period
                ) from error
            await trio.sleep(
                backoff_delay(
                    attempt,
                    rng,
                    initial=policy.backoff_initial,
                    maximum=policy.backoff_max,
                    multiplier=policy.multiplier,
                    jitter=policy.jitter,
                )
            )
            attempt += 1
            continue
        except BaseExceptionGroup as group:  # not only errors: a cancellation is in it
            raise _cancel_wins(spec.name, group) from None
        # A child that returns without calling started() has still run: release the caller.
        status.started()
        if spec.restart != "permanent":
            return
        attempt = 0
        level = logging.INFO if spec.returns_by_design else logging.WARNING
        logger.log(level, "%s returned; restarting it (permanent)", spec.name)


def _cancel_wins(name: str, group: BaseExceptionGroup[BaseException]) -> BaseException:
    """What to raise for a child that ended in `group`: a crash that raced a cancellation
    of ours (a shutdown) arrives in one group with it, and the cancellation wins; nothing
    restarts, and the crash is only logged. Seen from outside: two Codex workers killed a
    moment before a SIGTERM ended the bot with "the bot stopped on an unexpected error"
    and exit code 1. Any other group is raised as it is."""
    cancelled, rest = group.split(trio.Cancelled)
    if cancelled is None or not (rest is None or isinstance(rest, Exception)):
        return group
    if rest is not None:
        logger.info("%s ended while it was being stopped: %s", name, describe(rest))
    return cancelled


def _log_crash(name: str, error: Exception, crashes: int, period: float) -> None:
    failure = sole_failure(error)
    if isinstance(failure, OrchestratorError):
        logger.error("%s failed (%d within %g s): %s", name, crashes, period, failure)
    else:
        logger.error(
            "%s crashed (%d within %g s): %r", name, crashes, period, failure, exc_info=error
        )


class _ForwardingStatus:
    """Forwards the first incarnation's ``started()`` to the supervisor's caller.

    Later incarnations call ``started()`` too; those calls are absorbed, because the caller
    of `supervise_one` was told once. `has_started` lets the loop tell a child that failed to
    start (propagate at once) from one that crashed while serving (restart).
    """

    def __init__(self, outer: trio.TaskStatus[None]) -> None:
        self._outer = outer
        self.has_started = False

    def started(self, value: None = None) -> None:
        """Record the start; forward it to the outer status the first time only."""
        if not self.has_started:
            self.has_started = True
            self._outer.started()
