"""The bot's process closed to its user's other processes (`orchestrator.edges.undumpable`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROGRAM = """
import ctypes, subprocess, sys
from orchestrator.edges.undumpable import PR_GET_DUMPABLE, make_undumpable
libc = ctypes.CDLL(None, use_errno=True)
before = libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)
closed = make_undumpable()
after = libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)
child = subprocess.run(
    [sys.executable, "-c", "import ctypes; print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))"],
    capture_output=True, text=True, check=True,
).stdout.strip()
print(before, closed, after, child)
"""


def test_the_bot_is_not_dumpable_and_the_programs_it_starts_are() -> None:
    """Not dumpable: ``/proc/<pid>/environ`` (where a token from the environment stays) and
    the memory are refused to every process of the user without ``CAP_SYS_PTRACE``, checked
    by hand as a non-root user (a ``wc -c`` of the file: "Permission denied"); a program the
    bot starts (a worker) is dumpable again after its ``execve``."""
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert done.stdout.split() == ["1", "True", "0", "1"]
