"""The chat's controls on the worker pool: steer a running turn, list the models, read the
rate limits, stop a thread's background commands, release a thread whose conversation ended.

A chat reaches a worker only through the pool handle (`actors.worker_pool.WorkerPoolHandle`),
which delegates these here. Each finds the one position that matters: the one running the
conversation's call (steer), the one hosting the thread (stop, release), or any ready worker
(models, rate limits: they are the account's, the same on every worker). Every control is
bounded (`CONTROL_DEADLINE`, `RELEASE_DEADLINE`) and never raises: a worker that died or
hangs is an answer ("ended", None), not an error, because the chat turns each into plain
words.
"""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING, Final, TypeVar

import trio

from orchestrator.errors import WorkerUnavailable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from actors.worker_position import WorkerPosition
    from orchestrator.ports import CodexWorker, ModelChoice, RateLimits, SteerResult, StopResult

T = TypeVar("T")

__all__ = [
    "CONTROL_DEADLINE",
    "RELEASE_DEADLINE",
    "models",
    "rate_limits",
    "release",
    "steer",
    "stop_background",
]

CONTROL_DEADLINE: Final = 10.0
"""Seconds a control may take (each answers in milliseconds; ``model/list`` may fetch the
catalogue once)."""

RELEASE_DEADLINE: Final = 5.0
"""Seconds a released thread's worker may take to stop its background commands."""


def _ready(positions: Sequence[WorkerPosition]) -> list[WorkerPosition]:
    """Ready positions, idle ones first (a busy worker answers too, only later)."""
    ready = [position for position in positions if position.ready]
    return sorted(ready, key=lambda position: len(position.running))


async def steer(positions: Sequence[WorkerPosition], conversation: str, text: str) -> SteerResult:
    """Add `text` to the turn `conversation` runs: "ended" when no worker runs one for it."""
    for position in positions:
        worker = position.worker
        if worker is None or not position.ready or conversation not in position.running:
            continue
        if not worker.controls:
            return "unsupported"
        with trio.move_on_after(CONTROL_DEADLINE), suppress(WorkerUnavailable):
            return await worker.steer(conversation, text)
        return "ended"
    return "ended"


async def models(positions: Sequence[WorkerPosition]) -> tuple[ModelChoice, ...] | None:
    """The models of the first ready worker that lists any; None when none can."""
    return await _first_answer(positions, lambda worker: worker.models())


async def rate_limits(positions: Sequence[WorkerPosition]) -> RateLimits | None:
    """The account's rate limits from the first ready worker that reports them."""
    return await _first_answer(positions, lambda worker: worker.rate_limits())


async def _first_answer(
    positions: Sequence[WorkerPosition], ask: Callable[[CodexWorker], Awaitable[T | None]]
) -> T | None:
    """What the first ready worker with controls answers to `ask` (idle ones first; an empty
    answer, a dead or a slow worker: the next one); None when none answers."""
    for position in _ready(positions):
        worker = position.worker
        if worker is None or not worker.controls:
            continue
        with trio.move_on_after(CONTROL_DEADLINE), suppress(WorkerUnavailable):
            found = await ask(worker)
            if found:
                return found
    return None


async def stop_background(
    positions: Sequence[WorkerPosition], thread_id: str, worker_id: int | None
) -> StopResult:
    """Stop what `thread_id` left running on `worker_id`; None when that worker is gone (its
    commands went with it: a replaced worker's tree is killed)."""
    worker = _host(positions, thread_id, worker_id)
    if worker is not None:
        with trio.move_on_after(CONTROL_DEADLINE), suppress(WorkerUnavailable):
            return await worker.stop_background(thread_id)
    return None


async def release(
    positions: Sequence[WorkerPosition], thread_id: str, worker_id: int | None
) -> tuple[str, ...]:
    """The conversation on `thread_id` is over: its worker stops what the thread's turns
    left running and says which (a worker gone or busy on it: nothing)."""
    worker = _host(positions, thread_id, worker_id)
    if worker is not None:
        with trio.move_on_after(RELEASE_DEADLINE), suppress(WorkerUnavailable):
            return await worker.release_thread(thread_id)
    return ()


def _host(
    positions: Sequence[WorkerPosition], thread_id: str, worker_id: int | None
) -> CodexWorker | None:
    """The ready worker at `worker_id` that hosts `thread_id`, if there is one."""
    if worker_id is None or not 0 <= worker_id < len(positions):
        return None
    position = positions[worker_id]
    if not position.ready or thread_id not in position.hosted_threads:
        return None
    return position.worker
