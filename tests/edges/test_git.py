"""The git edge (`orchestrator.edges.git`) on a real repository in a temporary folder."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

import pytest

from orchestrator.edges.git import GitCli, git_environment
from orchestrator.errors import GitError

if TYPE_CHECKING:
    from pathlib import Path


def make_repository(folder: Path) -> Path:
    """A git repository with one commit on ``main``."""
    folder.mkdir(parents=True, exist_ok=True)

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("config", "user.email", "bot@example.com")
    git("config", "user.name", "Bot")
    (folder / "README").write_text("hello\n")
    git("add", "README")
    git("commit", "-q", "-m", "first")
    return folder


async def test_add_list_state_and_remove_a_worktree(tmp_path: Path) -> None:
    repository = make_repository(tmp_path / "repo")
    trees = tmp_path / "repo.worktrees"
    git = GitCli()
    assert await git.branch_name_valid("feature/x")
    assert not await git.branch_name_valid("bad..name")
    assert not await git.branch_name_valid("-rf")
    assert not await git.branch_name_valid("a\0b")  # no argv can hold it: not a crash
    assert await git.add(repository, trees / "feature", "feature") is True
    assert (trees / "feature" / "README").read_text() == "hello\n"
    state = await git.state(trees / "feature")
    assert (state.branch, state.dirty, state.ahead) == ("feature", False, None)
    listed = await git.worktrees(repository)
    assert [w.branch for w in listed] == ["main", "feature"]
    (trees / "feature" / "new.txt").write_text("change")
    assert (await git.state(trees / "feature")).dirty
    with pytest.raises(GitError, match="untracked files"):
        await git.remove(repository, trees / "feature")
    (trees / "feature" / "new.txt").unlink()
    await git.remove(repository, trees / "feature")
    assert not (trees / "feature").exists()
    # The branch stays: adding it again checks out the existing branch.
    assert await git.add(repository, trees / "feature", "feature") is False


async def test_git_refusals_carry_its_words(tmp_path: Path) -> None:
    folder = tmp_path / "not-a-repo"
    folder.mkdir()
    with pytest.raises(GitError, match="not a git repository"):
        await GitCli().worktrees(folder)
    with pytest.raises(GitError, match="cannot run git"):
        await GitCli(git=str(tmp_path / "no-git")).worktrees(folder)


def test_the_bot_token_never_reaches_git() -> None:
    env = git_environment({"PATH": "/bin", "TELEGRAM_BOT_TOKEN": "1:x", "HOME": "/h"})
    assert env == {"PATH": "/bin", "HOME": "/h", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


def git_in(work: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(work), *args], check=True, capture_output=True)


def name_programs_that_leave_marks(work: Path, marks: Path) -> None:
    """Give `work`'s configuration every program git could run for a diff (clean and
    process filters, textconv, external diff, fsmonitor); each leaves ``MARKS-NAME`` if it
    runs, and the clean filter upper-cases what it reads."""
    for key, command in (
        ("filter.evil.clean", f"sh -c 'touch {marks}-clean; tr a-z A-Z'"),
        ("filter.evil.process", f"sh -c 'touch {marks}-process'"),
        ("diff.evil.textconv", f"sh -c 'touch {marks}-textconv; cat'"),
        ("diff.evil.command", f"sh -c 'touch {marks}-command'"),
        ("diff.external", f"sh -c 'touch {marks}-external'"),
        ("core.fsmonitor", f"touch {marks}-fsmonitor"),
    ):
        git_in(work, "config", key, command)


async def test_changes_run_no_program_the_repository_names(tmp_path: Path) -> None:
    """The repository's configuration (the agent's to write) names programs: the fsmonitor
    hook, a filter driver with a clean and a process command, a textconv and an external
    diff. git runs outside Codex's sandbox, so none of them may run; the diff is still right."""
    work = tmp_path / "work"
    work.mkdir()
    git = GitCli()
    assert await git.changes(work) is None  # not a repository

    git_in(work, "init", "-q")
    (work / "new.txt").write_text("first\n")
    fresh = await git.changes(work)
    assert fresh is not None
    assert not fresh.since_commit  # no commit yet: against the empty tree
    assert [new.path for new in fresh.new_files] == ["new.txt"]

    git_in(work, "add", "new.txt")
    git_in(work, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "x")
    clean = await git.changes(work)
    assert clean is not None
    assert (clean.since_commit, clean.numstat, clean.patch, clean.new_files) == (True, "", "", ())

    marks = tmp_path / "ran"
    (work / ".gitattributes").write_text("* filter=evil diff=evil\n")
    name_programs_that_leave_marks(work, marks)
    (work / "new.txt").write_text("first\nsecond\n")
    changed = await git.changes(work)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("ran")) == []
    assert changed is not None
    assert changed.numstat == "1\t0\tnew.txt\n"
    assert "+second\n" in changed.patch
    assert [new.path for new in changed.new_files] == [".gitattributes"]


async def test_state_runs_no_program_the_repository_names(tmp_path: Path) -> None:
    """``git status`` (a result's "Show diff" after a command, ``/branch``'s list) may run a
    clean filter on a file whose stat changed, and the fsmonitor hook: none of them runs."""
    work = tmp_path / "work"
    work.mkdir()
    git_in(work, "init", "-q")
    (work / "a.txt").write_text("first\n")
    (work / ".gitattributes").write_text("* filter=evil\n")
    git_in(work, "add", ".")
    git_in(work, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "x")
    marks = tmp_path / "ran"
    name_programs_that_leave_marks(work, marks)
    (work / "a.txt").write_text("first\nsecond\n")
    state = await GitCli().state(work)
    assert state.dirty
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("ran")) == []
