"""Whether the process was stopped and continued while something was timed.

A stopped process (Ctrl-Z, SIGSTOP, a paused debugger) does not run, but the monotonic clock
goes on, so an interval timed around a stop contains the stop. The kernel continues a
stopped process with SIGCONT, and `watch` counts those: an interval in which the count
moved says nothing about what it timed. `orchestrator.disk.InlineWrites` judges the disk by
how long one write took; seen from outside, a Ctrl-Z during a session save logged "writing
session files … took 2504 ms, while every chat waited" and sent five minutes of saves to
worker threads.

What waits for input needs no count: it reads what came meanwhile before its deadline
counts (`actors.worker_turn.until_silent`, `orchestrator.edges.http1`, the approvals).
"""

from __future__ import annotations

import signal

__all__ = ["continued", "watch"]

_continues = [0]


def _count(signum: int, frame: object) -> None:
    _continues[0] += 1


def watch() -> None:
    """Count the continues from now on (the main thread, before the event loop: `cli.start`).
    Without it `continued` stays 0, and no interval is taken for one with a stop."""
    signal.signal(signal.SIGCONT, _count)


def continued() -> int:
    """How often the process was continued after a stop since `watch`. Being a call of a
    Python function, it runs a handler still pending since the continue first."""
    return _continues[0]
