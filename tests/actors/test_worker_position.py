"""One worker position in virtual time, on in-memory Codex workers: its supervised life
(start, ping, interrupt, recycle, cooldown after a crash loop) and its state."""

from __future__ import annotations

import random
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from actors.worker_position import (
    PING_RECHECK,
    PING_TIMEOUT,
    WORKER_COOLDOWN,
    WORKER_POLICY,
    WorkerPosition,
    supervise_position,
)
from orchestrator.codex_runs import JobFailed
from orchestrator.errors import WorkerStartError
from orchestrator.supervision import RestartPolicy
from tests.fakes.codex_process import FakeProcess, FakeProcesses

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from orchestrator.messages import TraceRecord


class Supervised:
    """A position under `supervise_position`, with what it traced and how often it changed."""

    def __init__(self, fakes: FakeProcesses, position: WorkerPosition) -> None:
        self.fakes = fakes
        self.position = position
        self.traces: list[TraceRecord] = []
        self.changes = 0

    def changed(self) -> None:
        self.changes += 1

    def outcomes(self) -> list[str | None]:
        return [t.outcome for t in self.traces]


@asynccontextmanager
async def supervised(
    fakes: FakeProcesses, *, policy: RestartPolicy = WORKER_POLICY, ping_interval: float = 30
) -> AsyncIterator[Supervised]:
    under = Supervised(fakes, WorkerPosition(0))
    async with trio.open_nursery() as nursery:
        await nursery.start(
            partial(
                supervise_position,
                under.position,
                open_worker=fakes.factory,
                ping_interval=ping_interval,
                policy=policy,
                rng=random.Random(0),
                trace=under.traces.append,
                changed=under.changed,
            )
        )
        yield under
        nursery.cancel_scope.cancel()


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()
    await trio.sleep(1)  # the restart backoff (0.5 s at most)


async def test_started_once_its_first_worker_is_ready(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = FakeProcesses()
    fakes.start_delay = 2.0
    async with supervised(fakes) as under:
        assert trio.current_time() == pytest.approx(2.0)
        assert under.position.idle
        assert under.outcomes() == ["started"]
        assert under.changes == 1
    assert fakes.started[0].closed


async def test_a_wedged_worker_is_interrupted_and_replaced_after_a_failed_ping(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = FakeProcesses()
    async with supervised(fakes, ping_interval=30) as under:
        fakes.started[0].wedged = True
        await trio.sleep(30 + PING_TIMEOUT + PING_RECHECK - 0.1)
        assert len(fakes.started) == 1  # asked once more before it counts as wedged
        await trio.sleep(1)
        assert len(fakes.started) == 2
        assert fakes.started[0].killed
        assert under.position.restarts == 1
        assert under.outcomes() == ["started", "died", "started"]


async def test_a_ping_answered_while_the_bot_was_stopped_keeps_the_worker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The bot stopped (Ctrl-Z) with a ping on its way, and continued a minute later: the
    answer waits in the pipe, and the ping's deadline has passed in the same moment. That
    is a stopped bot, not a stopped server: it is asked once more, and answers."""
    fakes = FakeProcesses()
    async with supervised(fakes, ping_interval=30) as under:
        worker = fakes.started[0]
        worker.ping_delay = 0.5
        await trio.sleep(30.1)  # the ping is on its way
        pings = fakes.pings
        autojump_clock.jump(60)  # the bot stopped: the answer came, and the deadline passed
        await trio.sleep(1)
        assert fakes.pings == pings + 1
        assert not worker.killed
        assert len(fakes.started) == 1
        assert under.outcomes() == ["started"]


async def test_an_idle_worker_that_exits_is_replaced_at_once_not_at_the_next_ping(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = FakeProcesses()
    async with supervised(fakes, ping_interval=30) as under:
        await trio.sleep(5)
        fakes.started[0].die()  # its process exits while nothing runs on it
        await settle()
        assert trio.current_time() < 30
        assert len(fakes.started) == 2
        assert under.position.worker is fakes.started[1]
        assert under.outcomes() == ["started", "died", "started"]


@pytest.mark.parametrize(("reason", "interrupted"), [("cancelled", True), ("recycled", False)])
async def test_a_retired_worker_leaves_and_a_fresh_one_takes_its_place(
    autojump_clock: trio.testing.MockClock, reason: str, interrupted: bool
) -> None:
    fakes = FakeProcesses()
    async with supervised(fakes) as under:
        first = fakes.started[0]
        under.position.retire(reason)  # type: ignore[arg-type]
        await settle()
        assert first.killed is interrupted
        assert first.closed
        assert under.position.last_stop == (first.pid, reason)
        assert under.position.worker is fakes.started[1]
        assert under.position.idle


async def test_a_crash_loop_rests_then_starts_over(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = FakeProcesses()
    policy = RestartPolicy(intensity=1, period=60, backoff_initial=0.1, jitter=0)
    async with supervised(fakes, policy=policy) as under:
        fakes.fail_starts = 100
        fakes.started[0].die()
        under.position.retire("died")
        await settle()
        assert under.position.gave_up == "scripted start failure"
        assert under.position.status().state == "dead"
        assert "gave up" in under.outcomes()
        fakes.fail_starts = 0
        await trio.sleep(WORKER_COOLDOWN + 1)
        assert under.position.status().state == "idle"  # no longer given up


async def test_a_first_start_that_fails_fails_the_position(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fakes = FakeProcesses()
    fakes.fail_starts = 1
    with pytest.RaisesGroup(WorkerStartError, allow_unwrapped=True, flatten_subgroups=True):
        async with supervised(fakes):
            pass


def worker_of(fakes: FakeProcesses, position: WorkerPosition) -> FakeProcess:
    """A fake worker put in `position` by hand (no supervisor)."""
    worker = FakeProcess(worker_id=position.worker_id, pid=1000, owner=fakes)
    position.worker = worker
    return worker


def test_states_as_status_shows_them() -> None:
    fakes = FakeProcesses()
    position = WorkerPosition(0, capacity=2)
    assert position.status().state == "starting"
    worker = worker_of(fakes, position)
    assert position.status().state == "idle"
    position.running += ["c1", "c2"]
    assert (position.status().state, position.status().conversation) == ("busy", "c1, c2")
    assert not position.has_room
    position.running.clear()
    position.draining = True
    assert position.status().state == "draining"
    worker.alive = False
    assert position.status().state == "dead"
    assert not position.ready


def test_recycling_drains_and_retires_once_idle() -> None:
    fakes = FakeProcesses()
    position = WorkerPosition(0)
    worker = worker_of(fakes, position)
    worker.threads = 5
    position.running.append("c1")
    position.check_recycling(worker, max_threads=5, max_rss_mb=0)
    assert position.draining
    assert position.retire_reason is None  # busy: it finishes first
    position.running.clear()
    position.check_recycling(worker, max_threads=5, max_rss_mb=0)
    assert position.retire_reason == "recycled"


def test_a_late_run_does_not_retire_the_replacement() -> None:
    fakes = FakeProcesses()
    position = WorkerPosition(0)
    old = worker_of(fakes, position)
    worker_of(fakes, position)  # the replacement
    position.retire_worker(old, "died")
    assert position.retire_reason is None


def test_a_run_ended_by_another_runs_cancel_says_so() -> None:
    fakes = FakeProcesses()
    position = WorkerPosition(0)
    worker = worker_of(fakes, position)
    died = JobFailed(failure="worker_died", message="died", worker_id=0)
    assert position.explain_shared_stop(died, worker) is died
    position.last_stop = (worker.pid, "cancelled")
    assert "another request's cancel" in position.explain_shared_stop(died, worker).message
    position.last_stop = (worker.pid, "died")
    assert position.explain_shared_stop(died, worker) is died
