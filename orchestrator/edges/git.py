"""Git over its command line, for ``/branch`` (the `GitWorktrees` port).

Each call is one short ``git`` process run by trio (killed if the caller is cancelled),
bounded by `GIT_TIMEOUT`, with a small environment: the bot's variables are not passed on
(git needs none of them, and the bot token must reach no child), git never prompts
(``GIT_TERMINAL_PROMPT=0``) and its words are in English (``LC_ALL=C``) so that what it says
can be read and shown. Git's own message (its last line of errors) is what a refusal
(`GitError`) carries.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Final, final

import trio

from orchestrator.errors import GitError
from orchestrator.ports import Worktree

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["GIT_TIMEOUT", "GitCli", "git_environment"]

GIT_TIMEOUT: Final = 30.0
"""Seconds for one git command: ``worktree add`` checks out the whole tree."""

_PASSED: Final = ("PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "GIT_EXEC_PATH")
"""What git gets from the bot's environment (its identity and config come from HOME)."""

_AHEAD: Final = re.compile(r"ahead (\d+)")
_BEHIND: Final = re.compile(r"behind (\d+)")


def git_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of a git command: `_PASSED` from `environ`, no prompts, C locale."""
    env = {name: environ[name] for name in _PASSED if name in environ}
    return env | {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


@final
class GitCli:
    """`GitWorktrees` over the ``git`` command."""

    def __init__(self, *, git: str = "git", environ: Mapping[str, str] | None = None) -> None:
        self._git = git
        self._env = git_environment(os.environ if environ is None else environ)

    async def _run(self, *args: str, cwd: Path) -> str:
        """Run ``git ARGS`` in `cwd`; its output, or `GitError` with what git said."""
        try:
            with trio.fail_after(GIT_TIMEOUT):
                done = await trio.run_process(
                    [self._git, *args],
                    cwd=cwd,
                    env=self._env,
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
        except trio.TooSlowError:
            raise GitError(f"git {args[0]} took longer than {GIT_TIMEOUT:g} s") from None
        except OSError as error:
            raise GitError(f"cannot run git: {error.strerror or error}") from None
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip().splitlines()
            raise GitError(said[-1] if said else f"git {args[0]} failed ({done.returncode})")
        return done.stdout.decode(errors="replace")

    async def branch_name_valid(self, name: str) -> bool:
        try:
            await self._run("check-ref-format", "--branch", name, cwd=Path("/"))
        except GitError:
            return False
        return True

    async def add(self, repository: Path, folder: Path, branch: str) -> bool:
        await trio.to_thread.run_sync(lambda: folder.parent.mkdir(parents=True, exist_ok=True))
        try:
            await self._run(
                "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", cwd=repository
            )
        except GitError:
            await self._run("worktree", "add", "-b", branch, str(folder), cwd=repository)
            return True
        await self._run("worktree", "add", str(folder), branch, cwd=repository)
        return False

    async def worktrees(self, repository: Path) -> list[Worktree]:
        listing = await self._run("worktree", "list", "--porcelain", cwd=repository)
        found = []
        for block in listing.strip().split("\n\n"):
            fields = dict(line.partition(" ")[::2] for line in block.splitlines())
            if "worktree" in fields and "prunable" not in fields:
                found.append(await self.state(Path(fields["worktree"])))
        return found

    async def state(self, folder: Path) -> Worktree:
        status = await self._run("status", "--porcelain=v1", "--branch", cwd=folder)
        head, *changes = status.splitlines() or ["## ?"]
        branch = head[3:].split("...")[0].split(" ")[0]
        ahead = _AHEAD.search(head)
        behind = _BEHIND.search(head)
        upstream = "..." in head
        return Worktree(
            path=str(folder),
            branch=branch,
            dirty=bool(changes),
            ahead=int(ahead[1]) if ahead else (0 if upstream else None),
            behind=int(behind[1]) if behind else (0 if upstream else None),
        )

    async def remove(self, repository: Path, folder: Path) -> None:
        await self._run("worktree", "remove", str(folder), cwd=repository)
