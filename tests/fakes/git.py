"""An in-memory `orchestrator.ports.GitWorktrees` for actor tests (no git process runs under
the virtual clock); the real edge is tested on real repositories in tests/edges/test_git.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.ports import Worktree

if TYPE_CHECKING:
    from pathlib import Path

    from orchestrator.ports import WorkspaceChanges

__all__ = ["FakeGit"]


class FakeGit:
    """`GitWorktrees` in memory: folders are made and removed, and /diff answers `diff`."""

    def __init__(self) -> None:
        self.trees: dict[Path, str] = {}
        self.dirty: set[Path] = set()
        self.diff: WorkspaceChanges | None = None
        """What `changes` answers (None: not a repository)."""

    async def branch_name_valid(self, name: str) -> bool:
        return ".." not in name and not name.startswith("-")

    async def add(self, repository: Path, folder: Path, branch: str) -> bool:
        folder.mkdir(parents=True)
        self.trees[folder] = branch
        return True

    async def worktrees(self, repository: Path) -> list[Worktree]:
        main = [Worktree(path=str(repository), branch="main")]
        return main + [await self.state(folder) for folder in self.trees]

    async def state(self, folder: Path) -> Worktree:
        branch = self.trees.get(folder, "main")  # a folder not made here: the repository
        return Worktree(path=str(folder), branch=branch, dirty=folder in self.dirty)

    async def remove(self, repository: Path, folder: Path) -> None:
        folder.rmdir()
        del self.trees[folder]

    async def changes(self, folder: Path) -> WorkspaceChanges | None:
        return self.diff
