"""``/diff`` (and the "Show diff" button): what changed in the working directory, by git.

The answer lists the changed files with their added and removed lines against the last
commit (``git diff HEAD --numstat``; a repository without commits counts from nothing), and
the files git does not track yet; the whole patch follows as a ``.diff`` document (no larger
than Telegram takes, `chat_files.UPLOAD_LIMIT`). Outside a git repository the user is told
so plainly.

git runs as a child process (`trio.run_process`), never through a shell, and outside Codex's
sandbox, so everything is off that would make it run a program the repository names
(the working directory is the agent's, and so is its ``.git/config``): external diff
drivers, textconv, the fsmonitor hook, and the clean filters of every filter driver the
configuration names (`_filters_off`). Output is capped at `OUTPUT_LIMIT`.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Final

import trio

from actors.chat_files import UPLOAD_LIMIT

if TYPE_CHECKING:
    from actors.chat import Chat

__all__ = ["NOT_A_REPOSITORY", "diff_summary", "show_diff"]

logger: Final = logging.getLogger(__name__)

EMPTY_TREE: Final = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
"""git's empty tree: what a repository without commits is compared with."""

OUTPUT_LIMIT: Final = UPLOAD_LIMIT
"""Bytes of git output read; a longer patch is not sent."""

FILES_LISTED: Final = 30
"""Changed files named in the message; the rest are counted (the .diff has them all)."""

SAFE_GIT: Final = (
    "git",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.quotepath=off",
    "--no-pager",
)

NOT_A_REPOSITORY: Final = (
    "The working directory is not a git repository, so I can't tell what changed. "
    "(Ask Codex to run `git init` and commit, and /diff works from then on.)"
)
NO_CHANGES: Final = "No changes: the working directory matches the last commit."


class _GitFailed(Exception):
    """git exited with an error; `str()` is its first line of stderr."""


async def _filters_off(workspace: str) -> tuple[str, ...]:
    """``-c`` options that empty every filter driver the configuration defines (an empty
    command is no filter: git diff would otherwise run a ``clean`` command on the files)."""
    try:
        listed = await _git(workspace, "config", "--name-only", "--get-regexp", r"^filter\.")
    except _GitFailed:  # exit 1: no such keys
        return ()
    drivers = {name.rsplit(".", 1)[0] for name in listed.splitlines() if name.count(".") >= 2}
    options: list[str] = []
    for driver in sorted(drivers):
        for key, value in (("clean", ""), ("smudge", ""), ("process", ""), ("required", "false")):
            options += ["-c", f"{driver}.{key}={value}"]
    return tuple(options)


async def _git(workspace: str, *args: str, options: tuple[str, ...] = ()) -> str:
    """Run git in `workspace` and return its stdout (text)."""
    environment = {
        **os.environ,
        "GIT_OPTIONAL_LOCKS": "0",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_EXTERNAL_DIFF": "",
        "LC_ALL": "C",
    }
    environment.pop("GIT_DIR", None)
    environment.pop("GIT_WORK_TREE", None)
    result = await trio.run_process(
        [*SAFE_GIT, *options, "-C", workspace, *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        stdin=subprocess.DEVNULL,
        env=environment,
    )
    if result.returncode != 0:
        first = result.stderr.decode(errors="replace").strip().splitlines()
        raise _GitFailed(first[0] if first else f"git exited with {result.returncode}")
    if len(result.stdout) > OUTPUT_LIMIT:
        raise _GitFailed("the diff is larger than Telegram takes (50 MB)")
    return result.stdout.decode(errors="replace")


def diff_summary(numstat: str, untracked: list[str]) -> tuple[str, int]:
    """The message's lines for ``git diff --numstat`` output and the untracked files, and
    how many files changed."""
    lines: list[str] = []
    added_total = removed_total = 0
    rows = [row.split("\t", 2) for row in numstat.splitlines() if row.count("\t") >= 2]
    for added, removed, path in rows:
        if added == "-":
            shown = "binary"
        else:
            added_total += int(added)
            removed_total += int(removed)
            shown = f"+{added} -{removed}"
        if len(lines) < FILES_LISTED:
            lines.append(f"{shown}  {path}")
    for path in untracked:
        if len(lines) < FILES_LISTED:
            lines.append(f"new (not in git yet)  {path}")
    count = len(rows) + len(untracked)
    if count > len(lines):
        lines.append(f"… and {count - len(lines)} more (all in the file below)")
    if rows:
        lines.append(f"Total: +{added_total} -{removed_total} in {len(rows)} tracked files")
    return "\n".join(lines), count


async def show_diff(chat: Chat) -> None:
    """Answer ``/diff`` (or a "Show diff" press) with what changed, and the patch as a file."""
    workspace = chat.profile.working_directory
    try:
        inside = await _git(workspace, "rev-parse", "--is-inside-work-tree")
    except _GitFailed as error:
        if "not a git repository" not in str(error).lower():  # e.g. "dubious ownership"
            await chat.out.say(f"git could not read the repository: {error}", plain=True)
            return
        inside = ""
    except OSError as error:  # no git on this machine
        await chat.out.say(f"I can't run git here ({error.strerror}).", plain=True)
        return
    if inside.strip() != "true":
        await chat.out.say(NOT_A_REPOSITORY, plain=True)
        return
    try:
        try:
            await _git(workspace, "rev-parse", "--verify", "--quiet", "HEAD")
            base = "HEAD"
        except _GitFailed:
            base = EMPTY_TREE
        safe = await _filters_off(workspace)
        diff = ("diff", "--no-color", "--no-ext-diff", "--no-textconv", base)
        numstat = await _git(workspace, *diff, "--numstat", "--", ".", options=safe)
        patch = await _git(workspace, *diff, "--", ".", options=safe)
        others = await _git(workspace, "ls-files", "--others", "--exclude-standard", "--", ".")
    except _GitFailed as error:
        await chat.out.say(f"git could not show the changes: {error}", plain=True)
        return
    untracked = [line for line in others.splitlines() if line]
    summary, count = diff_summary(numstat, untracked)
    if count == 0:
        await chat.out.say(NO_CHANGES, plain=True)
        return
    against = "the last commit" if base == "HEAD" else "an empty repository (no commits yet)"
    folder = Path(workspace).name
    text = f"Changes in {folder} against {against}:\n{summary}"
    if not patch:
        await chat.out.say(text, plain=True)
        return
    await chat.out.show(
        f"diff-{secrets.token_hex(4)}",
        text[:3500],
        document=patch.encode(),
        document_name=f"{folder or 'changes'}.diff",
        document_caption="The whole patch",
    )
