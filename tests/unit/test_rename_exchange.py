"""Putting a new file in an old one's place by exchanging the names (`renameat2`), and the
unsynced writes that use it."""

from __future__ import annotations

import os
import stat
import sys
from typing import TYPE_CHECKING

import pytest

from orchestrator import disk, rename_exchange

if TYPE_CHECKING:
    from pathlib import Path

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="renameat2 is Linux's")


@linux_only
def test_the_names_are_exchanged_in_one_step(tmp_path: Path) -> None:
    old, new = tmp_path / "state.json", tmp_path / "state.json.tmp"
    old.write_bytes(b"old")
    new.write_bytes(b"new")
    inode = os.lstat(new).st_ino
    assert rename_exchange.exchange(new, old)
    assert old.read_bytes() == b"new"
    assert os.lstat(old).st_ino == inode  # the new file itself, not a copy
    assert new.read_bytes() == b"old"  # for the caller to remove


def test_without_a_file_in_place_nothing_is_exchanged(tmp_path: Path) -> None:
    new = tmp_path / "state.json.tmp"
    new.write_bytes(b"new")
    assert not rename_exchange.exchange(new, tmp_path / "state.json")
    assert new.read_bytes() == b"new"
    assert not (tmp_path / "state.json").exists()


@linux_only
def test_another_refusal_is_raised_as_a_rename_s_would_be(tmp_path: Path) -> None:
    new = tmp_path / "state.json.tmp"
    new.write_bytes(b"new")
    (tmp_path / "plain").write_text("a file, not a folder")
    with pytest.raises(NotADirectoryError):
        rename_exchange.exchange(new, tmp_path / "plain" / "state.json")
    assert new.read_bytes() == b"new"


def test_where_the_call_is_missing_the_write_renames_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rename_exchange, "_renameat2", None)
    target = tmp_path / "state" / "session.json"
    disk.write_atomically(target, b"first", durable=False, swap=True)
    disk.write_atomically(target, b"second", durable=False, swap=True)
    assert target.read_bytes() == b"second"
    assert [path.name for path in target.parent.iterdir()] == ["session.json"]


def test_an_unsynced_write_without_swap_renames_over_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "outbox" / "3.sent"
    disk.write_atomically(target, b"1", durable=False)
    disk.write_atomically(target, b"2", durable=False)
    assert target.read_bytes() == b"2"
    assert [path.name for path in target.parent.iterdir()] == ["3.sent"]


@linux_only
def test_an_unsynced_write_leaves_the_old_file_to_the_sync_behind(tmp_path: Path) -> None:
    """The new content is in place at once; the old file, exchanged out, is removed by the
    next `sync` (in its worker thread), not on the way to the message."""
    target = tmp_path / "state" / "session.json"
    disk.write_atomically(target, b"first", durable=False, swap=True)  # nothing there yet: renamed
    assert [path.name for path in target.parent.iterdir()] == ["session.json"]
    disk.write_atomically(target, b"second", durable=False, swap=True)
    assert target.read_bytes() == b"second"
    (old,) = [path for path in target.parent.iterdir() if path.name != "session.json"]
    assert old.read_bytes() == b"first"
    disk.sync([target])
    assert [path.name for path in target.parent.iterdir()] == ["session.json"]
    assert stat.S_IMODE(os.lstat(target).st_mode) == disk.FILE_MODE
    disk.write_atomically(target, b"durable")  # synced: renamed over it, as ever
    assert target.read_bytes() == b"durable"
    assert [path.name for path in target.parent.iterdir()] == ["session.json"]


@linux_only
def test_old_files_do_not_pile_up_where_nothing_syncs(tmp_path: Path) -> None:
    target = tmp_path / "state" / "sessions" / "42-42.json"
    for n in range(rename_exchange.LEFT_BEHIND_LIMIT + 2):
        disk.write_atomically(target, f"{n}".encode(), durable=False, swap=True)
        assert len(list(target.parent.iterdir())) <= rename_exchange.LEFT_BEHIND_LIMIT + 1
    assert target.read_bytes() == f"{rename_exchange.LEFT_BEHIND_LIMIT + 1}".encode()
    rename_exchange.remove_left_behind()
    assert [path.name for path in target.parent.iterdir()] == ["42-42.json"]


def test_what_an_earlier_run_left_is_removed_at_start(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "sessions").mkdir(parents=True)
    (state / "outbox").mkdir()
    left = [
        state / "updates.json.tmp-1-7",
        state / "sessions" / "42-42.json.tmp-1-8",
        state / "outbox" / "3.json.tmp-1-9",
    ]
    kept = [
        state / "updates.json",
        state / "sessions" / "42-42.json",
        state / "sessions" / f"43-43.json.tmp-{os.getpid()}-1",  # this run's: being written
        state / "sessions" / "44-44.json.corrupt-20261203T000000.000000Z",
    ]
    for path in (*left, *kept):
        path.write_bytes(b"{}")
    assert disk.remove_temporaries(state) == len(left)
    assert not any(path.exists() for path in left)
    assert all(path.exists() for path in kept)


@linux_only
def test_a_folder_in_the_file_s_place_is_set_aside_not_exchanged(tmp_path: Path) -> None:
    target = tmp_path / "state" / "session.json"
    target.mkdir(parents=True)
    (target / "inside").write_text("kept")
    disk.write_atomically(target, b"{}", durable=False, swap=True)
    assert target.read_bytes() == b"{}"
    (aside,) = [p for p in target.parent.iterdir() if p.name != "session.json"]
    assert aside.name.startswith("session.json.corrupt-")
    assert (aside / "inside").read_text() == "kept"
