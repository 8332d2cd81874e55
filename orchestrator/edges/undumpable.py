"""The bot's own process closed to the other processes of its user.

A token that came from the environment (``TELEGRAM_BOT_TOKEN``) stays in the kernel's copy
of it, ``/proc/<bot pid>/environ``, for the life of the process: taking it out of
`os.environ` does not scrub that copy. A process that is not *dumpable*
(``prctl(PR_SET_DUMPABLE, 0)``) has that file, its memory (``/proc/<pid>/mem``) and ptrace
refused to every process without ``CAP_SYS_PTRACE``, those of the same user included; so a
command Codex runs outside its sandbox, as the bot's user, can no longer read the token
there. It also writes no core dump, which would hold the token too.

The workers are not affected: ``execve`` of a program makes its process dumpable again, so
the bot still reads their ``/proc`` files, and Codex its commands'.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Final

__all__ = ["PR_GET_DUMPABLE", "PR_SET_DUMPABLE", "make_undumpable"]

PR_SET_DUMPABLE: Final = 4
PR_GET_DUMPABLE: Final = 3


def make_undumpable() -> bool:
    """Make this process not dumpable (Linux); whether it now is not."""
    if not sys.platform.startswith("linux"):
        return False
    # This process's own symbols include libc's: no `find_library`, which runs ``ldconfig``.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    return bool(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0)
