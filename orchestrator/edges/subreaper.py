"""The bot as its workers' child subreaper: orphans come to it, and it reaps them all.

Codex starts each shell command in its own session, and some of what it starts outlives the
process that started it. As a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``) the bot
adopts those orphans instead of PID 1, so `orchestrator.edges.processes` can still find and
kill them. Each adopted process is ours to reap once it exits: those the kill paths knew of
are reaped there, the rest by `reap_adopted`.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import sys
from typing import Final, final

import trio

from orchestrator.edges.processes import process_stats, reap_children

__all__ = ["ADOPTED_SWEEP", "AdoptedZombies", "enable_child_subreaper", "reap_adopted"]

logger: Final = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER: Final = 36

ADOPTED_SWEEP: Final = 10.0
"""Seconds between the sweeps of `reap_adopted` (one ``/proc`` scan, under a millisecond): a
zombie nobody waits for lives at most twice as long. Codex 0.171.0 leaves one per command it
runs in a permission profile (`orchestrator.agent_fence`; seen from outside), so a busy
agent would otherwise keep hundreds in the process table."""


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

    def sweep(self, *, everything: bool = False) -> set[int]:
        """Reap the zombie children found at the previous sweep too, or with `everything`
        all of them (once the bot waits for none: at its stop); return them (blocking: a
        scan of ``/proc``)."""
        me = os.getpid()
        zombies = {
            pid for pid, stat in process_stats().items() if stat.state == b"Z" and stat.ppid == me
        }
        stale = zombies if everything else zombies & self._seen
        reap_children(stale)
        self._seen = zombies - stale
        return stale


async def reap_adopted(interval: float = ADOPTED_SWEEP) -> None:
    """Sweep for adopted zombies (`AdoptedZombies`) every `interval` s, until cancelled; then
    reap every zombie child left. It is cancelled once the bot has stopped and waited for
    each process of its own, and what it left would wait for PID 1, which in a container
    may never reap it."""
    zombies = AdoptedZombies()
    try:
        while True:
            await trio.sleep(interval)
            reaped = await trio.to_thread.run_sync(zombies.sweep)
            if reaped:
                logger.debug("reaped %d exited processes our workers left to us", len(reaped))
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(functools.partial(zombies.sweep, everything=True))
