"""Shutdown controller and exit codes."""

from __future__ import annotations

import math
import os
import signal
from typing import TYPE_CHECKING

import trio
import trio.testing

from orchestrator.errors import RestartIntensityExceeded
from orchestrator.shutdown import (
    DUPLICATE_SIGNAL_WINDOW,
    ShutdownController,
    handled_signals,
    run_root,
    start_unless_stopped,
)

if TYPE_CHECKING:
    import pytest


async def test_requested_drain_exits_zero(autojump_clock: trio.testing.MockClock) -> None:
    controller = ShutdownController()
    drained = False

    async def body(ctl: ShutdownController) -> None:
        nonlocal drained
        ctl.request("test")
        await ctl.requested.wait()
        drained = True

    assert await run_root(body, controller, with_signals=False) == 0
    assert drained


async def test_escalation_exits_one(autojump_clock: trio.testing.MockClock) -> None:
    async def body(ctl: ShutdownController) -> None:
        raise RestartIntensityExceeded("poller", 3, 60)

    assert await run_root(body, ShutdownController(), with_signals=False) == 1


async def test_unexpected_error_exits_one(autojump_clock: trio.testing.MockClock) -> None:
    async def body(ctl: ShutdownController) -> None:
        raise RuntimeError("bug")

    assert await run_root(body, ShutdownController(), with_signals=False) == 1


async def test_first_signal_drains_second_forces(
    autojump_clock: trio.testing.MockClock,
) -> None:
    controller = ShutdownController()
    seen_request = trio.Event()

    async def body(ctl: ShutdownController) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        await ctl.requested.wait()
        seen_request.set()
        await trio.sleep(DUPLICATE_SIGNAL_WINDOW + 0.1)
        os.kill(os.getpid(), signal.SIGINT)
        await trio.sleep_forever()  # a stuck drain: only the second signal ends it

    with trio.fail_after(10):
        code = await run_root(body, controller)
    assert seen_request.is_set()
    assert code == 128 + signal.SIGINT


async def test_a_duplicate_signal_within_the_window_is_ignored(
    autojump_clock: trio.testing.MockClock,
) -> None:
    controller = ShutdownController()

    async def body(ctl: ShutdownController) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        await ctl.requested.wait()
        await trio.sleep(DUPLICATE_SIGNAL_WINDOW / 2)
        os.kill(os.getpid(), signal.SIGINT)  # what `uv run` forwards on top of the original
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(DUPLICATE_SIGNAL_WINDOW)  # the drain completes in its own time

    with trio.fail_after(10):
        code = await run_root(body, controller)
    assert controller.forced_by is None
    assert code == 0


def test_a_hangup_drains_unless_it_was_ignored_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """``nohup`` leaves SIGHUP ignored: the bot then outlives its terminal, as asked."""
    assert signal.SIGHUP in handled_signals()
    monkeypatch.setattr(signal, "getsignal", lambda signum: signal.SIG_IGN)
    assert handled_signals() == (signal.SIGINT, signal.SIGTERM)


async def test_a_stop_before_ready_ends_the_start_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stop = trio.Event()
    reached: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: _set_after(stop, 5))
        async with start_unless_stopped(stop) as guard:
            await trio.sleep(60)  # a start that takes its time
            reached.append("started")
    assert guard.stopped
    assert reached == []
    assert trio.current_time() == 5


async def test_a_stop_after_ready_is_the_bodys_business(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: _set_after(stop, 5))
        async with start_unless_stopped(stop) as guard:
            guard.ready()
            await stop.wait()
            await trio.sleep(10)  # the drain, not cancelled
    assert not guard.stopped
    assert trio.current_time() == 15


async def test_a_stop_already_requested_ends_the_start_before_it_waits() -> None:
    stop = trio.Event()
    stop.set()
    async with start_unless_stopped(stop) as guard:
        await trio.sleep(math.inf)
    assert guard.stopped


async def _set_after(event: trio.Event, seconds: float) -> None:
    await trio.sleep(seconds)
    event.set()
