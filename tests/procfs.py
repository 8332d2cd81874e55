"""What tests know about processes, read from /proc (no psutil)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.edges.processes import alive, descendants

if TYPE_CHECKING:
    from pathlib import Path


def living(pids: set[int]) -> set[int]:
    """Those of `pids` that still run (zombies count as gone)."""
    return {pid for pid in pids if alive(pid)}


def tree(pid: int) -> set[int]:
    """`pid` and its living descendants."""
    return living({pid} | descendants(pid))


def read_pids(path: Path) -> set[int]:
    """Pids written one per line by the fake Codex server."""
    if not path.exists():
        return set()
    return {int(line) for line in path.read_text().split() if line.strip()}
