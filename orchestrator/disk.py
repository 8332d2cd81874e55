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
- `DiskTrouble` reports a failing kind of write (a full, read-only or over-quota disk) at most
  once a minute instead of crashing or flooding the log: the caller keeps serving from memory.
- `roll_over` keeps an append-only log file below a size (traces, worker logs).

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
import errno
import itertools
import logging
import os
import sys
from typing import TYPE_CHECKING, Final, TypeVar, TypeVarTuple, Unpack, final

import trio

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = [
    "DISK_TROUBLE_LOG_INTERVAL",
    "DiskTrouble",
    "append",
    "roll_over",
    "run_sync",
    "set_aside",
    "write_atomically",
]

logger: Final = logging.getLogger(__name__)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

CORRUPT_STAMP: Final = "%Y%m%dT%H%M%S.%fZ"
"""UTC time in a set-aside name: sorts by time; microseconds keep two set-asides apart."""

_WRITE_NUMBERS: Final = itertools.count()

DISK_TROUBLE_LOG_INTERVAL: Final = 60.0
"""Seconds between two log lines about the same disk trouble: once a minute, not per write."""

FULL_DISK_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
"""What "the disk cannot take it" looks like: full, over quota, read-only."""


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
    two writers never rename each other's file away. Creates the folder if needed. When the
    disk refuses (full, read-only), the temporary file is removed and the `OSError` raised.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}-{next(_WRITE_NUMBERS)}")
    try:
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except OSError:
        temporary.unlink(missing_ok=True)  # a full disk must not fill up with halves
        raise
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


def roll_over(path: Path, max_bytes: int, keep: int) -> bool:
    """Rotate `path` when it has reached `max_bytes` (blocking): ``name`` becomes
    ``name.1``, ``name.1`` becomes ``name.2`` and so on; the oldest beyond `keep` rolled
    files is deleted. The next append starts a fresh file. Returns whether it rotated.
    """
    try:
        if path.stat().st_size < max_bytes:
            return False
    except FileNotFoundError:
        return False
    path.with_name(f"{path.name}.{keep}").unlink(missing_ok=True)
    for number in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{number}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{number + 1}"))
    if keep > 0:
        path.replace(path.with_name(f"{path.name}.1"))
    else:
        path.unlink()
    return True


@final
class DiskTrouble:
    """Rate-limited reporting of one kind of failing write: the first failure is logged at
    once, later ones at most every `DISK_TROUBLE_LOG_INTERVAL` seconds with how many were
    not logged, and a recovery is logged once."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failures = 0
        self._unlogged = 0
        self._last_logged: float | None = None

    def failed(self, error: OSError) -> None:
        self.failures += 1
        now = trio.current_time()
        if self._last_logged is not None and now - self._last_logged < DISK_TROUBLE_LOG_INTERVAL:
            self._unlogged += 1
            return
        more = f" ({self._unlogged} more failure(s) since the last line)" if self._unlogged else ""
        logger.error("cannot save %s: %s%s", self.what, _describe(error), more)
        self._last_logged = now
        self._unlogged = 0

    def succeeded(self) -> None:
        if self._last_logged is not None:
            logger.warning("saving %s works again", self.what)
            self._last_logged = None
            self._unlogged = 0

    @property
    def failing(self) -> bool:
        return self._last_logged is not None


def _describe(error: OSError) -> str:
    if error.errno in FULL_DISK_ERRNOS:
        return f"{os.strerror(error.errno or 0)} ({error.filename or 'disk'})"
    return str(error)
