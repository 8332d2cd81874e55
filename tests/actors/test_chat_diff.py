"""``/diff`` in the chat, over an in-memory git (`tests.fakes.git.FakeGit`): what it says
outside a repository, with nothing changed, with changes (the summary, then the patch as a
``.diff`` file), when git refuses, and without git. The git edge itself, on real
repositories that name programs no /diff may run, is tested in tests/edges/test_git.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from actors.chat_diff import NO_CHANGES, NO_GIT, NOT_A_REPOSITORY, show_diff
from orchestrator.errors import GitError
from orchestrator.ports import WorkspaceChanges
from tests.fakes.git import FakeGit

if TYPE_CHECKING:
    from pathlib import Path


@dataclass
class _Out:
    said: list[str] = field(default_factory=list)
    shown: list[tuple[str, str, bytes]] = field(default_factory=list)

    async def say(self, text: str, **_: Any) -> None:
        self.said.append(text)

    async def show(self, slot: str, text: str, **kw: Any) -> None:
        self.shown.append((text, kw["document_name"], kw["document"]))


@dataclass
class _Profile:
    working_directory: str


@dataclass
class _Deps:
    git: Any


@dataclass
class _Chat:
    profile: _Profile
    deps: _Deps
    out: _Out = field(default_factory=_Out)


class _Refusing(FakeGit):
    async def changes(self, folder: Path) -> WorkspaceChanges | None:
        raise GitError("detected dubious ownership in repository")


async def test_diff_says_what_changed_and_sends_the_patch(tmp_path: Path) -> None:
    git = FakeGit()
    chat = _Chat(_Profile(str(tmp_path / "work")), _Deps(git))
    await show_diff(cast("Any", chat))
    git.diff = WorkspaceChanges(since_commit=True, numstat="", patch="")
    await show_diff(cast("Any", chat))
    assert chat.out.said == [NOT_A_REPOSITORY, NO_CHANGES]

    git.diff = WorkspaceChanges(
        since_commit=True,
        numstat="2\t1\tsrc/app.py\n-\t-\tlogo.png\n",
        patch="--- a/src/app.py\n+++ b/src/app.py\n",
        untracked=("notes.txt",),
    )
    await show_diff(cast("Any", chat))
    [(summary, name, patch)] = chat.out.shown
    assert summary.startswith("Changes in work against the last commit:\n")
    assert "+2 -1  src/app.py" in summary
    assert "binary  logo.png" in summary
    assert "new (not in git yet)  notes.txt" in summary
    assert "Total: +2 -1 in 2 tracked files" in summary
    assert (name, patch) == ("work.diff", b"--- a/src/app.py\n+++ b/src/app.py\n")


async def test_diff_without_git_or_refused_by_git_says_so(tmp_path: Path) -> None:
    chat = _Chat(_Profile(str(tmp_path)), _Deps(None))
    await show_diff(cast("Any", chat))
    chat.deps.git = _Refusing()
    await show_diff(cast("Any", chat))
    assert chat.out.said == [
        NO_GIT,
        "git could not show the changes: detected dubious ownership in repository",
    ]
