"""Blocking file I/O, in one place: the thread hop, atomic writes and the set-aside of damage.

Everything the bot keeps on disk goes through here: session files (`SessionStore`), the
update ledger (`UpdateLedger`), trace lines (the tracer) and the chat's prompt files.

- `run_sync` runs a blocking function off the event loop, in one of trio's worker threads,
  so a slow disk never stalls every chat.
- `write_atomically` replaces a file so that a crash or a power loss leaves the old or the
  new content, never half of one (temp file + fsync + rename + fsync of the folder).
- `set_aside` renames a damaged file to ``<name>.corrupt-<UTC time>``: damage is kept for a
  look and reported by the caller, never silently dropped and never a crash loop.
- `append` adds bytes at the end of a file (trace lines).

The last three block: call them through `run_sync`.

Why `run_sync` decides by itself whether to use a thread, instead of a flag: a worker thread
is wrong in exactly one case, a run on a virtual clock (tests under ``autojump_clock``). While
the thread works every task looks blocked, so the clock jumps virtual time forward and
timeouts fire that never would on the real clock. That is a fact of the current `trio.run`,
not a setting: the policy is read from the run's clock, once per call, and nothing has to be
passed from the CLI through the root to every actor that touches the disk (it was, as an
``offload`` switch implemented four times). In production the clock is trio's own, so I/O
always runs in a thread; no configuration can get that wrong.
"""

from __future__ import annotations

import datetime
import itertools
import os
import sys
from typing import TYPE_CHECKING, Final, TypeVar, TypeVarTuple, Unpack

import trio

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["append", "run_sync", "set_aside", "write_atomically"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

CORRUPT_STAMP: Final = "%Y%m%dT%H%M%S.%fZ"
"""UTC time in a set-aside name: sorts by time; microseconds keep two set-asides apart."""

_WRITE_NUMBERS: Final = itertools.count()


async def run_sync(function: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
    """Run the blocking `function(*args)` in a worker thread and return its result.

    Under a virtual clock (tests) it runs inline instead, as a plain call (no checkpoint);
    see the module docstring. Like `trio.to_thread.run_sync`, cancellation waits for the
    thread to finish: file I/O is short.
    """
    if _time_is_virtual():
        return function(*args)
    return await trio.to_thread.run_sync(function, *args)


def _time_is_virtual() -> bool:
    """Whether this run's clock is a `trio.testing.MockClock`."""
    if "trio.testing" not in sys.modules:
        return False  # nothing imported the test clock, so this run cannot be using it
    from trio.testing import MockClock  # already imported, so free

    return isinstance(trio.lowlevel.current_clock(), MockClock)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically and durably (blocking).

    Writes ``<path>.tmp-<pid>-<n>``, fsyncs it, renames it over `path`, then fsyncs the folder
    so the rename itself survives a power loss. The temporary name is unique per write, so
    two writers never rename each other's file away. Creates the folder if needed.
    """
    # Plain os calls: each call in a worker thread takes the GIL back from the event loop,
    # so this does no more of them than it must (bench/scale.py).
    temporary = f"{path}.tmp-{os.getpid()}-{next(_WRITE_NUMBERS)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    try:
        handle = os.open(temporary, flags, 0o666)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(temporary, flags, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(handle, view) :]
        os.fsync(handle)
    finally:
        os.close(handle)
    os.replace(temporary, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def set_aside(path: Path) -> Path:
    """Rename the damaged file `path` to ``<name>.corrupt-<UTC time>`` (blocking).

    Returns:
        Where the file went, for the caller's report.
    """
    stamp = datetime.datetime.now(datetime.UTC).strftime(CORRUPT_STAMP)
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    path.replace(target)
    return target


def append(path: Path, data: bytes) -> None:
    """Append `data` to `path`, creating the file and its folder if needed (blocking)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as handle:
        handle.write(data)
