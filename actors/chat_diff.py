"""``/diff`` (and the "Show diff" button): what changed in the working directory, by git.

The answer lists the changed files with their added and removed lines against the last
commit (a repository without commits counts from nothing), and the files git does not
track yet; the whole patch follows as a ``.diff`` document. Outside a git repository the
user is told so plainly. git itself is the edge's (`orchestrator.edges.git`, through the
`GitWorktrees` port on `ChatDeps.git`): a small environment, a time limit, and no program
the repository names (hooks, filters, textconv, external diff) ever runs.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Final

from orchestrator.errors import GitError
from orchestrator.words import plural

if TYPE_CHECKING:
    from actors.chat import Chat

__all__ = ["NOT_A_REPOSITORY", "diff_summary", "show_diff"]

FILES_LISTED: Final = 30
"""Changed files named in the message; the rest are counted (the .diff has them all)."""

NOT_A_REPOSITORY: Final = (
    "The working directory is not a git repository, so I can't tell what changed. "
    "(Ask Codex to run `git init` and commit, and /diff works from then on.)"
)
NO_CHANGES: Final = "No changes: the working directory matches the last commit."
NO_GIT: Final = "git is not available to this bot, so I can't show what changed."


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
        lines.append(
            f"Total: +{added_total} -{removed_total} in {plural(len(rows), 'tracked file')}"
        )
    return "\n".join(lines), count


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
    summary, count = diff_summary(changes.numstat, list(changes.untracked))
    if count == 0:
        await chat.out.say(NO_CHANGES, plain=True)
        return
    against = "the last commit" if changes.since_commit else "an empty repository (no commits yet)"
    folder = Path(workspace).name
    text = f"Changes in {folder} against {against}:\n{summary}"
    if not changes.patch:
        await chat.out.say(text, plain=True)
        return
    await chat.out.show(
        f"diff-{secrets.token_hex(4)}",
        text[:3500],
        document=changes.patch.encode(),
        document_name=f"{folder or 'changes'}.diff",
        document_caption=f"The whole patch of the changes in {folder} (the summary follows)",
    )
