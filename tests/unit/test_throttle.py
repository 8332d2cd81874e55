"""`OncePer`: each key due once per interval, keys apart, a forgotten key due again."""

from __future__ import annotations

import trio
import trio.testing

from orchestrator.throttle import OncePer


async def test_a_key_is_due_once_per_interval_and_keys_are_apart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    told = OncePer[str](60)
    assert told.due("a")
    assert not told.due("a")
    assert told.due("b")
    await trio.sleep(59)
    assert not told.due("a")
    await trio.sleep(1)
    assert told.due("a")  # the interval starts again from here
    assert not told.due("a")
    told.forget("a")
    assert told.due("a")
