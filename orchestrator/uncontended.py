"""Locks and limiters taken without a trip through the run loop when nobody holds them.

Trio's ``await lock.acquire()`` (and ``async with lock``) always checkpoints, even when the
lock is free: the task is rescheduled and every other runnable task runs a step first. On
the message path that happens at each edge (the Codex line transport's write lock, the HTTP
client's connection slots, a session file's write lock, the worker-thread limiter before
each file write), and each such pass delays the message by the steps of whatever else is
runnable at that moment. `acquire` takes a free lock at once and waits (a checkpoint, as
before) only when it is held; a caller cancelled already is still stopped there, as by
``lock.acquire()``. Every caller goes on to a checkpoint of its own (a pipe or socket
write, a worker thread).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast, final

import trio

if TYPE_CHECKING:
    from trio.lowlevel import Task

__all__ = ["acquire", "thread_limiter"]


async def acquire(lock: trio.Lock | trio.CapacityLimiter) -> None:
    """Take `lock`: at once when it is free, else wait for it. Like ``lock.acquire()``, it
    raises `trio.Cancelled` when the caller is cancelled already; unlike it, it does not
    reschedule the caller when the lock is free."""
    await trio.lowlevel.checkpoint_if_cancelled()
    try:
        lock.acquire_nowait()
    except trio.WouldBlock:
        await lock.acquire()


@final
class _PromptLimiter:
    """The default worker-thread limiter, taken at once while a thread is free."""

    def __init__(self, inner: trio.CapacityLimiter) -> None:
        self._inner = inner

    async def acquire_on_behalf_of(self, borrower: Task | object) -> None:
        try:
            self._inner.acquire_on_behalf_of_nowait(borrower)
        except trio.WouldBlock:
            await self._inner.acquire_on_behalf_of(borrower)

    def release_on_behalf_of(self, borrower: Task | object) -> None:
        self._inner.release_on_behalf_of(borrower)


def thread_limiter() -> trio.CapacityLimiter:
    """The ``limiter`` for ``trio.to_thread.run_sync``: the default one (same bound), taken
    without a checkpoint while a thread is free. Trio documents the argument as anything with
    ``acquire_on_behalf_of`` and ``release_on_behalf_of``; its annotation names only
    `trio.CapacityLimiter`, hence the cast."""
    inner = trio.to_thread.current_default_thread_limiter()
    return cast("trio.CapacityLimiter", _PromptLimiter(inner))
