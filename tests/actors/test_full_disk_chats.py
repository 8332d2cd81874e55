"""A full disk under the chats: session writes fail, the chats serve on from memory and have
the sender say once that they cannot save (router + chats + the real pool on in-memory
Codex)."""

from __future__ import annotations

import errno
import logging
from typing import TYPE_CHECKING

import trio
import trio.testing

from orchestrator import disk
from orchestrator.messages import DiskRefused
from tests.actors.test_chats import ALICE, running_bot

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


async def test_session_writes_failing_do_not_crash_the_chat(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def full(path: Path, data: bytes, *, durable: bool = True, swap: bool = False) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(disk, "write_atomically", full)
    caplog.set_level(logging.ERROR)
    async with running_bot(tmp_path) as bot:
        for text in ("first", "second", "third"):
            await bot.say(ALICE, text)
            await bot.wait_reply(ALICE, f"FAKE: {text}")
        await bot.say(ALICE, "/status")
        await bot.wait(lambda: len(bot.replies(ALICE)) >= 4)
    assert bot.stats.resets == 0  # no "session reset": the chat never crashed
    # the chat hands the sender the refusal once (the sender words it, with a reply's
    # outbox entry the disk refuses too: tests/actors/test_telegram_outbox.py)
    refused = [message for message in bot.sent if isinstance(message, DiskRefused)]
    assert refused == [DiskRefused(chat_id=ALICE, thread_id=None)]
    lines = [r.getMessage() for r in caplog.records if "cannot save sessions" in r.getMessage()]
    assert len(lines) == 1
    assert "No space left on device" in lines[0]


async def test_fsyncs_failing_behind_hold_nothing_and_are_logged_once(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The writes go through and the fsyncs behind them fail (a disk that errors on flush):
    every message is still answered and taken (the poller is not held), and the failure is
    logged once, not once per message."""

    def failing(paths: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(disk, "sync", failing)
    caplog.set_level(logging.ERROR)
    async with running_bot(tmp_path) as bot:
        for text in ("first", "second", "third"):
            handled = trio.Event()
            await bot.say(ALICE, text, handled=handled)
            await handled.wait()
            await bot.wait_reply(ALICE, f"FAKE: {text}")
    assert bot.stats.resets == 0
    lines = [r.getMessage() for r in caplog.records if "durably" in r.getMessage()]
    assert len(lines) == 1
    assert "Input/output error" in lines[0]
    assert not [r for r in caplog.records if "cannot save sessions" in r.getMessage()]
