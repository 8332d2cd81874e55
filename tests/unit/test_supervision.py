"""Supervision in virtual time: restarts, backoff, intensity, escalation, cancellation."""

from __future__ import annotations

import functools
import logging
import random
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from orchestrator.errors import RestartIntensityExceeded, WorkerUnavailable
from orchestrator.supervision import (
    ChildSpec,
    RestartPolicy,
    backoff_delay,
    supervise_one,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

NO_JITTER = RestartPolicy(
    intensity=3, period=60.0, backoff_initial=0.5, backoff_max=4.0, jitter=0.0
)


class Boom(Exception):
    pass


async def one_for_one(specs: Sequence[ChildSpec], policy: RestartPolicy) -> None:
    """one_for_one as the product builds it: one `supervise_one` per child, one nursery."""
    async with trio.open_nursery() as nursery:
        for spec in specs:
            await nursery.start(
                functools.partial(supervise_one, spec, policy, rng=random.Random(0))
            )


def test_backoff_is_capped_exponential() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, rng, initial=0.5, maximum=4.0, jitter=0.0) for n in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_backoff_stays_capped_after_any_number_of_attempts() -> None:
    """Days of outage: the poller's attempt count grows past where 2.0**n overflows."""
    rng = random.Random(1)
    assert backoff_delay(5000, rng, initial=1.0, maximum=60.0, jitter=0.0) == 60.0


def test_backoff_jitter_stays_in_bounds() -> None:
    rng = random.Random(7)
    for attempt in range(10):
        delay = backoff_delay(attempt, rng, initial=1.0, maximum=8.0, jitter=0.5)
        top = min(8.0, 2.0**attempt)
        assert top / 2 <= delay <= top


async def test_crashes_restart_with_backoff_then_escalate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    starts: list[float] = []
    crashes: list[int] = []

    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        starts.append(trio.current_time())
        task_status.started()
        raise Boom("again")

    spec = ChildSpec(name="flaky", run=child)
    with pytest.raises(RestartIntensityExceeded) as info:
        await supervise_one(
            spec,
            NO_JITTER,
            rng=random.Random(0),
            on_crash=lambda name, error, n: crashes.append(n),
        )
    assert isinstance(info.value.__cause__, Boom)
    assert info.value.child == "flaky"
    # Four crashes: three tolerated with 0.5, 1, 2 s backoff; the fourth escalates.
    assert [round(t - starts[0], 6) for t in starts] == [0.0, 0.5, 1.5, 3.5]
    assert crashes == [1, 2, 3, 4]


async def test_crashes_spread_over_the_period_never_escalate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runs = 0

    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        task_status.started()
        if runs >= 10:
            return
        await trio.sleep(61)  # each incarnation lives longer than the period
        raise Boom("rare")

    spec = ChildSpec(name="rare", run=child, restart="transient")
    await supervise_one(spec, NO_JITTER, rng=random.Random(0))
    assert runs == 10


async def test_transient_child_stays_down_after_clean_exit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runs = 0

    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        task_status.started()
        if runs == 1:
            raise Boom("first")

    await supervise_one(
        ChildSpec(name="t", run=child, restart="transient"), NO_JITTER, rng=random.Random(0)
    )
    assert runs == 2


async def test_temporary_child_is_not_restarted(autojump_clock: trio.testing.MockClock) -> None:
    runs = 0
    reported: list[str] = []

    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        task_status.started()
        raise Boom("once")

    await supervise_one(
        ChildSpec(name="tmp", run=child, restart="temporary"),
        NO_JITTER,
        rng=random.Random(0),
        on_crash=lambda name, error, n: reported.append(f"{name}:{error}"),
    )
    assert runs == 1
    assert reported == ["tmp:once"]


async def test_failure_before_started_propagates_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        raise Boom("cannot start")

    async with trio.open_nursery() as nursery:
        with pytest.raises(Boom):
            await nursery.start(
                lambda task_status: supervise_one(
                    ChildSpec(name="broken", run=child),
                    NO_JITTER,
                    rng=random.Random(0),
                    task_status=task_status,
                )
            )


async def test_started_is_reported_once_and_restarts_are_silent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runs = 0
    third_run = trio.Event()
    stop = trio.Event()

    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        task_status.started()
        if runs < 3:
            raise Boom("crash after start")
        third_run.set()
        await stop.wait()

    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: supervise_one(
                ChildSpec(name="c", run=child, restart="transient"),
                NO_JITTER,
                rng=random.Random(0),
                task_status=task_status,
            )
        )
        assert runs == 1
        await third_run.wait()
        assert trio.current_time() == pytest.approx(1.5)  # backoffs of 0.5 s and 1 s
        stop.set()
    assert runs == 3


async def crashes_until_cancelled(spec: ChildSpec) -> list[int]:
    """Supervise `spec` until a cancel 5 s on: the crashes counted. The cancel must end it."""
    crashes: list[int] = []
    with trio.move_on_after(5) as scope:
        await supervise_one(
            spec,
            NO_JITTER,
            rng=random.Random(0),
            on_crash=lambda name, error, n: crashes.append(n),
        )
    assert scope.cancelled_caught
    return crashes


async def test_cancellation_is_not_a_crash(autojump_clock: trio.testing.MockClock) -> None:
    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    assert await crashes_until_cancelled(ChildSpec(name="forever", run=child)) == []


async def test_a_crash_that_races_a_cancel_is_not_an_error(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A child that fails on its way out of a cancel (a Codex worker found dead as the bot
    shuts down) ends in one group with the cancellation. The cancel wins: the supervisor is
    cancelled quietly, nothing restarts. Seen from outside, two workers killed a moment
    before a SIGTERM ended the bot with "the bot stopped on an unexpected error", exit 1."""
    runs: list[int] = []

    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        runs.append(1)
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)  # cancelled from outside: Cancelled
            try:
                await trio.sleep_forever()
            finally:
                raise WorkerUnavailable("worker 0 (pid 1) died")

    caplog.set_level(logging.INFO)
    crashes = await crashes_until_cancelled(ChildSpec(name="codex worker 0", run=child))
    assert (crashes, runs) == ([], [1])
    assert "codex worker 0 ended while it was being stopped: WorkerUnavailable: worker 0" in (
        caplog.text
    )


async def test_one_for_one_restarts_only_the_crashed_child(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runs = {"a": 0, "b": 0}
    done = trio.Event()

    async def steady(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        runs["a"] += 1
        task_status.started()
        await done.wait()

    async def flaky(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        runs["b"] += 1
        task_status.started()
        if runs["b"] < 3:
            raise Boom("b")
        done.set()

    await one_for_one(
        [
            ChildSpec(name="a", run=steady, restart="transient"),
            ChildSpec(name="b", run=flaky, restart="transient"),
        ],
        NO_JITTER,
    )
    assert runs == {"a": 1, "b": 3}


async def test_escalation_cancels_siblings(autojump_clock: trio.testing.MockClock) -> None:
    sibling_cancelled = False

    async def steady(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal sibling_cancelled
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            sibling_cancelled = True

    async def doomed(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        raise Boom("always")

    with pytest.RaisesGroup(RestartIntensityExceeded):
        await one_for_one(
            [ChildSpec(name="steady", run=steady), ChildSpec(name="doomed", run=doomed)],
            NO_JITTER,
        )
    assert sibling_cancelled


async def test_fatal_errors_propagate_without_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runs = 0

    class BadToken(Exception):
        pass

    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        task_status.started()
        raise BadToken("401")

    with pytest.raises(BadToken):
        await supervise_one(
            ChildSpec(name="poller", run=child), NO_JITTER, rng=random.Random(0), fatal=(BadToken,)
        )
    assert runs == 1


@pytest.mark.parametrize(("by_design", "level"), [(False, "WARNING"), (True, "INFO")])
async def test_a_permanent_child_that_returns_is_restarted_and_logged_by_its_design(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    by_design: bool,
    level: str,
) -> None:
    runs = 0

    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        task_status.started()
        if runs == 3:
            await trio.sleep_forever()

    spec = ChildSpec(name="w", run=child, returns_by_design=by_design)
    caplog.set_level("INFO", logger="orchestrator.supervision")
    with trio.move_on_after(10):
        await supervise_one(spec, NO_JITTER, rng=random.Random(0))
    assert runs == 3
    returns = [r for r in caplog.records if "returned; restarting it" in r.getMessage()]
    assert [r.levelname for r in returns] == [level, level]


@pytest.mark.parametrize(
    ("failure", "line", "traceback"),
    [
        (WorkerUnavailable("worker 0 (pid 7) died"), "w failed (1 within 60 s): worker 0", False),
        (Boom("a bug"), "w crashed (1 within 60 s): Boom('a bug')", True),
    ],
    ids=["deliberate", "bug"],
)
async def test_a_crash_is_logged_as_what_failed_with_a_traceback_only_for_a_bug(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    failure: Exception,
    line: str,
    traceback: bool,
) -> None:
    """A failure leaves its nurseries in groups of one: the log names what is inside. A Codex
    worker that died is expected in a bot that runs for weeks: one line, no traceback."""
    caplog.set_level(logging.ERROR)

    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with trio.open_nursery(), trio.open_nursery():  # a group of one each
            raise failure

    await supervise_one(
        ChildSpec(name="w", run=child, restart="temporary"), NO_JITTER, rng=random.Random(0)
    )
    [record] = caplog.records
    assert record.getMessage().startswith(line)
    assert (record.exc_info is not None) == traceback
    assert "Exceptions from Trio nursery" not in record.getMessage()
