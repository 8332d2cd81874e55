"""Worker threads held up, as behind a disk that stalls them: for what must not wait on them."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@asynccontextmanager
async def threads_held_up() -> AsyncIterator[None]:
    """Every token of trio's default thread limiter borrowed: a `trio.to_thread.run_sync`
    waits until the block ends."""
    limiter = trio.to_thread.current_default_thread_limiter()
    holders = [object() for _ in range(int(limiter.total_tokens))]
    for holder in holders:
        await limiter.acquire_on_behalf_of(holder)
    try:
        yield
    finally:
        for holder in holders:
            limiter.release_on_behalf_of(holder)
