"""The bot as its workers' child subreaper: orphans come to it, and it reaps them all.

Codex starts each shell command in its own session, and some of what it starts outlives the
process that started it. As a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``) the bot
adopts those orphans instead of PID 1, so `orchestrator.edges.processes` can still find and
kill them. Each adopted process is ours to reap once it exits: those the kill paths knew of
are reaped there, the rest by `reap_adopted`.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from typing import Final, final

import trio

from orchestrator.edges.processes import process_stats, reap_children

__all__ = ["ADOPTED_SWEEP", "AdoptedZombies", "enable_child_subreaper", "reap_adopted"]

logger: Final = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER: Final = 36

ADOPTED_SWEEP: Final = 60.0
"""Seconds between the sweeps of `reap_adopted`."""


def enable_child_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux); False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    # This process's own symbols include libc's: no `find_library`, which runs ``ldconfig``.
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


@final
class AdoptedZombies:
    """The zombies among our children that nobody waits for, found by two sweeps in a row.

    The kill paths reap the orphans they knew of; one never seen alive is left: Codex
    0.171.0 leaves a ``git`` it ran at start-up to us, one per worker start (seen from
    outside), and each stayed a zombie for as long as the bot ran. A child trio waits for
    (a worker, a ``git`` of the bot's own) is reaped the moment it exits, so one still a
    zombie at the next sweep has no one waiting for it: reaping only those never takes an
    exit status trio waits for, as a blanket ``waitpid(-1)`` would.
    """

    def __init__(self) -> None:
        self._seen: set[int] = set()

    def sweep(self) -> set[int]:
        """Reap the zombie children found at the previous sweep too (blocking: a scan of
        ``/proc``); return them."""
        me = os.getpid()
        zombies = {
            pid for pid, stat in process_stats().items() if stat.state == b"Z" and stat.ppid == me
        }
        stale = zombies & self._seen
        reap_children(stale)
        self._seen = zombies - stale
        return stale


async def reap_adopted(interval: float = ADOPTED_SWEEP) -> None:
    """Sweep for adopted zombies (`AdoptedZombies`) every `interval` s, until cancelled."""
    zombies = AdoptedZombies()
    while True:
        await trio.sleep(interval)
        reaped = await trio.to_thread.run_sync(zombies.sweep)
        if reaped:
            logger.debug("reaped %d exited processes our workers left to us", len(reaped))
