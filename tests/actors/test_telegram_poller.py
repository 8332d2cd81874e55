"""The poller in virtual time: order, offsets, exactly-once across restarts, every fault."""

from __future__ import annotations

import errno
import itertools
import json
import random
import time
from typing import TYPE_CHECKING

import httpx
import msgspec
import pytest
import trio
import trio.testing

from actors import telegram_poller
from actors.chat import mark_handled
from orchestrator import disk
from orchestrator.edges.telegram_http import open_telegram_api
from orchestrator.errors import (
    TelegramConflict,
    TelegramRetryAfter,
    TelegramTransientError,
    TelegramUnauthorized,
)
from orchestrator.messages import InboundCallback, InboundMessage, RouterMsg, TraceRecord
from orchestrator.outage import Recovery
from orchestrator.update_ledger import UpdateLedger
from tests.fakes.telegram_api import FakeTelegramApi

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from orchestrator.ports import TelegramApi


class Harness:
    def __init__(self, api: TelegramApi, ledger_path: Path) -> None:
        self.api = api
        self.ledger_path = ledger_path
        self.received: list[RouterMsg] = []
        self.traces: list[TraceRecord] = []
        self.allowed_users: tuple[int, ...] | None = None
        self.takes = True
        """Whether this router marks each update handled as it receives it (a chat that
        saved it at once); False: nothing is ever marked."""
        self.recovery: Recovery | None = None
        self.limit = 100
        self.stale_after = 0.0
        self.wall_clock: Callable[[], float] = time.time

    async def run(self, *, stop_after: int, router_buffer: int = 16) -> None:
        """Run a poller until `stop_after` messages reached the router and the poller did
        what it does next, then cancel it."""
        ledger = await UpdateLedger.open(self.ledger_path)
        send, receive = trio.open_memory_channel[RouterMsg](router_buffer)
        with trio.fail_after(3600):  # hang ceiling: a deadlock fails at once in virtual time
            await self._run(ledger, send, receive, stop_after)

    async def poll(self, ledger: UpdateLedger, send: trio.MemorySendChannel[RouterMsg]) -> None:
        """The poller under test, handing off into `send`."""
        await telegram_poller.run(
            self.api,
            send,
            ledger=ledger,
            bot_username="TestBot",
            poll_seconds=30,
            limit=self.limit,
            rng=random.Random(1),
            trace=self.traces.append,
            allowed_users=self.allowed_users,
            recovery=self.recovery,
            stale_after=self.stale_after,
            wall_clock=self.wall_clock,
        )

    async def _run(self, ledger, send, receive, stop_after: int) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.poll, ledger, send)
            with receive:
                for _ in range(stop_after):
                    message = await receive.receive()
                    if self.takes:
                        mark_handled(message)
                    self.received.append(message)
                await trio.testing.wait_all_tasks_blocked()
                # The process "dies" here: whatever the poller is doing is cut short.
                nursery.cancel_scope.cancel()


class FakeHarness(Harness):
    api: FakeTelegramApi


@pytest.fixture
def harness(tmp_path: Path) -> FakeHarness:
    return FakeHarness(FakeTelegramApi(), tmp_path / "updates.json")


def texts(received: list[RouterMsg]) -> list[str | None]:
    return [m.text for m in received if isinstance(m, InboundMessage)]


async def test_updates_reach_the_router_in_order_and_offset_advances(
    harness: FakeHarness, autojump_clock: trio.testing.MockClock
) -> None:
    for n in range(3):
        harness.api.push_text(f"hello {n}")
    await harness.run(stop_after=3)
    assert texts(harness.received) == ["hello 0", "hello 1", "hello 2"]
    assert harness.api.offsets[0] is None
    assert harness.api.offsets[-1] == 4


async def test_commands_and_other_bots(
    harness: FakeHarness, autojump_clock: trio.testing.MockClock
) -> None:
    harness.api.push_text("/Status@TestBot now")
    harness.api.push_text("/status@OtherBot")
    harness.api.push_text(
        "😀 /mode plan", entities=[{"type": "bot_command", "offset": 3, "length": 5}]
    )
    harness.api.push_text("/mode plan")
    await harness.run(stop_after=3)
    first, second, third = harness.received
    assert isinstance(first, InboundMessage)
    assert (first.command, first.command_args) == ("status", "now")
    assert isinstance(second, InboundMessage)
    assert second.command is None  # a command entity not at offset 0 is plain text
    assert isinstance(third, InboundMessage)
    assert (third.command, third.command_args) == ("mode", "plan")


async def test_the_mention_of_the_bot_is_taken_out_of_a_prompt(
    harness: FakeHarness, autojump_clock: trio.testing.MockClock
) -> None:
    harness.api.push_text(
        "@TestBot fix the 😀 bug, ask @alice",
        chat_id=-100,
        entities=[
            {"type": "mention", "offset": 0, "length": 8},
            {"type": "mention", "offset": 29, "length": 6},
        ],
    )
    harness.api.push_text(
        "please @testbot look",
        chat_id=-100,
        entities=[{"type": "mention", "offset": 7, "length": 8}],
    )
    await harness.run(stop_after=2)
    assert texts(harness.received) == ["fix the 😀 bug, ask @alice", "please look"]


async def test_undecodable_update_is_skipped_without_holding_back_others(
    harness: FakeHarness, autojump_clock: trio.testing.MockClock
) -> None:
    harness.api.push_text("before")
    bad = harness.api.push({"message": {"message_id": "not-a-number", "chat": 5}})
    harness.api.push(raw=b"[not an update]")
    harness.api.push_text("after")
    await harness.run(stop_after=2)
    assert texts(harness.received) == ["before", "after"]
    skipped = [t for t in harness.traces if t.outcome == "skipped"]
    assert sorted(str(t.update_id) for t in skipped) == sorted([str(bad), "None"])
    assert all(t.malformed for t in skipped)
    assert not any(t.malformed for t in harness.traces if t.outcome != "skipped")


async def test_callbacks_and_edits(
    harness: FakeHarness, autojump_clock: trio.testing.MockClock
) -> None:
    harness.api.push_text("edited text", edited=True)
    harness.api.push(
        {
            "callback_query": {
                "id": "cb1",
                "from": {"id": 7, "is_bot": False, "first_name": "x"},
                "message": {"message_id": 5, "date": 0, "chat": {"id": 7, "type": "private"}},
                "data": "approve:abc",
            }
        }
    )
    await harness.run(stop_after=2)
    edit, press = harness.received
    assert isinstance(edit, InboundMessage)
    assert edit.edited
    assert isinstance(press, InboundCallback)
    assert (press.data, press.user_id, press.message_id) == ("approve:abc", 7, 5)


async def test_kill_and_restart_never_delivers_an_update_twice(
    harness: FakeHarness, autojump_clock: trio.testing.MockClock
) -> None:
    ids = [harness.api.push_text(f"m{n}") for n in range(5)]
    delivered = list(harness.api.pending)
    # First run: the router takes three updates, then the process "dies" mid-batch,
    # before the offset confirming the batch was ever sent to Telegram.
    await harness.run(stop_after=3, router_buffer=0)
    assert texts(harness.received) == ["m0", "m1", "m2"]
    # Telegram redelivers everything unconfirmed on the next start.
    harness.api.pending = []
    harness.api.redeliver(delivered)
    restarted = Harness(harness.api, harness.ledger_path)
    await restarted.run(stop_after=2)
    assert texts(restarted.received) == ["m3", "m4"]
    duplicates = [t.update_id for t in restarted.traces if t.outcome == "duplicate"]
    assert duplicates == ids[:3]


async def test_ids_restarting_lower_are_accepted(
    harness: FakeHarness, autojump_clock: trio.testing.MockClock
) -> None:
    harness.api._ids = itertools.count(500)
    for n in range(3):
        harness.api.push_text(f"old {n}")
    await harness.run(stop_after=3)
    # After a week of silence Telegram picks a random, possibly lower, id.
    harness.api._ids = itertools.count(7)
    harness.api.push_text("new after idle")
    second = Harness(harness.api, harness.ledger_path)
    await second.run(stop_after=1)
    assert texts(second.received) == ["new after idle"]


@pytest.mark.parametrize(
    ("error", "min_wait"),
    [
        (TelegramTransientError("Bad Gateway", 502), 0.5),
        (TelegramRetryAfter("Too Many Requests: retry after 7", 7), 7.0),
        (TelegramConflict("Conflict: terminated by other getUpdates request", 409), 0.5),
    ],
)
async def test_faults_back_off_and_keep_the_offset(
    harness: FakeHarness,
    autojump_clock: trio.testing.MockClock,
    error: Exception,
    min_wait: float,
) -> None:
    harness.api.push_text("survives")
    harness.api.fail("getUpdates", error, error)  # type: ignore[arg-type]
    await harness.run(stop_after=1)
    assert texts(harness.received) == ["survives"]
    polls = harness.api.calls_of("getUpdates")
    assert [p.extra["offset"] for p in polls[:3]] == [None, None, None]
    assert polls[1].at - polls[0].at >= min_wait
    assert polls[2].at - polls[1].at >= min_wait


async def test_backoff_grows_and_is_capped(
    harness: FakeHarness, autojump_clock: trio.testing.MockClock
) -> None:
    harness.api.push_text("eventually")
    harness.api.fail("getUpdates", *[TelegramTransientError("timeout") for _ in range(10)])
    await harness.run(stop_after=1)
    polls = harness.api.calls_of("getUpdates")
    gaps = [b.at - a.at for a, b in itertools.pairwise(polls)][:10]
    assert gaps[1] > gaps[0] * 1.2 or gaps[1] >= 1.0
    assert max(gaps) <= telegram_poller.BACKOFF_MAX
    assert gaps[-1] >= telegram_poller.BACKOFF_MAX / 2


async def test_the_end_of_an_outage_wakes_the_senders_waiting_replies(
    harness: FakeHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """The poll that goes through after failures tells the `Recovery` it shares with the
    sender, whose replies waiting out a long pause then go at once."""
    harness.recovery = recovery = Recovery()
    harness.api.push_text("after the outage")
    harness.api.fail("getUpdates", *[TelegramTransientError("timeout") for _ in range(3)])
    woken: list[float] = []

    async def waiting_reply() -> None:
        await recovery.sleep(3600)
        woken.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiting_reply)
        await harness.run(stop_after=1)
    polls = [call.at for call in harness.api.calls_of("getUpdates")]
    assert polls[3] - polls[0] > 1  # three failures, with their pauses
    assert woken == [polls[3]]  # the poll after the last failure went through


async def test_a_long_outage_is_retried_every_few_seconds_in_few_log_lines(
    harness: FakeHarness,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Once Telegram is back the bot answers within seconds, and a long outage does not
    fill the log: one line at once, one a minute, one at its end."""
    harness.api.push_text("after the outage")
    harness.api.fail("getUpdates", *[TelegramTransientError("Bad Gateway", 502)] * 40)
    await harness.run(stop_after=1)
    assert texts(harness.received) == ["after the outage"]
    polls = harness.api.calls_of("getUpdates")
    assert polls[40].at - polls[0].at > 200  # about five minutes of outage
    assert polls[40].at - polls[39].at <= telegram_poller.BACKOFF_MAX == 10.0
    lines = [r.getMessage() for r in caplog.records if "getUpdates" in r.getMessage()]
    delay = lines[0].split()[-2]
    assert lines[0] == f"getUpdates failed (Telegram error 502: Bad Gateway); retrying in {delay} s"
    assert 4 <= len(lines) <= 8
    assert all("still failing after" in line for line in lines[1:-1])
    assert lines[-1].startswith("getUpdates works again after 40 failed attempts over ")


async def test_bad_token_stops_the_poller(
    harness: FakeHarness, autojump_clock: trio.testing.MockClock
) -> None:
    harness.api.fail("getUpdates", TelegramUnauthorized("Unauthorized", 401))
    send, receive = trio.open_memory_channel[RouterMsg](1)
    with receive, pytest.raises(TelegramUnauthorized):
        await harness.poll(await UpdateLedger.open(harness.ledger_path), send)


async def test_damaged_ledger_is_set_aside(
    harness: FakeHarness, autojump_clock: trio.testing.MockClock
) -> None:
    harness.ledger_path.write_text("{not json")
    harness.api.push_text("fine")
    await harness.run(stop_after=1)
    assert texts(harness.received) == ["fine"]
    assert list(harness.ledger_path.parent.glob("updates.json.corrupt-*"))


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


async def poll_bodies(
    tmp_path: Path, bodies: list[bytes], *, stop_after: int
) -> tuple[Harness, int]:
    """Poll through the real HTTP adapter against a server that answers getUpdates with
    `bodies`, one each, then holds every poll as Telegram does; the harness, and how many
    polls were made."""
    polls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal polls
        polls += 1
        if not bodies:  # nothing new: a long poll, as Telegram holds it
            await trio.sleep(json.loads(request.content)["timeout"])
            return httpx.Response(200, content=b'{"ok":true,"result":[]}')
        return httpx.Response(200, content=bodies.pop(0))

    async with open_telegram_api("1:x", transport=httpx.MockTransport(handler)) as api:
        harness = Harness(api, tmp_path / "updates.json")
        await harness.run(stop_after=stop_after)
    return harness, polls


async def test_json_nested_past_the_decoder_is_logged_skipped_and_polling_goes_on(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Bodies 100,000 levels deep, through the real HTTP adapter: msgspec's decoder gives up
    near a thousand levels, and that once crash-looped the poller into an escalation."""
    text = {"message_id": 1, "date": 0, "chat": {"id": 7, "type": "private"}, "text": "still here"}
    bodies = [
        b'{"ok":true,"result":[' + nested(100_000) + b"]}",
        b'{"ok":true,"result":[{"update_id":5,"message":{"message_id":'
        + nested(100_000)
        + b'}},{"update_id":6,"message":'
        + msgspec.json.encode(text)
        + b"}]}",
    ]

    harness, _ = await poll_bodies(tmp_path, bodies, stop_after=1)
    assert texts(harness.received) == ["still here"]
    skipped = [t for t in harness.traces if t.outcome == "skipped"]
    assert [(t.update_id, t.malformed) for t in skipped] == [(None, True), (5, True)]
    assert "update 5 that does not decode" in caplog.text
    ledger = await UpdateLedger.open(tmp_path / "updates.json")
    assert ledger.seen(5)
    assert ledger.seen(6)


async def test_a_lone_surrogate_or_a_byte_that_is_not_utf8_is_mended_not_retried_for_ever(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """msgspec refuses a whole body for one lone ``\\ud800`` escape (a client with broken
    UTF-16 can send it) or one byte that is not UTF-8: the same getUpdates then failed for
    ever, and no chat got another message. Now such text reads as U+FFFD and the rest runs."""

    def update(update_id: int, text: bytes) -> bytes:
        return (
            b'{"update_id":%d,"message":{"message_id":%d,"date":0,'
            b'"chat":{"id":7,"type":"private"},"text":"%s"}}' % (update_id, update_id, text)
        )

    bodies = [
        b'{"ok":true,"result":['
        + update(5, rb"bad \ud800 half, kept \ud83d\ude00 pair, escaped \\ud800")
        + b","
        + update(6, b"raw \xff byte")
        + b"]}"
    ]
    harness, polls = await poll_bodies(tmp_path, bodies, stop_after=2)
    assert texts(harness.received) == [
        "bad \ufffd half, kept \U0001f600 pair, escaped \\ud800",
        "raw \ufffd byte",
    ]
    assert polls <= 3


async def test_a_strangers_text_is_not_traced(
    harness: FakeHarness, autojump_clock: trio.testing.MockClock
) -> None:
    harness.allowed_users = (1,)
    harness.api.push_text("my secret plans", chat_id=666, user_id=666)
    harness.api.push_text("allowed words", chat_id=1, user_id=1)
    await harness.run(stop_after=2)
    stranger, allowed = [t for t in harness.traces if t.event == "update"]
    assert (stranger.user_id, stranger.outcome, stranger.preview) == (666, "stranger", None)
    assert stranger.detail == "15 characters"
    assert "secret" not in msgspec.json.encode(stranger).decode()
    assert allowed.preview == "allowed words"


async def test_a_full_disk_does_not_stop_polling(
    harness: FakeHarness,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def full(path: Path, data: bytes, *, durable: bool = True) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(disk, "write_atomically", full)
    for number in range(3):
        harness.api.push_text(f"message {number}")
    await harness.run(stop_after=3)
    assert texts(harness.received) == ["message 0", "message 1", "message 2"]
    failures = [r for r in caplog.records if "cannot save the update ledger" in r.getMessage()]
    assert len(failures) == 1  # at once, then at most once a minute
    assert "No space left on device" in failures[0].getMessage()


async def test_an_update_is_confirmed_only_once_its_chat_took_it(
    harness: FakeHarness, autojump_clock: trio.testing.MockClock
) -> None:
    """The SIGKILL window of issue 13: until the chat has the message on disk, neither the
    ledger nor the offset says it was handled, so Telegram still holds it."""
    update_id = harness.api.push_text("keep me")
    ledger = await UpdateLedger.open(harness.ledger_path)
    send, receive = trio.open_memory_channel[RouterMsg](16)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(harness.poll, ledger, send)
        message = await receive.receive()
        await trio.sleep(5)  # the chat is slow to save: the poller waits, polls nothing
        assert harness.api.offsets == [None]
        assert not harness.ledger_path.exists()
        assert message.handled is not None
        mark_handled(message)
        await harness.api.wait_for(lambda api: len(api.offsets) > 1)
        assert harness.api.offsets[-1] == update_id + 1
        assert json.loads(harness.ledger_path.read_bytes())["recent"] == [update_id]
        nursery.cancel_scope.cancel()


async def test_a_kill_before_the_chat_took_an_update_leaves_it_to_telegram(
    harness: FakeHarness, autojump_clock: trio.testing.MockClock
) -> None:
    harness.takes = False
    delivered_id = harness.api.push_text("not saved yet")
    delivered = list(harness.api.pending)
    await harness.run(stop_after=1)  # dies with the update handed off, not taken
    assert harness.api.offsets == [None]
    harness.api.pending = []
    harness.api.redeliver(delivered)
    restarted = Harness(harness.api, harness.ledger_path)
    await restarted.run(stop_after=1)
    assert texts(restarted.received) == ["not saved yet"]
    assert not [t for t in restarted.traces if t.outcome == "duplicate"]
    assert (await UpdateLedger.open(harness.ledger_path)).seen(delivered_id)


async def test_a_chat_that_never_takes_an_update_holds_polling_for_a_bounded_time(
    harness: FakeHarness,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    harness.takes = False
    update_id = harness.api.push_text("stuck chat")
    ledger = await UpdateLedger.open(harness.ledger_path)
    send, receive = trio.open_memory_channel[RouterMsg](16)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(harness.poll, ledger, send)
        await receive.receive()
        started = trio.current_time()
        await harness.api.wait_for(lambda api: len(api.offsets) > 1)
        assert trio.current_time() - started == pytest.approx(telegram_poller.HANDLED_WAIT)
        assert harness.api.offsets[-1] == update_id + 1
        assert ledger.seen(update_id)
        assert "confirming the batch anyway" in caplog.text
        nursery.cancel_scope.cancel()
