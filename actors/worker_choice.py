"""Which worker position a job goes to, and whether it keeps its thread there.

The pool (`actors.worker_pool`) owns the waiting and the reservations; this decides, over its
positions, where one job may run now (`choose`) and, when the job cannot go on in its
thread, why, in the user's words (`why_moved`):

- a conversation goes to the position whose worker hosts its thread (`owner_of`); while that
  worker is busy, or while the process of the worker that left the thread is still being
  stopped (`held_while_stopping`: until it exits it holds the thread), the job waits until
  its affinity time is over, then takes any free worker and moves;
- any other job takes the least-loaded free worker (`least_loaded`): the fewest calls in
  flight, then the fewest threads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from actors.worker_position import THREAD_BUSY, THREAD_STOPPING
from orchestrator.codex_runs import THREAD_GONE

if TYPE_CHECKING:
    from collections.abc import Sequence

    from actors.worker_position import WorkerPosition
    from orchestrator.codex_runs import CodexJob

__all__ = ["Grant", "choose", "held_while_stopping", "least_loaded", "owner_of", "why_moved"]


class Grant(NamedTuple):
    """A position reserved for a job, and whether the job moves to a fresh thread there."""

    position: WorkerPosition
    moved: bool


def choose(
    positions: Sequence[WorkerPosition], job: CodexJob, *, affinity_over: bool
) -> Grant | None:
    """The position `job` may take now, and whether it moves to a fresh thread; None: wait.

    A conversation waits for the worker that owns its thread, or for the process of the one
    that left it to exit, until its affinity time is over, then takes any free worker;
    others take the least-loaded free worker.
    """
    owner = owner_of(positions, job)
    if owner is not None:
        if owner.has_room:
            return Grant(owner, moved=False)
        if not affinity_over:
            return None
        free = least_loaded(positions)
        return Grant(free, moved=True) if free is not None else None
    if not affinity_over and held_while_stopping(positions, job):
        return None
    free = least_loaded(positions)
    return Grant(free, moved=job.thread_id is not None) if free is not None else None


def owner_of(positions: Sequence[WorkerPosition], job: CodexJob) -> WorkerPosition | None:
    """The position whose worker hosts the job's thread, if it can still serve it."""
    position = _last_position(positions, job)
    if position is None or job.thread_id not in position.hosted_threads:
        return None
    return position if position.ready and not position.draining else None


def held_while_stopping(positions: Sequence[WorkerPosition], job: CodexJob) -> bool:
    """Whether the job's thread may still be held by the process of the worker it last ran
    on, which left and is being stopped (`WorkerPosition.releasing`): a resume elsewhere
    would be refused until it exits, and the job would lose its thread."""
    position = _last_position(positions, job)
    return position is not None and position.releasing


def why_moved(positions: Sequence[WorkerPosition], job: CodexJob) -> str:
    """Why `job` cannot go on in its thread, in the user's words (`JobDone.moved_because`)."""
    if owner_of(positions, job) is not None:
        return THREAD_BUSY
    if held_while_stopping(positions, job):
        return THREAD_STOPPING
    for position in positions:
        if (why := position.lost_because(job.thread_id or "")) is not None:
            return why
    return THREAD_GONE


def least_loaded(positions: Sequence[WorkerPosition]) -> WorkerPosition | None:
    """The position with room and the fewest calls in flight, then the fewest threads."""
    candidates = [p for p in positions if p.has_room and not p.draining]
    if not candidates:
        return None
    return min(candidates, key=lambda p: (len(p.running), len(p.hosted_threads), p.worker_id))


def _last_position(positions: Sequence[WorkerPosition], job: CodexJob) -> WorkerPosition | None:
    """The position the job's thread last ran on, if it has a thread."""
    if job.thread_id is None or job.worker_id is None:
        return None
    if not 0 <= job.worker_id < len(positions):
        return None
    return positions[job.worker_id]
