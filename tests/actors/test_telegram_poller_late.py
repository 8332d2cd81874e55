"""The poller marks late what was sent while the bot could not fetch it, in virtual time.

The wall clock the poller reads is the test's: `BASE` plus trio's virtual seconds, so a
message's Telegram ``date`` can be set against it exactly."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from orchestrator.errors import TelegramTransientError
from orchestrator.messages import InboundMessage, RouterMsg
from orchestrator.update_ledger import UpdateLedger
from tests.actors.test_telegram_poller import Harness
from tests.fakes.telegram_api import Call, FakeTelegramApi

if TYPE_CHECKING:
    from pathlib import Path

BASE = 1_800_000_000
"""The wall clock at virtual time 0 (Unix seconds)."""

STALE_AFTER = 600.0


def wall_clock() -> float:
    return BASE + trio.current_time()


class LateHarness(Harness):
    """The poller as `start` runs it: `STALE_AFTER` and the test's wall clock."""

    api: FakeTelegramApi

    def __init__(self, api: FakeTelegramApi, ledger_path: Path, *, limit: int = 100) -> None:
        super().__init__(api, ledger_path)
        self.limit = limit
        self.stale_after = STALE_AFTER
        self.wall_clock = wall_clock


def caught_up_at(path: Path, when: float) -> None:
    """A ledger whose bot last had every update at `when` (then it went down)."""
    path.write_text(json.dumps({"version": 1, "high_water": None, "recent": [], "caught_up": when}))


def lateness(received: list[RouterMsg]) -> dict[str | None, int]:
    return {m.text: m.late for m in received if isinstance(m, InboundMessage)}


@pytest.fixture
def api() -> FakeTelegramApi:
    return FakeTelegramApi()


async def test_what_was_sent_while_the_bot_was_down_and_waited_too_long_is_late(
    api: FakeTelegramApi,
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = tmp_path / "updates.json"
    caught_up_at(ledger, BASE - 7200)  # down for two hours
    api.push_text("deploy it", date=BASE - 3600)
    api.push_text("from before the stop", date=BASE - 7300)  # came late for another reason
    api.push_text("/status", date=BASE - 3600)  # a command is served as usual
    api.push_text("deploy it", edited=True, date=BASE - 3600)  # an edit is never run
    api.push_text("just now", date=BASE - 599)
    api.push_text("a while ago", date=BASE - 601)
    api.push_text("let me in", chat_id=666, user_id=666, date=BASE - 3600)  # refused as ever
    api.push_text("talk among people", chat_id=-5, date=BASE - 3600)  # a group's, not for us
    harness = LateHarness(api, ledger)
    harness.allowed_users = (1,)
    with caplog.at_level(logging.INFO, logger="actors.telegram_poller"):
        await harness.run(stop_after=8)
    late = [(m.text, m.late, m.edited) for m in harness.received if isinstance(m, InboundMessage)]
    assert late == [
        ("deploy it", 3600, False),
        ("from before the stop", 0, False),
        ("/status", 0, False),
        ("deploy it", 0, True),
        ("just now", 0, False),
        ("a while ago", 601, False),
        ("let me in", 0, False),
        ("talk among people", 0, False),
    ]
    traced = [(r.outcome, r.detail) for r in harness.traces if r.event == "update"]
    assert traced[0] == ("late", "waited 3600 s at Telegram")
    assert traced[1] == ("ok", None)
    lines = [r.getMessage() for r in caplog.records if "stale_after" in r.getMessage()]
    assert lines == [
        "2 messages waited at Telegram over sessions.stale_after (600 s) while the bot could "
        "not fetch updates: offered in their chats, not run"
    ]


async def test_a_first_start_has_no_line_and_keeps_one_for_the_next(
    api: FakeTelegramApi, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """No ledger (a first start, or one written before the line was kept): nothing is late,
    however old; the stop writes the line, and the next start draws it there."""
    ledger = tmp_path / "updates.json"
    api.push_text("sent a day before the first start", date=BASE - 86400)
    harness = LateHarness(api, ledger)
    await harness.run(stop_after=1)
    assert lateness(harness.received) == {"sent a day before the first start": 0}
    # The poller caught up with its poll at virtual time 0 (the next poll found it so).
    assert json.loads(ledger.read_text())["caught_up"] == BASE
    assert (await UpdateLedger.open(ledger)).caught_up == BASE
    autojump_clock.jump(7200)  # down for two hours
    api.push_text("sent while it was down", date=BASE + 3600)
    api.push_text("sent while it was up", date=BASE - 10)
    restarted = LateHarness(api, ledger)
    await restarted.run(stop_after=2)
    assert lateness(restarted.received) == {
        "sent while it was down": 3600,
        "sent while it was up": 0,
    }


async def test_a_ledger_from_before_the_line_loads_without_it(tmp_path: Path) -> None:
    ledger = tmp_path / "updates.json"
    ledger.write_text(json.dumps({"version": 1, "high_water": 7, "recent": [7]}))
    loaded = await UpdateLedger.open(ledger)
    assert loaded.caught_up is None
    assert loaded.seen(7)


async def test_an_outage_while_the_bot_runs_makes_what_waited_through_it_late(
    api: FakeTelegramApi, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Telegram unreachable for about twenty minutes while the bot runs: a message sent at
    its start waited through it; one sent after it did not."""
    harness = LateHarness(api, tmp_path / "updates.json")

    def sent_when_down(call: Call) -> None:
        api.push_text("sent as the network went", date=round(wall_clock()))
        raise TelegramTransientError("connection refused")

    async def network() -> None:
        await api.wait_for(lambda a: len(a.calls_of("getUpdates")) == 1)
        await trio.sleep(60)  # the first long poll ends empty: the bot is caught up
        down = [TelegramTransientError("connection refused") for _ in range(160)]
        api.failures["getUpdates"].extend([sent_when_down, *down])
        await api.wait_for(lambda a: not a.failures["getUpdates"])
        api.push_text("sent once it was back", date=round(wall_clock()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(network)
        await harness.run(stop_after=2)
    late = lateness(harness.received)
    assert late["sent once it was back"] == 0
    assert 900 < late["sent as the network went"] < 2000, late


async def test_a_backlog_longer_than_one_batch_is_late_to_its_end(
    api: FakeTelegramApi, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A batch that came back full did not catch up: the next batch is judged by the same
    line, so the end of a long backlog is not taken for new messages."""
    ledger = tmp_path / "updates.json"
    caught_up_at(ledger, BASE - 7200)
    for n in range(5):
        api.push_text(f"late {n}", date=BASE - 3600 + n)
    harness = LateHarness(api, ledger, limit=2)
    await harness.run(stop_after=5)
    assert lateness(harness.received) == {f"late {n}": 3600 - n for n in range(5)}


async def test_stale_after_zero_runs_everything(
    api: FakeTelegramApi, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    ledger = tmp_path / "updates.json"
    caught_up_at(ledger, BASE - 7200)
    api.push_text("deploy it", date=BASE - 3600)
    harness = LateHarness(api, ledger)
    harness.stale_after = 0
    await harness.run(stop_after=1)
    assert lateness(harness.received) == {"deploy it": 0}
