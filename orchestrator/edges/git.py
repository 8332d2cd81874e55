"""Git over its command line, for ``/branch`` and ``/diff`` (the `GitWorktrees` port).

Each call is one short ``git`` process run by trio (killed if the caller is cancelled),
bounded by `GIT_TIMEOUT`, with a small environment: the bot's variables are not passed on
(git needs none of them, and the bot token must reach no child), git never prompts
(``GIT_TERMINAL_PROMPT=0``) and its words are in English (``LC_ALL=C``) so that what it says
can be read and shown. Git's own message (its last line of errors) is what a refusal
(`GitError`) carries.

git runs outside Codex's sandbox, in a working directory (and a ``.git/config``) the agent
may have written: every git call runs with ``core.fsmonitor=false`` (the fsmonitor hook is a
program the configuration names), and ``/diff`` (`GitCli.changes`) also with external diff,
textconv and every filter driver the configuration defines turned off (`_filters_off`), so
no program of the repository's runs. Output is read up to `OUTPUT_LIMIT`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Final, final

import trio

from orchestrator.errors import GitError
from orchestrator.ports import WorkspaceChanges, Worktree

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["EMPTY_TREE", "GIT_TIMEOUT", "OUTPUT_LIMIT", "GitCli", "git_environment"]

GIT_TIMEOUT: Final = 30.0
"""Seconds for one git command: ``worktree add`` checks out the whole tree."""

OUTPUT_LIMIT: Final = 50 * 1024 * 1024
"""Bytes of git output taken (Telegram takes no larger file from a bot)."""

EMPTY_TREE: Final = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
"""git's empty tree: what a repository without commits is compared with."""

_SAFE: Final = ("-c", "core.fsmonitor=false", "-c", "core.quotepath=off", "--no-pager")
"""Options of every call: no fsmonitor hook, paths as they are, no pager."""

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

    async def _run(self, *args: str, cwd: Path, options: tuple[str, ...] = ()) -> str:
        """Run ``git [OPTIONS] ARGS`` in `cwd`; its output, or `GitError` with what git said."""
        try:
            with trio.fail_after(GIT_TIMEOUT):
                done = await trio.run_process(
                    [self._git, *_SAFE, *options, *args],
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
        if len(done.stdout) > OUTPUT_LIMIT:
            raise GitError("the output is larger than Telegram takes (50 MB)")
        return done.stdout.decode(errors="replace")

    async def changes(self, folder: Path) -> WorkspaceChanges | None:
        try:
            inside = await self._run("rev-parse", "--is-inside-work-tree", cwd=folder)
        except GitError as error:
            if "not a git repository" in str(error).lower():
                return None
            raise  # e.g. "dubious ownership": git's words say why
        if inside.strip() != "true":
            return None
        try:
            await self._run("rev-parse", "--verify", "--quiet", "HEAD", cwd=folder)
            base = "HEAD"
        except GitError:
            base = EMPTY_TREE
        safe = await self._filters_off(folder)
        diff = ("diff", "--no-color", "--no-ext-diff", "--no-textconv", base)
        numstat = await self._run(*diff, "--numstat", "--", ".", cwd=folder, options=safe)
        patch = await self._run(*diff, "--", ".", cwd=folder, options=safe)
        others = await self._run(
            "ls-files", "--others", "--exclude-standard", "--", ".", cwd=folder
        )
        return WorkspaceChanges(
            since_commit=base == "HEAD",
            numstat=numstat,
            patch=patch,
            untracked=tuple(line for line in others.splitlines() if line),
        )

    async def _filters_off(self, folder: Path) -> tuple[str, ...]:
        """``-c`` options that empty every filter driver the configuration defines (an empty
        command is no filter: git diff would otherwise run a ``clean`` command on files)."""
        try:
            listed = await self._run(
                "config", "--name-only", "--get-regexp", r"^filter\.", cwd=folder
            )
        except GitError:  # exit 1: no such keys
            return ()
        drivers = {name.rsplit(".", 1)[0] for name in listed.splitlines() if name.count(".") >= 2}
        options: list[str] = []
        for driver in sorted(drivers):
            for key, value in (
                ("clean", ""),
                ("smudge", ""),
                ("process", ""),
                ("required", "false"),
            ):
                options += ["-c", f"{driver}.{key}={value}"]
        return tuple(options)

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
