"""Shutdown controller and exit codes."""

from __future__ import annotations

import os
import signal

import trio
import trio.testing

from orchestrator.errors import RestartIntensityExceeded
from orchestrator.shutdown import ShutdownController, run_root


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


async def test_first_signal_drains_second_forces() -> None:
    controller = ShutdownController()
    seen_request = trio.Event()

    async def body(ctl: ShutdownController) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        await ctl.requested.wait()
        seen_request.set()
        os.kill(os.getpid(), signal.SIGINT)
        await trio.sleep_forever()  # a stuck drain: only the second signal ends it

    with trio.fail_after(10):
        code = await run_root(body, controller)
    assert seen_request.is_set()
    assert code == 128 + signal.SIGINT
