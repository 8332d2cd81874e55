"""One bot per ``state_dir``: a second ``start`` on the same state refuses to run.

Two bots on one state would both long-poll Telegram (each taking some of the other's
updates, with "conflict" errors in between), keep two copies of every chat in memory and
overwrite each other's session files: a ``/mode`` one of them confirmed is then ignored by
the other (measured by starting the bot twice, as a service and by hand). The lock is an
exclusive ``flock`` on ``state_dir/bot.lock``, which the kernel releases when the holder
exits in any way, SIGKILL included, so a stale lock never blocks a restart. The file holds
the holder's pid, for the refusal to name.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["LOCK_NAME", "AlreadyRunning", "holding"]

LOCK_NAME: Final = "bot.lock"


class AlreadyRunning(Exception):
    """Another process holds the lock of this ``state_dir``."""

    def __init__(self, path: Path, pid: str) -> None:
        self.path = path
        self.pid = pid
        super().__init__(
            f"another codex-orchestrator is running on this state_dir "
            f"({path.parent}, pid {pid or 'unknown'}): stop it first; two would take each "
            "other's updates and overwrite each other's sessions"
        )


@contextlib.contextmanager
def holding(state_dir: Path) -> Iterator[None]:
    """Hold the lock of `state_dir` for the block (blocking I/O, milliseconds).

    Raises:
        AlreadyRunning: another process holds it.
        OSError: the lock file cannot be opened (the caller reports it).
    """
    path = state_dir / LOCK_NAME
    state_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
            raise AlreadyRunning(path, holder) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(descriptor)  # releases the lock
