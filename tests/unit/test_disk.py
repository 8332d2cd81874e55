"""The blocking-I/O seam: atomic writes, set-aside of damage, and where `run_sync` runs."""

from __future__ import annotations

import errno
import itertools
import logging
import os
import re
import signal
import stat
import threading
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from orchestrator import disk, stops

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


def test_write_atomically_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "deeper" / "state.json"
    disk.write_atomically(target, b"old")
    disk.write_atomically(target, b"new")
    assert target.read_bytes() == b"new"
    assert [path.name for path in target.parent.iterdir()] == ["state.json"]


def test_set_aside_keeps_the_damage_under_a_timestamped_name(tmp_path: Path) -> None:
    damaged = tmp_path / "updates.json"
    damaged.write_bytes(b"{not json")
    moved = disk.set_aside(damaged)
    assert not damaged.exists()
    assert moved.read_bytes() == b"{not json"
    assert re.fullmatch(r"updates\.json\.corrupt-\d{8}T\d{6}\.\d{6}Z", moved.name)


def test_append_creates_the_folder_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "traces" / "2026-11-25.jsonl"
    disk.append(path, b"one\n")
    disk.append(path, b"two\n")
    assert path.read_bytes() == b"one\ntwo\n"


async def test_run_sync_uses_a_worker_thread_on_the_real_clock() -> None:
    loop_thread = threading.get_ident()
    assert await disk.run_sync(threading.get_ident) != loop_thread


async def test_run_sync_runs_inline_on_a_virtual_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A thread would let the autojump clock skip ahead while the disk works."""
    loop_thread = threading.get_ident()
    before = trio.current_time()
    assert await disk.run_sync(threading.get_ident) == loop_thread
    assert trio.current_time() == before


def test_roll_over_shifts_the_files_and_keeps_a_few(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    assert not disk.roll_over(log, 10, 2)  # absent: nothing to do
    for generation in range(4):
        log.write_bytes(b"g%d-" % generation + b"x" * 10)
        assert disk.roll_over(log, 10, 2)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["worker.log.1", "worker.log.2"]
    assert (tmp_path / "worker.log.1").read_bytes().startswith(b"g3-")
    assert (tmp_path / "worker.log.2").read_bytes().startswith(b"g2-")
    log.write_bytes(b"small")
    assert not disk.roll_over(log, 10, 2)
    assert log.read_bytes() == b"small"


def test_a_write_that_need_not_survive_a_power_loss_skips_the_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr("orchestrator.disk.os.fsync", synced.append)
    target = tmp_path / "state" / "updates.json"
    disk.write_atomically(target, b"quick", durable=False)
    assert target.read_bytes() == b"quick"
    assert synced == []
    disk.write_atomically(target, b"durable")
    assert target.read_bytes() == b"durable"
    assert len(synced) == 2  # the file, then its folder
    assert [p.name for p in target.parent.iterdir()] == ["updates.json"]


def test_a_write_makes_its_private_folder_and_refuses_a_link_or_a_file_there(
    tmp_path: Path,
) -> None:
    fresh = tmp_path / "a" / "b" / "state.json"
    disk.write_atomically(fresh, b"{}")
    assert stat.S_IMODE(os.lstat(fresh.parent).st_mode) == disk.FOLDER_MODE
    disk.write_atomically(fresh, b"[]")  # the folder is there: taken as it is
    assert fresh.read_bytes() == b"[]"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "linked").symlink_to(elsewhere)
    (tmp_path / "plain").write_text("not a folder")
    for folder in (tmp_path / "linked", tmp_path / "plain"):
        with pytest.raises(disk.NotARegularFile):
            disk.write_atomically(folder / "state.json", b"{}")
    assert list(elsewhere.iterdir()) == []  # nothing written through the link


def test_sync_fsyncs_each_file_still_there_then_each_folder_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Write now, sync behind: the files first, in order, then their folders (the renames);
    a file delivered and removed meanwhile, or something planted in its place, is passed."""
    outbox, sessions = tmp_path / "outbox", tmp_path / "sessions"
    reply, delivered, session = outbox / "1.json", outbox / "2.json", sessions / "7-7.json"
    for path in (reply, delivered, session):
        disk.write_atomically(path, b"{}", durable=False)
    delivered.unlink()
    planted = outbox / "3.json"
    os.mkfifo(planted)
    synced: list[int] = []
    monkeypatch.setattr("orchestrator.disk.os.fsync", lambda fd: synced.append(os.fstat(fd).st_ino))
    disk.sync([reply, delivered, planted, session])
    inodes = [os.stat(path).st_ino for path in (reply, session, outbox, sessions)]
    assert synced == inodes


async def test_sync_batches_gather_what_the_chats_ask_while_a_batch_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit: syncs asked for while one runs go to disk together, in one job, after
    it; a batch the disk refused fails for everyone in it, and only for them."""
    batches: list[list[str]] = []
    first_runs, release = threading.Event(), threading.Event()

    def recording(paths: list[Path]) -> None:
        batches.append([path.name for path in paths])
        if len(batches) == 1:
            first_runs.set()
            release.wait(10)
        if len(batches) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(disk, "sync", recording)
    syncs = disk.SyncBatches()
    refused: list[str] = []

    async def sync(name: str) -> None:
        try:
            await syncs.sync([tmp_path / name])
        except OSError:
            refused.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sync, "a")
        await trio.to_thread.run_sync(first_runs.wait, 10)
        for name in ("b", "c", "b"):
            nursery.start_soon(sync, name)
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    await sync("d")
    assert batches == [["a"], ["b", "c"], ["d"]]
    assert refused == ["b", "c", "b"]


async def test_inline_writes_run_on_the_event_loop_while_the_disk_is_fast() -> None:
    """On the real clock too: no hop to a worker thread (docs/performance.md, session 29)."""
    writes = disk.InlineWrites("session files")
    assert await writes.run(threading.get_ident) == threading.get_ident()


async def test_a_slow_inline_write_sends_its_kind_to_worker_threads_for_a_while(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """One write over the limit: the next ones go through `run_sync` (logged once), and after
    the pause they are back on the loop."""
    ticks = itertools.chain([0.0, 0.05], itertools.repeat(1.0))  # the first write takes 50 ms
    writes = disk.InlineWrites("session files in /state/sessions", timer=lambda: next(ticks))
    threaded: list[str] = []

    async def in_a_thread(function: Callable[[str], str], argument: str) -> str:
        threaded.append(argument)
        return function(argument)

    monkeypatch.setattr(disk, "run_sync", in_a_thread)
    assert await writes.run(str.upper, "first") == "FIRST"
    assert await writes.run(str.upper, "second") == "SECOND"
    await trio.sleep(disk.INLINE_WRITE_PAUSE - 1)
    assert await writes.run(str.upper, "third") == "THIRD"
    await trio.sleep(1)
    assert writes.inline
    assert await writes.run(str.upper, "fourth") == "FOURTH"
    assert threaded == ["second", "third"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "writing session files in /state/sessions took 50 ms, while every chat waited; they "
        "are written in worker threads for the next 5 minutes"
    ]


@pytest.fixture
def counting_continues() -> Iterator[None]:
    """`stops.watch` for one test, the handler before it restored afterwards."""
    before = signal.getsignal(signal.SIGCONT)
    stops.watch()
    try:
        yield
    finally:
        signal.signal(signal.SIGCONT, before)


async def test_a_write_the_bot_was_stopped_in_says_nothing_about_the_disk(
    caplog: pytest.LogCaptureFixture, counting_continues: None
) -> None:
    """Seen from outside: a Ctrl-Z during a session save logged that the write took 2504 ms
    "while every chat waited" and sent five minutes of saves to worker threads. The stop was
    the bot's, not the disk's: the continue that ended it is counted (`stops`)."""
    ticks = iter([0.0, 2.5])  # the write "took" 2.5 s: the bot was stopped in it

    def stopped_in(data: str) -> str:
        os.kill(os.getpid(), signal.SIGCONT)  # what `fg` sends
        return data

    writes = disk.InlineWrites("session files", timer=lambda: next(ticks))
    assert await writes.run(stopped_in, "saved") == "saved"
    assert writes.inline
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


async def test_an_inline_write_of_a_cancelled_caller_does_not_run() -> None:
    writes = disk.InlineWrites("session files")
    ran: list[int] = []
    with trio.CancelScope() as scope:
        scope.cancel()
        await writes.run(ran.append, 1)
    assert scope.cancelled_caught
    assert ran == []
