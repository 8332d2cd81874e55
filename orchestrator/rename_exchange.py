"""Put a new file in an old one's place without ext4's waits: ``renameat2(RENAME_EXCHANGE)``.

A rename over an existing file makes ext4 (``auto_da_alloc``, on by default) allocate and
start writing the new file's data before the rename returns, so that a power loss cannot
leave the file empty, and frees the old file's blocks (slow on a disk mounted with
``discard``). For a write whose fsync comes a moment later anyway (a session saved on the
event loop and synced behind, `orchestrator.disk.sync`), both are waits for nothing: in the
bot, the rename of a 2.4 kB session file over its old self, synced a moment before, took
0.47 ms (bench/overhead.py ``--conversation`` under cProfile). Exchanging the two names in
one step takes 0.04 ms; the old file, now under the temporary name, is removed later, off
the event loop (`put_in_place`, `remove_left_behind`: 0.5 ms of freeing, in the sync's
worker thread). The names are exchanged atomically: `path` holds the old content or the
new, whoever looks, and a kill before the removal leaves only the old content under the
temporary name (removed at the next start: `orchestrator.disk.remove_temporaries`). What it
gives up: until the file is synced, a power loss may leave `path` empty instead of old (its
reader sets that aside as damage, as any damaged file).

Linux only (3.15 and later, with glibc 2.28 or musl 1.1.24); elsewhere, on a file system
without the exchange (overlayfs on some kernels), or with no file at `path` yet, `exchange`
says so and the caller renames as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import sys
from collections import deque
from typing import TYPE_CHECKING, Final, cast

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    _Renameat2 = Callable[[int, bytes, int, bytes, int], int]

__all__ = ["LEFT_BEHIND_LIMIT", "exchange", "put_in_place", "remove_left_behind"]

_AT_FDCWD: Final = -100
_RENAME_EXCHANGE: Final = 2

_UNSUPPORTED: Final = frozenset({errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP})
"""What ``renameat2`` answers where the call or the flag is not there (a file system without
it answers EINVAL)."""


def _load_renameat2() -> _Renameat2 | None:
    """libc's ``renameat2``, typed; None where there is none."""
    if sys.platform != "linux":
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    path_type, flags_type = ctypes.c_char_p, ctypes.c_uint
    function.argtypes = (ctypes.c_int, path_type, ctypes.c_int, path_type, flags_type)
    function.restype = ctypes.c_int
    return cast("_Renameat2", function)


_renameat2 = _load_renameat2()

LEFT_BEHIND_LIMIT: Final = 64
"""Old files an exchange left that wait for `remove_left_behind`; one more removes them all
at once."""

_left_behind: deque[Path] = deque()
"""The old files exchanged out, to remove off the event loop (appended and taken from any
thread: a deque's ends are thread-safe)."""


def put_in_place(new: Path, path: Path) -> None:
    """Put the file `new` at `path` (blocking): by `exchange` where it can, leaving the old
    file for `remove_left_behind` (the sync behind calls it), else by a rename over it."""
    if not exchange(new, path):
        new.replace(path)
        return
    _left_behind.append(new)
    if len(_left_behind) > LEFT_BEHIND_LIMIT:  # nobody syncs: do not let them pile up
        remove_left_behind()


def remove_left_behind() -> None:
    """Remove the old files `put_in_place` left (blocking)."""
    while True:
        try:
            old = _left_behind.popleft()
        except IndexError:
            return
        with contextlib.suppress(OSError):  # gone already, or the disk refuses: nothing lost
            old.unlink()


def exchange(new: Path, path: Path) -> bool:
    """Swap the names `new` and `path` in one step (blocking); False, with nothing changed,
    where that cannot be done here (see the module docstring). Afterwards `new` names the
    old file: the caller removes it.

    Raises:
        OSError: the exchange was refused for another reason (as a rename would be).
    """
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(new), _AT_FDCWD, os.fsencode(path), _RENAME_EXCHANGE):
        error = ctypes.get_errno()
        if error == errno.ENOENT or error in _UNSUPPORTED:
            return False
        raise OSError(error, os.strerror(error), str(path))
    return True
