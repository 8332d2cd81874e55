"""State is private and never followed: 0600 files in 0700 folders whatever the umask; no
symlink, folder or FIFO where a state file should be is followed or waited on; a queue the
bot did not write is not restored."""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

import msgspec
import pytest
import trio

from orchestrator import disk
from orchestrator.messages import SessionKey
from orchestrator.session_store import SessionState, SessionStore
from orchestrator.update_ledger import UpdateLedger

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

KEY = SessionKey(chat_id=7, user_id=7)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.mark.usefixtures("loose_umask")
def test_files_are_0600_in_0700_folders_whatever_the_umask(tmp_path: Path) -> None:
    disk.write_atomically(tmp_path / "state" / "sessions" / "a.json", b"{}")
    disk.append(tmp_path / "state" / "traces" / "day.jsonl", b"{}\n")
    assert mode(tmp_path / "state" / "sessions") == 0o700
    assert mode(tmp_path / "state" / "sessions" / "a.json") == 0o600
    assert mode(tmp_path / "state" / "traces" / "day.jsonl") == 0o600


def test_read_regular_refuses_a_fifo_a_symlink_and_a_folder_without_waiting(
    tmp_path: Path,
) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "target").write_text("secret")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    (tmp_path / "folder").mkdir()
    for name in ("fifo", "link", "folder"):
        with pytest.raises(disk.NotARegularFile):
            disk.read_regular(tmp_path / name)


def test_append_sets_aside_a_fifo_or_symlink_and_writes_a_file(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("")
    os.mkfifo(tmp_path / "fifo.jsonl")
    (tmp_path / "link.jsonl").symlink_to(outside)
    for name in ("fifo.jsonl", "link.jsonl"):
        disk.append(tmp_path / name, b"line\n")
        assert (tmp_path / name).read_bytes() == b"line\n"
        assert not (tmp_path / name).is_symlink()
        assert len(list(tmp_path.glob(f"{name}.corrupt-*"))) == 1
    assert outside.read_text() == ""


def test_write_refuses_a_symlinked_folder(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "sessions").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(disk.NotARegularFile):
        disk.write_atomically(tmp_path / "sessions" / "a.json", b"{}")
    assert list((tmp_path / "elsewhere").iterdir()) == []


@pytest.mark.parametrize("kind", ["fifo", "symlink", "folder"])
async def test_a_session_path_that_is_no_file_is_set_aside_and_reported(
    tmp_path: Path, kind: str
) -> None:
    store = SessionStore(tmp_path / "state" / "sessions")
    path = store.path_for(KEY)
    path.parent.mkdir(parents=True)
    target = tmp_path / "planted.json"
    target.write_bytes(msgspec.json.encode(SessionState(mode="single", profile="p")))
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        path.symlink_to(target)
    else:
        path.mkdir()
    with trio.fail_after(5):
        assert await store.keys_with_queue() == []
        loaded = await store.load(KEY)
    assert loaded.state is None
    assert loaded.corrupt_moved_to is not None
    assert not os.path.lexists(path)
    await store.save(KEY, SessionState(mode="single", profile="p"))
    assert stat.S_ISREG(os.lstat(path).st_mode)


async def test_a_queue_the_bot_did_not_write_is_not_restored(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "state" / "sessions")
    await store.save(KEY, SessionState(mode="single", profile="p", queue=("ours",)))
    assert await store.keys_with_queue() == [KEY]
    assert (await store.load(KEY)).state == SessionState(
        mode="single", profile="p", queue=("ours",)
    )
    assert mode(tmp_path / "state" / "session.key") == 0o600
    planted = SessionState(mode="single", profile="p", queue=("rm -rf ~",))
    store.path_for(KEY).write_bytes(msgspec.json.encode(planted))
    assert await store.keys_with_queue() == []
    loaded = await store.load(KEY)
    assert loaded.dropped_queue == 1
    assert loaded.state is not None
    assert loaded.state.queue == ()
    # A MAC copied from another session does not fit this one's key.
    other = SessionKey(chat_id=8, user_id=8)
    await store.save(other, SessionState(mode="single", profile="p", queue=("rm -rf ~",)))
    store.path_for(KEY).write_bytes(store.path_for(other).read_bytes())
    assert (await store.load(KEY)).dropped_queue == 1


async def test_a_ledger_that_is_a_fifo_is_set_aside(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "updates.json")
    with trio.fail_after(5):
        ledger = await UpdateLedger.open(tmp_path / "updates.json")
    assert ledger.high_water is None
    assert list(tmp_path.glob("updates.json.corrupt-*"))


@pytest.mark.usefixtures("loose_umask")
def test_secure_state_dir_tightens_and_sets_aside(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "sessions").mkdir(parents=True)
    (state / "sessions" / "1-1.json").write_text("{}")
    (state / "sessions" / "2-2.json").symlink_to(tmp_path / "x")
    (tmp_path / "elsewhere").mkdir()
    (state / "traces").symlink_to(tmp_path / "elsewhere")
    os.mkfifo(state / "updates.json")
    (state / "logs").mkdir()
    (state / "logs" / "codex-worker-0.log").symlink_to(tmp_path / "bashrc")
    os.chmod(state, 0o755)
    reports = disk.secure_state_dir(state)
    assert len(reports) == 4, reports
    assert not os.path.lexists(state / "logs" / "codex-worker-0.log")
    assert mode(state) == 0o700
    assert mode(state / "sessions") == 0o700
    assert mode(state / "sessions" / "1-1.json") == 0o600
    assert not os.path.lexists(state / "traces")
    assert not os.path.lexists(state / "updates.json")
    assert disk.secure_state_dir(state) == []  # what was set aside stays aside
