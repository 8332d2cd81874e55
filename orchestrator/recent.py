"""The newest entries of a mapping, up to a bound: what a long-running bot remembers of the
messages it sent or saw, without growing for ever. The oldest entry is forgotten first."""

from __future__ import annotations

from typing import TypeVar, final

__all__ = ["Recent"]

K = TypeVar("K")
V = TypeVar("V")


@final
class Recent(dict[K, V]):
    """A dict that keeps at most `limit` entries: `remember` adds one and forgets the oldest
    beyond the bound (in insertion order; a key remembered again keeps its place)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def remember(self, key: K, value: V) -> None:
        self[key] = value
        while len(self) > self.limit:
            del self[next(iter(self))]
