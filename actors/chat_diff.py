"""``/diff`` (and the "Show diff" button): what changed in the working directory, by git.

The answer lists the changed files with their added and removed lines against the last
commit (a repository without commits counts from nothing), and the files git does not
track yet with their lines (``new  +12  notes.txt``); the whole patch follows as a ``.diff``
document, new files included. Outside a git repository the user is told so plainly. git
itself is the edge's (`orchestrator.edges.git`, through the `GitWorktrees` port on
`ChatDeps.git`): a small environment, a time limit, and no program the repository names
(hooks, filters, textconv, external diff) ever runs; it also bounds how many and how large
the new files in the patch are.

A new file's patch is its whole content, so what ``/get`` refuses stays out of it here too:
``.env`` files and the bot's own files under any name (`ChatDeps.own_files`, a hard link
included). A new file left out of the patch is still listed, with the reason, and the
message says how many were left out.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Final

import msgspec

from orchestrator import disk
from orchestrator.errors import GitError
from orchestrator.words import git_quoted, plural
from orchestrator.workspace_files import identities, is_env_file, is_own

if TYPE_CHECKING:
    from collections.abc import Sequence

    from actors.chat import Chat
    from orchestrator.ports import NewFile

__all__ = ["NOT_A_REPOSITORY", "diff_summary", "show_diff"]

FILES_LISTED: Final = 30
"""Changed files named in the message; the rest are counted (the .diff has them all)."""

NOT_A_REPOSITORY: Final = (
    "The working directory is not a git repository, so I can't tell what changed. "
    "(Ask Codex to run “git init” and commit, and /diff works from then on.)"
)
NO_CHANGES: Final = "No changes: the working directory matches the last commit."
NO_GIT: Final = "git is not available to this bot, so I can't show what changed."

ENV_FILE: Final = "holds secrets (a .env file)"
OWN_FILE: Final = "one of the bot's own files"
"""Why a new file stays out of the patch though git showed it (`withhold_secrets`)."""


def diff_summary(numstat: str, new_files: Sequence[NewFile]) -> tuple[str, int]:
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
    new_added = new_in_patch = 0
    reasons: dict[str, None] = {}  # why new files were left out, in order, once each
    for new in new_files:
        if new.left_out:
            reasons[new.left_out] = None
            shown = f"(left out: {new.left_out})"
        elif not new.patch:
            shown = ""  # no patch and no reason: a port that only names the file
        elif new.added is None:
            new_in_patch += 1
            shown = "binary"
        else:
            new_in_patch += 1
            new_added += new.added
            shown = f"+{new.added}"
        if len(lines) < FILES_LISTED:
            lines.append("  ".join(part for part in ("new", shown, git_quoted(new.path)) if part))
    count = len(rows) + len(new_files)
    if count > len(lines):
        below = "" if reasons else " (all in the file below)"
        lines.append(f"… and {count - len(lines)} more{below}")
    totals = []
    if rows:
        totals.append(f"+{added_total} -{removed_total} in {plural(len(rows), 'tracked file')}")
    if new_in_patch:
        totals.append(f"+{new_added} in {plural(new_in_patch, 'new file')}")
    if totals:
        lines.append(f"Total: {', '.join(totals)}")
    left_out = sum(1 for new in new_files if new.left_out)
    if left_out:
        lines.append(
            f"Left out of the patch: {plural(left_out, 'new file')} ({'; '.join(reasons)})"
        )
    return "\n".join(lines), count


def withhold_secrets(
    root: Path, new_files: Sequence[NewFile], own_files: Sequence[str]
) -> tuple[NewFile, ...]:
    """`new_files` with the patch of each ``.env`` file and of each of the bot's own files
    (by identity, not following a link) taken out, and why (blocking)."""
    own = identities(own_files)
    kept: list[NewFile] = []
    for new in new_files:
        why = ""
        if new.patch and is_env_file(PurePosixPath(new.path).name):
            why = ENV_FILE
        elif new.patch and own:
            try:
                info = os.lstat(root / new.path)
            except OSError:
                pass
            else:
                why = OWN_FILE if is_own(info, own) else ""
        if why:
            new = msgspec.structs.replace(new, added=None, patch="", left_out=why)
        kept.append(new)
    return tuple(kept)


async def show_diff(chat: Chat) -> None:
    """Answer ``/diff`` (or a "Show diff" press) with what changed, and the patch as a file."""
    git = chat.deps.git
    if git is None:
        await chat.out.say(NO_GIT, plain=True)
        return
    workspace = chat.profile.working_directory
    try:
        changes = await git.changes(Path(workspace))
    except GitError as error:
        await chat.out.say(f"git could not show the changes: {error}", plain=True)
        return
    if changes is None:
        await chat.out.say(NOT_A_REPOSITORY, plain=True)
        return
    new_files = await disk.run_sync(
        withhold_secrets, Path(workspace), changes.new_files, chat.deps.own_files
    )
    summary, count = diff_summary(changes.numstat, new_files)
    if count == 0:
        await chat.out.say(NO_CHANGES, plain=True)
        return
    against = "the last commit" if changes.since_commit else "an empty repository (no commits yet)"
    folder = Path(workspace).name
    text = f"Changes in {folder} against {against}:\n{summary}"
    patch = changes.patch + "".join(new.patch for new in new_files)
    if not patch:
        await chat.out.say(text, plain=True)
        return
    await chat.out.show(
        f"diff-{secrets.token_hex(4)}",
        text[:3500],
        document=patch.encode(),
        document_name=f"{folder or 'changes'}.diff",
        document_caption=f"The whole patch of the changes in {folder} (the summary follows)",
    )
