"""At most once per interval, for each key: notices the bot must not repeat per message.

A stranger's refusal (per user), a chat's "busy" (per session key), a disk that refuses
writes (per chat): each is told once, then not again for its interval. Time comes from trio.
"""

from __future__ import annotations

import math
from typing import Generic, TypeVar, final

import trio

__all__ = ["OncePer"]

K = TypeVar("K")


@final
class OncePer(Generic[K]):
    """Says whether a key is due: never seen, or last due `interval` seconds ago or more."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[K, float] = {}

    def due(self, key: K) -> bool:
        """Whether `key` is due now; if it is, the interval starts again from now."""
        now = trio.current_time()
        if now < self._last.get(key, -math.inf) + self.interval:
            return False
        self._last[key] = now
        return True

    def forget(self, key: K) -> None:
        """Drop `key` (its owner is gone): the next `due` for it is true."""
        self._last.pop(key, None)
