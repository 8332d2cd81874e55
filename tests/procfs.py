"""What tests know about processes, read from /proc (no psutil)."""

from __future__ import annotations

import os
import signal
from contextlib import suppress
from typing import TYPE_CHECKING

import trio

from orchestrator.edges.processes import alive, descendants

if TYPE_CHECKING:
    from pathlib import Path


def living(pids: set[int]) -> set[int]:
    """Those of `pids` that still run (zombies count as gone)."""
    return {pid for pid in pids if alive(pid)}


def kill_survivors(pids: set[int]) -> set[int]:
    """Those of `pids` still running, killed: a test asserts the set is empty, and a failure
    must not leave them to the tests after it."""
    left = living(pids)
    for pid in left:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


def tree(pid: int) -> set[int]:
    """`pid` and its living descendants."""
    return living({pid} | descendants(pid))


def read_pids(path: Path) -> set[int]:
    """Pids written one per line by the fake Codex server."""
    if not path.exists():
        return set()
    return {int(line) for line in path.read_text().split() if line.strip()}


def cmdline(pid: int) -> str:
    """The command line of `pid`, arguments joined by spaces; "" once it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


async def wait_until_gone(pids: set[int], *, within: float = 10) -> set[int]:
    """Wait up to `within` seconds for `pids` to exit; return those still alive.

    For kills that happen in another task or process after the event a test can see (a
    worker's teardown runs after the chat is told): /proc has nothing to wait on, so poll.
    """
    with trio.move_on_after(within):
        while living(pids):  # noqa: ASYNC110 - /proc has no event to wait on
            await trio.sleep(0.05)
    return living(pids)


def connected_to(port: int, among: set[int], *, from_port: int | None = None) -> set[int]:
    """Those of `among` holding a TCP connection to 127.0.0.1:`port` (``/proc/net/tcp``),
    only the one from local port `from_port` if given: which worker is talking to the mock
    model (`MockModel.peers` names the connection a request came on; a worker may keep an
    idle one open beside it)."""
    remote = f"0100007F:{port:04X}"
    local = None if from_port is None else f"0100007F:{from_port:04X}"
    inodes: set[str] = set()
    with open("/proc/net/tcp") as table:
        for row in table.readlines()[1:]:
            fields = row.split()
            if fields[2] == remote and fields[3] == "01" and local in (None, fields[1]):
                inodes.add(fields[9])
    holders: set[int] = set()
    for pid in among:
        with suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        holders.add(pid)
    return holders
