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
