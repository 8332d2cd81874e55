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

Files git does not track yet are what Codex makes most, and ``git diff`` leaves them out:
each gets its own ``git diff --no-index /dev/null FILE`` under the same options, which reads
the file and touches neither the index nor the repository (no ``git add``). Only regular
files go to git, within `NEW_FILES`, `NEW_FILE_BYTES` and `NEW_FILES_BYTES` and inside the
working directory once its folders' links are resolved; a link's patch is written here from
its target (as git shows a tracked link) and is never followed (git would read through a
link to a named pipe). What is left out is named with the reason (`NewFile.left_out`).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Final, NamedTuple, final

import trio

from orchestrator.errors import GitError
from orchestrator.ports import NewFile, WorkspaceChanges, Worktree
from orchestrator.words import git_quoted

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "EMPTY_TREE",
    "GIT_TIMEOUT",
    "NEW_FILES",
    "NEW_FILES_BYTES",
    "NEW_FILE_BYTES",
    "OUTPUT_LIMIT",
    "GitCli",
    "git_environment",
]

GIT_TIMEOUT: Final = 30.0
"""Seconds for one git command: ``worktree add`` checks out the whole tree."""

OUTPUT_LIMIT: Final = 50 * 1024 * 1024
"""Bytes of git output taken (Telegram takes no larger file from a bot)."""

EMPTY_TREE: Final = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
"""git's empty tree: what a repository without commits is compared with."""

NEW_FILES: Final = 100
"""Untracked files put in ``/diff``'s patch (one git process each); the rest are named."""

NEW_FILE_BYTES: Final = 1024 * 1024
"""Bytes of one untracked file put in the patch: a larger one is named, not shown."""

NEW_FILES_BYTES: Final = 10 * 1024 * 1024
"""Bytes of all the untracked files' patches together."""

_MB: Final = 1024 * 1024

_NO_PROGRAMS: Final = ("--no-color", "--no-ext-diff", "--no-textconv")
"""``git diff`` options: plain output, and no external diff or textconv program."""

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

    async def _run(
        self, *args: str, cwd: Path, options: tuple[str, ...] = (), differ_ok: bool = False
    ) -> str:
        """Run ``git [OPTIONS] ARGS`` in `cwd`; its output, or `GitError` with what git said.
        `differ_ok`: exit status 1 with output is an answer (``diff --no-index`` found
        differences); without output it is still an error."""
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
        differed = differ_ok and done.returncode == 1 and bool(done.stdout)
        if done.returncode != 0 and not differed:
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
        diff = ("diff", *_NO_PROGRAMS, base)
        numstat = await self._run(*diff, "--numstat", "--", ".", cwd=folder, options=safe)
        patch = await self._run(*diff, "--", ".", cwd=folder, options=safe)
        others = await self._run(
            "ls-files", "-z", "--others", "--exclude-standard", "--", ".", cwd=folder
        )
        untracked = tuple(name for name in others.split("\0") if name)
        room = min(NEW_FILES_BYTES, OUTPUT_LIMIT - len(patch))
        return WorkspaceChanges(
            since_commit=base == "HEAD",
            numstat=numstat,
            patch=patch,
            new_files=await self._new_files(folder, untracked, safe, room),
        )

    async def _new_files(
        self, folder: Path, untracked: tuple[str, ...], safe: tuple[str, ...], room: int
    ) -> tuple[NewFile, ...]:
        """Each of the `untracked` files with its patch, the patches within `room` bytes
        together and all of them within `GIT_TIMEOUT`; or why one was left out."""
        taken = untracked[:NEW_FILES]
        looks = await trio.to_thread.run_sync(_look_at, folder, taken)
        too_large = f"larger than {_size(NEW_FILE_BYTES)}"
        full = f"the patch is full ({_size(NEW_FILES_BYTES)} of new files)"
        found: list[NewFile] = []
        with trio.move_on_after(GIT_TIMEOUT):
            for path, look in zip(taken, looks, strict=True):
                if isinstance(look, _LeftOut):
                    made = NewFile(path=path, left_out=look.why)
                elif isinstance(look, _Link):
                    made = _link_patch(path, look.target)
                elif look.size > NEW_FILE_BYTES:
                    made = NewFile(path=path, left_out=too_large)
                elif look.size > room:
                    made = NewFile(path=path, left_out=full)
                else:
                    made = await self._file_patch(folder, path, safe)
                if len(made.patch) > room:
                    made = NewFile(path=path, left_out=full)
                room -= len(made.patch)
                found.append(made)
        late = [NewFile(path=path, left_out="git took too long") for path in taken[len(found) :]]
        past = f"more than {NEW_FILES} new files"
        rest = [NewFile(path=path, left_out=past) for path in untracked[NEW_FILES:]]
        return (*found, *late, *rest)

    async def _file_patch(self, folder: Path, path: str, safe: tuple[str, ...]) -> NewFile:
        """The regular file `path` as added (``git diff --no-index /dev/null PATH``)."""
        try:
            said = await self._run(
                "diff",
                "--no-index",
                *_NO_PROGRAMS,
                "--numstat",
                "--patch",
                "--",
                "/dev/null",
                path,
                cwd=folder,
                options=safe,
                differ_ok=True,
            )
        except GitError:  # gone meanwhile, or no longer a file
            return NewFile(path=path, left_out="git could not read it")
        counts, _, patch = said.partition("\n\n")
        if not patch:
            return NewFile(path=path, left_out="git could not read it")
        added = counts.split("\t", 1)[0]
        return NewFile(path=path, added=int(added) if added.isdigit() else None, patch=patch)

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
        if "\0" in name:  # no argument can carry it (a message can: "/branch a\x00b")
            return False
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
        safe = await self._filters_off(folder)  # status may run a clean filter, as diff does
        status = await self._run("status", "--porcelain=v1", "--branch", cwd=folder, options=safe)
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


class _LeftOut(NamedTuple):
    why: str


class _Link(NamedTuple):
    target: str


class _Regular(NamedTuple):
    size: int


def _size(count: int) -> str:
    """A limit in words: ``1 MB``, ``1,500 bytes``."""
    return f"{count // _MB} MB" if count % _MB == 0 else f"{count:,} bytes"


def _look_at(folder: Path, paths: tuple[str, ...]) -> list[_LeftOut | _Link | _Regular]:
    """What each of `paths` in `folder` is (blocking), without following it: a regular
    file (its size), a link (its target), or why it stays out of the patch."""
    root = folder.resolve()
    return [_look(root, path) for path in paths]


def _look(root: Path, path: str) -> _LeftOut | _Link | _Regular:
    if path.endswith("/"):
        return _LeftOut("a git repository of its own")
    where = root / path
    try:
        inside = where.parent.resolve(strict=True).is_relative_to(root)
        info = os.lstat(where)
        if inside and stat.S_ISLNK(info.st_mode):
            return _Link(os.fsencode(os.readlink(where)).decode(errors="replace"))
    except (OSError, RuntimeError):
        return _LeftOut("gone, or not readable")
    if not inside:
        return _LeftOut("its folder leads outside the working directory")
    if not stat.S_ISREG(info.st_mode):
        return _LeftOut("not a plain file")
    return _Regular(info.st_size)


def _link_patch(path: str, target: str) -> NewFile:
    """The patch git shows for the link `path` added: its `target` as the content."""
    lines = target.split("\n")
    old, new = git_quoted(f"a/{path}"), git_quoted(f"b/{path}")
    span = "1" if len(lines) == 1 else f"1,{len(lines)}"
    patch = (
        f"diff --git {old} {new}\nnew file mode 120000\n--- /dev/null\n+++ {new}\n"
        f"@@ -0,0 +{span} @@\n"
        + "".join(f"+{line}\n" for line in lines)
        + "\\ No newline at end of file\n"
    )
    return NewFile(path=path, added=len(lines), patch=patch)
