"""Blocking file I/O, in one place: the thread hop, atomic writes and the set-aside of damage.

Everything the bot keeps on disk goes through here: session files (`SessionStore`), the
update ledger (`UpdateLedger`), trace lines (the tracer) and the chat's prompt files.

- `run_sync` runs a blocking function off the event loop, in one of trio's worker threads,
  so a slow disk never stalls every chat.
- `InlineWrites` runs one kind of small write without fsync (a session save) on the event
  loop instead, while the disk answers at once, and sends it through `run_sync` for a while
  after one write of its kind was slow: *write on the loop, sync behind*, as Redis writes
  its append-only file (see the class for why and what it costs).
- `write_atomically` replaces a file so that a crash or a power loss leaves the old or the
  new content, never half of one (temp file + fsync + rename + fsync of the folder). With
  ``durable=False`` it skips the two fsyncs: the new content survives a crash or a SIGKILL
  (it is in the kernel's page cache), but a power loss may bring back the old one; for a
  file whose loss another file covers (the update ledger: `orchestrator.update_ledger`), or
  one that `sync` makes durable a moment later. A session saved on the event loop also
  exchanges the names instead of renaming over the old file (``swap``,
  `orchestrator.rename_exchange`: neither ext4's flush nor the freeing of the old file's
  blocks is waited for; `sync` removes the old file); until it is synced, a power loss may
  leave it empty, which its reader sets aside as damage.
- `sync` makes files written with ``durable=False`` survive a power loss after all (fsync of
  each, then of their folders): *write now, sync behind*. A message's session save must be on
  disk before Codex sees the prompt (a reply's outbox entry is written while the sender sends
  it, `actors.chat_sync`), and against a kill the page cache is on disk; their fsyncs (0.4 to
  1.4 ms each here, bench/overhead.py) then run beside Codex's work and the sendMessage
  instead of before them. What waits for them is what needs a power loss covered: the
  poller's confirmation of the update to Telegram, and the chat's next save after a reply
  (`actors.chat`).
  `SyncBatches` gathers the syncs of all chats into one job at a time (group commit).
- `set_aside` renames a damaged file to ``<name>.corrupt-<UTC time>``: damage is kept for a
  look and reported by the caller, never silently dropped and never a crash loop.
- `append` adds bytes at the end of a file (trace lines).
- `DiskTrouble` reports a failing kind of write (a full, read-only or over-quota disk) at most
  once a minute instead of crashing or flooding the log: the caller keeps serving from memory.
- `roll_over` keeps an append-only log file below a size (traces, worker logs).
- `read_regular` reads a file only if it is a regular file.
- `secure_state_dir` tightens ``state_dir`` at start; `remove_temporaries` clears what an
  earlier run's cut-short writes left there.

The others block: call them through `run_sync`.

State is private and never followed (docs/telegram-integration-runbook.md, "Threat model"):
files are created 0600 and folders 0700 (whatever the umask); no path under ``state_dir`` is
opened through a symlink (``O_NOFOLLOW``, and ``lstat`` of the folder), and nothing is opened
so that it could block (``O_NONBLOCK``: a FIFO planted where a file should be would hang the
open or the read for ever). A symlink, folder or FIFO where a file should be raises
`NotARegularFile`, which the owner of the file handles like damage: set aside and reported.

Why `run_sync` decides by itself whether to use a thread, instead of a flag: a worker thread
is wrong in exactly one case, a run on a virtual clock (tests under ``autojump_clock``). While
the thread works every task looks blocked, so the clock jumps virtual time forward and
timeouts fire that never would on the real clock. That is a fact of the current `trio.run`,
not a setting: the policy is read from the run's clock, once per call, and nothing has to be
passed from the CLI through the root to every actor that touches the disk (it was, as an
``offload`` switch implemented four times). In production the clock is trio's own, so I/O
through `run_sync` always runs in a thread; no configuration can get that wrong.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import itertools
import logging
import math
import os
import re
import stat
import sys
import time
from typing import TYPE_CHECKING, Final, TypeVar, TypeVarTuple, Unpack, final

import msgspec
import trio

from orchestrator import rename_exchange, stops, uncontended
from orchestrator.words import plural

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

__all__ = [
    "DAMAGED",
    "DISK_TROUBLE_LOG_INTERVAL",
    "FILE_MODE",
    "FOLDER_MODE",
    "NO_FOLLOW_READ",
    "PRIVATE_STATE",
    "DiskTrouble",
    "InlineWrites",
    "NotARegularFile",
    "SyncBatches",
    "append",
    "read_operator_file",
    "read_regular",
    "remove_temporaries",
    "roll_over",
    "run_sync",
    "secure_state_dir",
    "set_aside",
    "sync",
    "write_atomically",
]

logger: Final = logging.getLogger(__name__)

FILE_MODE: Final = 0o600
"""State files: the bot's user only (sessions hold prompts; traces hold previews)."""
FOLDER_MODE: Final = 0o700
"""State folders: the bot's user only."""

_NOT_REGULAR_ERRNOS: Final = frozenset({errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.ENOTDIR})
"""What ``open`` says for a symlink (O_NOFOLLOW), a FIFO without reader (O_NONBLOCK write), a
folder (write), or a path through a file."""

_STATE_FOLDERS: Final = ("sessions", "traces", "logs", "workers")
_STATE_FILES: Final = ("updates.json", "session.key")
PRIVATE_STATE: Final = (*_STATE_FOLDERS, "outbox", "images", *_STATE_FILES)
"""Everything the bot keeps in state_dir but ``worker-home`` (the HOME of the commands Codex
runs, `orchestrator.worker_environment`): what the agent fence denies them
(`orchestrator.agent_fence`)."""


class NotARegularFile(OSError):
    """A symlink, folder, FIFO or device where a state file (or folder) should be."""


NO_FOLLOW_READ: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
"""How a file that someone else could have planted is opened for reading: no symlink is
followed, and a FIFO opens at once instead of waiting for a writer."""

DAMAGED: Final = (NotARegularFile, msgspec.DecodeError, UnicodeDecodeError, RecursionError)
"""What reading and decoding a JSON state file (`read_regular`, then msgspec) raises when the
file is damaged or planted: set it aside and start without it. (A nesting deep enough to
exhaust the decoder's recursion counts as damage too.)"""


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
    return await trio.to_thread.run_sync(function, *args, limiter=uncontended.thread_limiter())


INLINE_WRITE_LIMIT: Final = 0.02
"""Seconds one write on the event loop may take before writes of its kind go back to worker
threads: every chat waits while it runs (a write to the page cache takes 0.04 to 0.4 ms)."""

INLINE_WRITE_PAUSE: Final = 300.0
"""Seconds writes of a kind stay in worker threads after one of them was slow."""


@final
class InlineWrites:
    """One kind of small write without fsync, run on the event loop while the disk is fast.

    Why not always a worker thread (`run_sync`): the write is on the message path (a session
    save must be on disk before Codex sees the prompt), and a hop to a thread and back costs
    0.3 ms to 1.2 ms there, ten times the write (bench/overhead.py, docs/performance.md): the
    thread needs the GIL, which it gets only once the event loop goes idle, and its answer
    wakes the loop again. A write without fsync only copies into the kernel's page cache, so
    on the loop it takes tens of microseconds; the fsyncs that can take long stay in threads
    (`SyncBatches`), as Redis writes its append-only file on its event loop and fsyncs it in
    a background thread.

    What it costs: while the write runs, every chat waits. A write that takes longer than
    `INLINE_WRITE_LIMIT` (a disk under heavy writeback, a slow network file system) sends
    this kind of write back to worker threads for `INLINE_WRITE_PAUSE` seconds, logged once
    per pause, so a slow disk holds the loop up once, not at every save. A disk that hangs
    outright hangs the save in either place; on the loop it holds up the other chats too.
    A write the bot was stopped in (Ctrl-Z) says nothing about the disk (`stops`).
    """

    def __init__(self, what: str, *, timer: Callable[[], float] = time.perf_counter) -> None:
        self.what = what
        self._timer = timer
        self._threads_until = -math.inf
        """`trio.current_time` until which writes go to worker threads."""

    @property
    def inline(self) -> bool:
        """Whether the next write runs on the event loop."""
        return trio.current_time() >= self._threads_until

    async def run(self, function: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
        """`function(*args)` on the event loop, or in a worker thread after a slow one.

        On the loop it returns without a checkpoint; a caller cancelled already is stopped
        before the write, as by `run_sync`."""
        if not self.inline:
            return await run_sync(function, *args)
        await trio.lowlevel.checkpoint_if_cancelled()
        continues = stops.continued()
        started = self._timer()
        try:
            return function(*args)
        finally:
            took = self._timer() - started
            if took > INLINE_WRITE_LIMIT and stops.continued() == continues:
                self._threads_until = trio.current_time() + INLINE_WRITE_PAUSE
                logger.warning(
                    "writing %s took %.0f ms, while every chat waited; they are written in "
                    "worker threads for the next %.0f minutes",
                    self.what,
                    took * 1000,
                    INLINE_WRITE_PAUSE / 60,
                )


def _time_is_virtual() -> bool:
    """Whether this run's clock is a `trio.testing.MockClock`."""
    if "trio.testing" not in sys.modules:
        return False  # nothing imported the test clock, so this run cannot be using it
    from trio.testing import MockClock  # already imported, so free

    return isinstance(trio.lowlevel.current_clock(), MockClock)


def write_atomically(path: Path, data: bytes, *, durable: bool = True, swap: bool = False) -> None:
    """Replace `path` with `data` atomically and durably (blocking).

    Writes ``<path>.tmp-<pid>-<n>`` (created 0600, never through a symlink), fsyncs it,
    renames it over `path`, then fsyncs the folder so the rename itself survives a power loss.
    The temporary name is unique per write, so two writers never rename each other's file
    away. Creates the folder (0700) if needed. A folder where `path` should be is set aside
    first; a symlink or FIFO there is replaced, never followed.

    When the disk refuses (full, read-only), the temporary file is removed and the
    `OSError` raised. `durable` False: no fsync (atomic still; see the module docstring);
    with `swap` too, the names are exchanged instead of renamed, and the old file stays
    under the temporary name until `sync` removes it (for a write on the event loop, whose
    sync behind follows: `orchestrator.rename_exchange`).

    Raises:
        NotARegularFile: the folder of `path` is a symlink or not a folder.
    """
    ensure_folder(path.parent)
    temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}-{next(_WRITE_NUMBERS)}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    descriptor = os.open(temporary, flags, FILE_MODE)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        try:
            if stat.S_ISDIR(os.lstat(path).st_mode):
                moved = set_aside(path)
                logger.error("%s was a folder, not a file; moved it to %s", path, moved.name)
        except FileNotFoundError:
            pass
        if swap and not durable:  # neither ext4's flush nor the old blocks' freeing waited
            rename_exchange.put_in_place(temporary, path)
        else:
            temporary.replace(path)
    except OSError:
        temporary.unlink(missing_ok=True)  # a full disk must not fill up with halves
        raise
    if not durable:
        return
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def sync(paths: Sequence[Path]) -> None:
    """Make `paths`, written with ``durable=False``, survive a power loss (blocking): fsync
    each file still there, in order, then each of their folders once, in order of first
    appearance (so the renames that put them there are durable too). A file removed since
    (an outbox entry already delivered) needs nothing; its folder is still synced.
    """
    rename_exchange.remove_left_behind()  # in this worker thread, beside the fsyncs
    folders: dict[Path, None] = {}
    for path in paths:
        folders[path.parent] = None
        try:
            descriptor = os.open(path, NO_FOLLOW_READ)
        except FileNotFoundError:
            continue
        except OSError as error:
            if error.errno in _NOT_REGULAR_ERRNOS:
                continue  # replaced by something planted: the next read sets it aside
            raise
        try:
            if stat.S_ISREG(os.fstat(descriptor).st_mode):  # not a planted FIFO or device
                os.fsync(descriptor)
        finally:
            os.close(descriptor)
    for folder in folders:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


@final
class SyncBatches:
    """Group commit for `sync`: what the chats ask to make durable at about the same time
    goes to disk in one worker-thread job, while the job before it runs.

    One journal commit makes every file written before it durable, so a batch of many files
    costs about what one costs; per chat and per save, the fsyncs would queue behind each
    other (bench/scale.py: 1,000 chats writing at once). Batches run one at a time, in order.
    """

    def __init__(self) -> None:
        self.trouble = DiskTrouble("the chats' files durably (fsync)")
        """Failed batches, logged here once for all chats (a write that went through and
        a flush that fails alternate: one `DiskTrouble` for both would log every time)."""
        self._pending: dict[Path, None] = {}
        self._lock = trio.Lock()  # fair: waiters are served in the order they came
        self._next = 1
        """The number of the batch that takes what is pending now."""
        self._done = 0
        """The number of the last batch written."""
        self._failed: tuple[int, OSError] | None = None
        """The last batch written, when the disk refused it, and why."""

    async def sync(self, paths: Sequence[Path]) -> None:
        """Return once `paths` are durable, with whatever else was pending (see `sync`).

        Raises:
            OSError: the disk refused the batch they were in (logged by `trouble`).
        """
        self._pending.update(dict.fromkeys(paths))
        batch = self._next
        async with self._lock:
            if self._done < batch:  # nobody took it yet: this caller writes the batch
                taken, self._pending = list(self._pending), {}
                self._next += 1
                try:
                    await run_sync(sync, taken)
                except OSError as error:
                    self._failed = (batch, error)
                    self.trouble.failed(error)
                else:
                    self._failed = None
                    self.trouble.succeeded()
                self._done = batch
            if self._failed is not None and self._failed[0] == batch:
                raise self._failed[1]


def ensure_folder(folder: Path) -> None:
    """Create `folder` (0700, with its parents) if needed; refuse a symlink or a non-folder.

    Raises:
        NotARegularFile: `folder` is a symlink or not a folder.
    """
    try:
        mode = os.lstat(folder).st_mode  # the usual case, one system call: it is there
    except FileNotFoundError:
        folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        mode = os.lstat(folder).st_mode
    if not stat.S_ISDIR(mode):
        raise NotARegularFile(
            errno.ENOTDIR, "a symlink or a file where a folder should be", str(folder)
        )


def read_regular(path: Path) -> bytes:
    """The bytes of `path` if it is a regular file (blocking); never follows a symlink and
    never blocks on a FIFO.

    Raises:
        FileNotFoundError: there is nothing at `path`.
        NotARegularFile: a symlink, folder, FIFO or device is at `path`.
    """
    try:
        descriptor = os.open(path, NO_FOLLOW_READ)
    except OSError as error:
        if error.errno in _NOT_REGULAR_ERRNOS:
            raise NotARegularFile(error.errno, "not a regular file", str(path)) from None
        raise
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise NotARegularFile(errno.EINVAL, "not a regular file", str(path))
    with os.fdopen(descriptor, "rb") as handle:
        return handle.read()


def read_operator_file(path: Path, limit: int) -> bytes:
    """The first ``limit + 1`` bytes of the regular file at `path`, a symlink to one too
    (blocking): what the operator names (the config, the token file) is read this way, so a
    FIFO or a device named by mistake is refused at once instead of blocking the start or
    being read for ever; a caller given more than `limit` bytes says the file is too big.

    Raises:
        NotARegularFile: a folder, FIFO or device is at `path`.
        OSError: it cannot be opened (missing, a symlink loop, no permission).
    """
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise NotARegularFile(errno.EINVAL, "not a regular file", str(path))
        return handle.read(limit + 1)


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
    """Append `data` to `path`, creating the file (0600) and its folder if needed (blocking).

    A symlink, folder or FIFO at `path` is set aside (logged) and a fresh file is started.
    """
    ensure_folder(path.parent)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    for attempt in range(2):
        try:
            descriptor = os.open(path, flags, FILE_MODE)
        except OSError as error:
            if error.errno not in _NOT_REGULAR_ERRNOS or attempt:
                raise
        else:
            if stat.S_ISREG(os.fstat(descriptor).st_mode):
                with os.fdopen(descriptor, "ab") as handle:
                    handle.write(data)
                return
            os.close(descriptor)
        moved = set_aside(path)
        logger.error("%s was not a regular file; moved it to %s", path, moved.name)
    raise NotARegularFile(errno.EINVAL, "not a regular file", str(path))


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
        more = f" ({plural(self._unlogged, 'more failure')} since the last line)"
        logger.error(
            "cannot save %s: %s%s", self.what, _describe(error), more if self._unlogged else ""
        )
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


_TEMPORARY: Final = re.compile(r"\.tmp-(\d+)-\d+$")
"""The end of a temporary file's name (`write_atomically`): ``.tmp-<pid>-<number>``."""


def remove_temporaries(state_dir: Path) -> int:
    """Remove what an earlier run's writes left in `state_dir` and its folders (blocking; at
    start, under the instance lock, before anything is written): temporary files of a write
    a kill cut short, and old files an exchange left that it had no time to remove
    (`orchestrator.rename_exchange`). Returns how many."""
    removed = 0
    for folder in (state_dir, *(state_dir / name for name in _STATE_FOLDERS), state_dir / "outbox"):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            match = _TEMPORARY.search(entry.name)
            if match is None or int(match[1]) == os.getpid():
                continue
            if entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def secure_state_dir(state_dir: Path) -> list[str]:
    """Make `state_dir` private and set aside what does not belong (blocking; at start).

    `state_dir` becomes 0700; its folders (sessions, traces, logs, workers) 0700 and the
    regular files in them 0600, and so the update ledger and the session key. A symlink or
    other non-folder where one of those folders should be, and a symlink, folder or FIFO in
    one of them or where a state file should be (a worker log symlinked to ``~/.bashrc``
    would be appended to), is renamed to ``<name>.corrupt-<UTC time>``.

    Returns:
        One line per thing set aside, for the log.
    """
    reports: list[str] = []

    def aside(path: Path, what: str) -> None:
        moved = set_aside(path)
        reports.append(f"{path} was {what}; moved it to {moved.name}")

    state_dir.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)  # itself: the operator's
    os.chmod(state_dir, FOLDER_MODE)
    for name in _STATE_FILES:
        path = state_dir / name
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISREG(mode):
            os.chmod(path, FILE_MODE, follow_symlinks=False)
        else:
            aside(path, "not a regular file")
    for name in _STATE_FOLDERS:
        folder = state_dir / name
        try:
            mode = os.lstat(folder).st_mode
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(mode):
            aside(folder, "not a folder (a symlink or a file)")
            continue
        os.chmod(folder, FOLDER_MODE, follow_symlinks=False)
        for entry in os.scandir(folder):
            if entry.is_file(follow_symlinks=False):
                os.chmod(entry.path, FILE_MODE, follow_symlinks=False)
            elif ".corrupt-" not in entry.name:
                aside(folder / entry.name, "not a regular file")
    return reports
