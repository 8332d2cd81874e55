"""The durable outbox with the sender, in virtual time: results survive long outages and
restarts, in order per chat, and a full disk costs durability, not delivery."""

from __future__ import annotations

import errno
import itertools
import logging
import os
import random
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio
import trio.testing

from actors import telegram_sender
from actors.telegram_outbox import Outbox, OutboxEntry
from actors.telegram_sender import UNSAVED_NOTICE, UNSAVED_NOTICE_INTERVAL
from orchestrator import disk
from orchestrator.errors import TelegramForbidden, TelegramTransientError
from orchestrator.messages import DiskRefused, SenderMsg, SendReply, TraceRecord
from tests.fakes.telegram_api import FakeTelegramApi

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    import pytest

HOUR = 3600.0


@asynccontextmanager
async def running_sender(
    api: FakeTelegramApi,
    folder: Path,
    traces: list[TraceRecord] | None = None,
    *,
    outbox: Outbox | None = None,
) -> AsyncIterator[trio.MemorySendChannel[SenderMsg]]:
    """The sender on `folder`'s outbox (`outbox`: one the test shares with it)."""
    pending: list[OutboxEntry] = []
    if outbox is None:
        outbox, pending = await Outbox.open(folder)
    send, receive = trio.open_memory_channel[SenderMsg](256)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: telegram_sender.run(
                receive,
                api,
                max_chunks=3,
                rng=random.Random(3),
                trace=(traces if traces is not None else []).append,
                outbox=outbox,
                pending=pending,
                task_status=task_status,
            )
        )
        with send:
            yield send


def sent(api: FakeTelegramApi, chat_id: int) -> list[str]:
    """What Telegram accepted in `chat_id`, in order (failed tries are not in it)."""
    return list(api.messages[chat_id].values())


def entries(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob("*.json"))


async def test_a_result_outlives_an_hour_of_send_failures(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Tried every 5 to 10 s (so it goes out within seconds once Telegram is back), and
    logged once a minute, not at every try."""
    api = FakeTelegramApi()
    api.fail("sendMessage", *[TelegramTransientError("Bad Gateway", 502)] * 600)
    with trio.fail_after(3 * HOUR):
        async with running_sender(api, tmp_path / "outbox") as send:
            await send.send(SendReply(chat_id=5, markdown="the result"))
            await api.wait_for(lambda a: len(a.calls_of("sendMessage")) == 2)
            assert len(entries(tmp_path / "outbox")) == 1  # on disk while Telegram fails
            await api.wait_for(lambda a: "the result" in sent(a, 5))
            assert trio.current_time() > HOUR
    assert sent(api, 5) == ["the result"]
    assert entries(tmp_path / "outbox") == []  # delivered, then forgotten
    calls = api.calls_of("sendMessage")
    gaps = [b.at - a.at for a, b in itertools.pairwise(calls)]
    assert max(gaps) <= telegram_sender.DURABLE_RETRY_BACKOFF_MAX + 1
    lines = [r.getMessage() for r in caplog.records if "Telegram" in r.getMessage()]
    minutes = int(calls[-1].at - calls[0].at) // 60
    assert len(lines) <= minutes + 3
    assert lines[0].startswith("Telegram call failed (Telegram error 502: Bad Gateway)")
    assert lines[-1].startswith("sending to Telegram works again after 600 failed attempts")


async def test_entries_of_an_earlier_run_go_first_in_order_per_chat(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    folder = tmp_path / "outbox"
    earlier, _ = await Outbox.open(folder)
    for chat_id, text in [(5, "five-1"), (6, "six-1"), (5, "five-2")]:
        await earlier.put(SendReply(chat_id=chat_id, markdown=text))
    api = FakeTelegramApi()
    with trio.fail_after(HOUR):
        async with running_sender(api, folder) as send:
            await send.send(SendReply(chat_id=5, markdown="five-3"))  # new, after a restart
            await send.send(SendReply(chat_id=6, markdown="six-2"))
            await api.wait_for(lambda a: len(sent(a, 5)) == 3 and len(sent(a, 6)) == 2)
    assert sent(api, 5) == ["five-1", "five-2", "five-3"]
    assert sent(api, 6) == ["six-1", "six-2"]
    assert entries(folder) == []
    assert (await Outbox.open(folder))[1] == []


async def test_cancelled_mid_outage_the_entry_waits_for_the_next_start(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    folder = tmp_path / "outbox"
    down = FakeTelegramApi()
    down.fail("sendMessage", *[TelegramTransientError("timed out")] * 1000)
    with trio.move_on_after(600):  # the process stops (the root's flush grace ran out)
        async with running_sender(down, folder) as send:
            await send.send(SendReply(chat_id=5, markdown="kept"))
            await trio.sleep_forever()
    assert len(entries(folder)) == 1
    up = FakeTelegramApi()
    with trio.fail_after(HOUR):
        async with running_sender(up, folder):
            await up.wait_for(lambda a: sent(a, 5) == ["kept"])
    assert entries(folder) == []
    assert sent(down, 5) == []  # every try failed


async def test_a_blocked_chat_does_not_keep_entries(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    folder = tmp_path / "outbox"
    api = FakeTelegramApi()
    api.fail("sendMessage", TelegramForbidden("Forbidden: bot was blocked by the user", 403))
    traces: list[TraceRecord] = []
    with trio.fail_after(HOUR):
        async with running_sender(api, folder, traces) as send:
            await send.send(SendReply(chat_id=5, markdown="one"))
            await send.send(SendReply(chat_id=5, markdown="two"))
            await api.wait_for(lambda a: len(a.calls_of("sendMessage")) == 1)
            await trio.testing.wait_all_tasks_blocked()
    assert entries(folder) == []
    assert any(t.event == "chat_inactive" for t in traces)


async def test_a_full_disk_still_delivers_and_says_so_once_a_minute(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def full(path: Path, data: bytes, *, durable: bool = True) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(disk, "write_atomically", full)
    api = FakeTelegramApi()
    caplog.set_level(logging.ERROR)
    with trio.fail_after(HOUR):
        async with running_sender(api, tmp_path / "outbox") as send:
            for number in range(30):  # 30 replies in 30 s: one line about it
                await send.send(SendReply(chat_id=5, markdown=f"reply {number}"))
                await trio.sleep(1)
            await trio.sleep(60)
            await send.send(SendReply(chat_id=5, markdown="a minute later"))
            await api.wait_for(lambda a: "a minute later" in sent(a, 5))
    notices = [text for text in sent(api, 5) if "cannot save" in text]
    assert len(notices) == 1  # said in the chat once, not after every reply
    assert [text for text in sent(api, 5) if "cannot save" not in text][-1] == "a minute later"
    assert len(sent(api, 5)) == 32
    lines = [r.getMessage() for r in caplog.records if "cannot save" in r.getMessage()]
    assert len(lines) == 2, lines
    assert "No space left on device" in lines[0]
    assert "(29 more failures since the last line)" in lines[1]


async def test_a_session_and_a_reply_the_disk_refuses_are_told_in_one_notice(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A full disk refuses a chat's session (`DiskRefused`, from the chat) and its reply's
    outbox entry alike: the chat hears it once, in words that cover both, and again only an
    hour later. Another chat is told on its own."""

    def full(path: Path, data: bytes, *, durable: bool = True) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(disk, "write_atomically", full)
    api = FakeTelegramApi()
    with trio.fail_after(2 * HOUR):
        async with running_sender(api, tmp_path / "outbox") as send:
            await send.send(DiskRefused(chat_id=5, thread_id=None))
            await send.send(SendReply(chat_id=5, markdown="the answer"))
            await send.send(DiskRefused(chat_id=6, thread_id=None))
            await api.wait_for(lambda a: "the answer" in sent(a, 5))
            await trio.sleep(UNSAVED_NOTICE_INTERVAL / 2)
            await send.send(DiskRefused(chat_id=5, thread_id=None))
            await send.send(SendReply(chat_id=5, markdown="half an hour later"))
            await api.wait_for(lambda a: "half an hour later" in sent(a, 5))
            await trio.sleep(UNSAVED_NOTICE_INTERVAL / 2)
            await send.send(SendReply(chat_id=5, markdown="an hour later"))
            await api.wait_for(lambda a: "an hour later" in sent(a, 5))
    assert sent(api, 5) == [
        UNSAVED_NOTICE,
        "the answer",
        "half an hour later",
        UNSAVED_NOTICE,
        "an hour later",
    ]
    assert sent(api, 6) == [UNSAVED_NOTICE]
    assert "settings and queue" in UNSAVED_NOTICE
    assert "reply still on its way" in UNSAVED_NOTICE


async def test_damaged_or_planted_entries_are_set_aside_and_the_rest_still_goes_out(
    tmp_path: Path,
) -> None:
    """An entry with a string that is not UTF-8 (msgspec raises `UnicodeDecodeError` there,
    not a `DecodeError`) and a FIFO named like an entry are set aside at start, never a crash
    or a hang; the good entry after them is kept."""
    folder = tmp_path / "outbox"
    folder.mkdir()
    (folder / "000000000001.json").write_bytes(
        b'{"version":1,"reply":{"chat_id":5,"markdown":"\xff"}}'
    )
    os.mkfifo(folder / "000000000002.json")
    (folder / "000000000003.json").write_bytes(
        b'{"version":1,"reply":{"chat_id":5,"markdown":"kept"}}'
    )
    with trio.fail_after(5):
        outbox, entries = await Outbox.open(folder)
    assert [(entry.number, entry.reply.markdown) for entry in entries] == [(3, "kept")]
    assert outbox.reserve() == 4  # numbering goes on after every name seen
    assert len(list(folder.glob("*.corrupt-*"))) == 2


async def test_a_reply_in_parts_is_not_sent_again_from_the_start_after_a_stop(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Each part Telegram took is on record beside the entry: after a stop in the middle
    of a long reply, the next start sends only the parts that had not gone out."""
    folder = tmp_path / "outbox"
    long_reply = "\n\n".join(f"part {n} " + "x" * 4000 for n in range(3))
    flaky = FakeTelegramApi()
    flaky.fail("sendMessage", *[TelegramTransientError("timed out")] * 1000)
    flaky.failures["sendMessage"].appendleft(lambda call: None)  # the first two go through
    flaky.failures["sendMessage"].appendleft(lambda call: None)
    with trio.move_on_after(600):  # the process stops with the third part still failing
        async with running_sender(flaky, folder) as send:
            await send.send(SendReply(chat_id=5, markdown=long_reply))
            await trio.sleep_forever()
    assert [text.split()[:2] for text in sent(flaky, 5)] == [["part", "0"], ["part", "1"]]
    assert (await Outbox.open(folder))[1][0].delivered == 2
    up = FakeTelegramApi()
    with trio.fail_after(HOUR):
        async with running_sender(up, folder):
            await up.wait_for(lambda a: len(sent(a, 5)) == 1)
            await trio.sleep(10)
    assert [text.split()[:2] for text in sent(up, 5)] == [["part", "2"]]
    assert sorted(path.name for path in folder.iterdir()) == []  # entry and record gone
