"""A call that keeps failing is logged at once, then once a minute, and its end once."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio
import trio.testing

from orchestrator.outage import OUTAGE_LOG_INTERVAL, Outage

if TYPE_CHECKING:
    import pytest


async def test_an_outage_is_logged_at_once_then_once_a_minute_and_its_end_once(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("test_outage")
    outage = Outage(logger, "getUpdates", "getUpdates failed")
    outage.succeeded()  # no outage: nothing to say
    for attempt in range(13):  # one every 10 s: 120 s in all
        outage.failed(f"HTTP 502 #{attempt}", 10.0)
        await trio.sleep(10)
    outage.succeeded()
    assert outage.attempts == 0
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "getUpdates failed (HTTP 502 #0); retrying in 10.0 s"),
        (
            "WARNING",
            "getUpdates still failing after 7 attempts over 60 s (last: HTTP 502 #6); "
            "retrying in 10.0 s",
        ),
        (
            "WARNING",
            "getUpdates still failing after 13 attempts over 120 s (last: HTTP 502 #12); "
            "retrying in 10.0 s",
        ),
        ("WARNING", "getUpdates works again after 13 failed attempts over 130 s"),
    ]
    caplog.clear()
    outage.failed("conflict", 1.0, level=logging.ERROR)  # a new outage starts over
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", "getUpdates failed (conflict); retrying in 1.0 s")
    ]
    assert OUTAGE_LOG_INTERVAL == 60.0
