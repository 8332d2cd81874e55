"""Session files: atomic round trip, damage set aside, newer formats refused."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import trio
import trio.testing

from orchestrator import disk
from orchestrator.messages import SessionKey
from orchestrator.session_store import SessionCounters, SessionState, SessionStore

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


async def test_round_trip_keeps_everything(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions")
    key = SessionKey(chat_id=-100123, user_id=42, thread_id=7)
    state = SessionState(
        mode="single",
        profile="work",
        developer_thread_id="t-1",
        developer_worker_id=1,
        summary="asked for tests",
        queue=("one", "two"),
        counters=SessionCounters(runs=3),
    )
    await store.save(key, state)
    assert store.path_for(key).name == "-100123-42-t7.json"
    loaded = await store.load(key)
    assert loaded.state == state
    assert loaded.corrupt_moved_to is None
    assert list((tmp_path / "sessions").iterdir()) == [store.path_for(key)]


async def test_missing_file_is_a_fresh_session(tmp_path: Path) -> None:
    loaded = await SessionStore(tmp_path).load(SessionKey(chat_id=1, user_id=1))
    assert loaded.state is None
    assert loaded.corrupt_moved_to is None


async def test_damaged_file_is_set_aside(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    key = SessionKey(chat_id=5, user_id=6)
    store.path_for(key).write_text('{"mode": "plan", "profile": ')
    loaded = await store.load(key)
    assert loaded.state is None
    assert loaded.corrupt_moved_to is not None
    assert loaded.corrupt_moved_to.name.startswith("5-6.json.corrupt-")
    assert loaded.corrupt_moved_to.read_text() == '{"mode": "plan", "profile": '
    assert not store.path_for(key).exists()
    # The next load starts clean instead of failing again.
    assert (await store.load(key)).corrupt_moved_to is None


async def test_wrong_types_count_as_damage(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    key = SessionKey(chat_id=5, user_id=6)
    store.path_for(key).write_text('{"mode": "sideways", "profile": "x"}')
    assert (await store.load(key)).corrupt_moved_to is not None


async def test_newer_format_is_set_aside(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    key = SessionKey(chat_id=5, user_id=6)
    store.path_for(key).write_text('{"version": 99, "mode": "plan", "profile": "x"}')
    assert (await store.load(key)).corrupt_moved_to is not None


async def test_concurrent_saves_of_different_keys(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    async with trio.open_nursery() as nursery:
        for n in range(20):
            nursery.start_soon(
                store.save, SessionKey(chat_id=n, user_id=n), SessionState(mode="plan", profile="p")
            )
    assert len(list(tmp_path.glob("*.json"))) == 20
    assert not list(tmp_path.glob("*.tmp-*"))


async def test_concurrent_saves_of_one_key_keep_the_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run finishing while messages arrive: tasks of one chat save at once.

    The first write (in a worker thread) is held until all 29 later saves wait behind it: a
    write that happened to finish between two of them made a third write and the test flaky.
    """
    writes: list[bytes] = []
    write = disk.write_atomically
    all_queued = threading.Event()

    def counting_write(
        path: Path, data: bytes, *, durable: bool = True, swap: bool = False
    ) -> None:
        writes.append(data)
        if not all_queued.wait(timeout=30):
            raise AssertionError("the saves never all queued")
        write(path, data, durable=durable, swap=swap)

    monkeypatch.setattr(disk, "write_atomically", counting_write)
    store = SessionStore(tmp_path)
    key = SessionKey(chat_id=7, user_id=7)
    async with trio.open_nursery() as nursery:
        for n in range(30):
            state = SessionState(mode="plan", profile="p", counters=SessionCounters(runs=n))
            nursery.start_soon(store.save, key, state)
            await trio.testing.wait_all_tasks_blocked()  # each queued before the next
        all_queued.set()
    loaded = await store.load(key)
    assert loaded.state is not None
    assert loaded.state.counters.runs == 29
    assert not list(tmp_path.glob("*.tmp-*"))
    assert not store._keys  # nothing kept for an idle key
    assert len(writes) == 2  # the first, then one with the newest of the 29 that piled up


async def test_a_key_without_a_file_is_not_looked_for_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder is listed once; after that a new chat's first message costs no thread hop
    (bench/overhead.py), and what this store saves is found again."""
    old, new = SessionKey(chat_id=1, user_id=1), SessionKey(chat_id=2, user_id=2)
    before = SessionStore(tmp_path / "sessions")
    await before.save(old, SessionState(mode="plan", profile="default", summary="kept"))
    store = SessionStore(tmp_path / "sessions")
    listings = []
    original = disk.run_sync

    async def counted(function, *args):
        listings.append(getattr(function, "func", function).__name__)
        return await original(function, *args)

    monkeypatch.setattr(disk, "run_sync", counted)
    assert (await store.load(new)).state is None
    assert (await store.load(SessionKey(chat_id=3, user_id=3))).state is None
    loaded = (await store.load(old)).state
    assert loaded is not None
    assert loaded.summary == "kept"
    assert listings == ["_names", "_load_or_create_key", "_load_blocking"]
    await store.save(new, SessionState(mode="single", profile="default"))
    again = (await store.load(new)).state
    assert again is not None
    assert again.mode == "single"


async def test_a_save_without_fsync_is_written_on_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chat's saves (no fsync: it syncs behind) are on every message's path: no hop to a
    worker thread while the disk is fast (`disk.InlineWrites`); a durable save keeps its
    thread, as its fsyncs may take long."""
    store = SessionStore(tmp_path / "sessions")
    key = SessionKey(chat_id=4, user_id=4)
    await store.save(key, SessionState(mode="plan", profile="default"))  # makes the MAC key
    hops: list[str] = []
    original = disk.run_sync

    async def counted(function, *args):
        hops.append(getattr(function, "func", function).__name__)
        return await original(function, *args)

    monkeypatch.setattr(disk, "run_sync", counted)
    await store.save(key, SessionState(mode="single", profile="default"), durable=False)
    assert hops == []
    loaded = (await store.load(key)).state
    assert loaded is not None
    assert loaded.mode == "single"
    await store.save(key, SessionState(mode="plan", profile="default"))
    assert hops == ["_names", "_load_blocking", "write_atomically"]
