"""``/diff`` in the chat, over an in-memory git (`tests.fakes.git.FakeGit`): what it says
outside a repository, with nothing changed, with changes (the summary, then the patch as a
``.diff`` file, new files included), when git refuses, and without git; new files that are
``.env`` files or the bot's own are kept out of the patch. The git edge itself, on real
repositories that name programs no /diff may run, is tested in tests/edges/test_git.py and
tests/edges/test_git_new_files.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import msgspec

from actors.chat_diff import NO_CHANGES, NO_GIT, NOT_A_REPOSITORY, diff_summary, show_diff
from orchestrator.errors import GitError
from orchestrator.ports import NewFile, WorkspaceChanges
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
    own_files: tuple[str, ...] = ()


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
    assert "`" not in NOT_A_REPOSITORY  # said as plain text: a backtick would show as typed

    git.diff = WorkspaceChanges(
        since_commit=True,
        numstat="2\t1\tsrc/app.py\n-\t-\tlogo.png\n",
        patch="--- a/src/app.py\n+++ b/src/app.py\n",
        new_files=(NewFile(path="notes.txt", added=2, patch=NOTES_PATCH),),
    )
    await show_diff(cast("Any", chat))
    [(summary, name, patch)] = chat.out.shown
    assert summary.splitlines() == [
        "Changes in work against the last commit:",
        "+2 -1  src/app.py",
        "binary  logo.png",
        "new  +2  notes.txt",
        "Total: +2 -1 in 2 tracked files, +2 in 1 new file",
    ]
    assert name == "work.diff"
    assert patch == b"--- a/src/app.py\n+++ b/src/app.py\n" + NOTES_PATCH.encode()


NOTES_PATCH = (
    "diff --git a/notes.txt b/notes.txt\nnew file mode 100644\n--- /dev/null\n"
    "+++ b/notes.txt\n@@ -0,0 +1,2 @@\n+one\n+two\n"
)


def _added(path: str, text: str) -> NewFile:
    return NewFile(path=path, added=1, patch=f"+++ b/{path}\n@@ -0,0 +1 @@\n+{text}\n")


async def test_new_env_files_and_the_bots_own_files_stay_out_of_the_patch(
    tmp_path: Path,
) -> None:
    """What /get refuses, /diff does not send as a new file's patch: a .env file, and the
    bot's config under another name (a hard link). Both are listed, with why."""
    work = tmp_path / "work"
    (work / "deploy").mkdir(parents=True)
    config = tmp_path / "conf.toml"
    config.write_text("[telegram]\nallowed_users = [1]\n")
    (work / "copy.toml").hardlink_to(config)
    (work / "notes.txt").write_text("kept\n")
    git = FakeGit()
    git.diff = WorkspaceChanges(
        since_commit=True,
        numstat="",
        patch="",
        new_files=(
            _added("copy.toml", "allowed_users = [1]"),
            _added("deploy/.env.production", "API_KEY=hunter2"),
            _added("notes.txt", "kept"),
        ),
    )
    chat = _Chat(_Profile(str(work)), _Deps(git, own_files=(str(config),)))
    await show_diff(cast("Any", chat))
    [(summary, _name, patch)] = chat.out.shown
    assert summary.splitlines()[1:] == [
        "new  (left out: one of the bot's own files)  copy.toml",
        "new  (left out: holds secrets (a .env file))  deploy/.env.production",
        "new  +1  notes.txt",
        "Total: +1 in 1 new file",
        "Left out of the patch: 2 new files "
        "(one of the bot's own files; holds secrets (a .env file))",
    ]
    assert patch == b"+++ b/notes.txt\n@@ -0,0 +1 @@\n+kept\n"

    # Nothing left to send as a patch: the summary alone, which says why.
    git.diff = msgspec.structs.replace(git.diff, new_files=git.diff.new_files[:2])
    await show_diff(cast("Any", chat))
    [alone] = chat.out.said
    assert alone.endswith(
        "Left out of the patch: 2 new files "
        "(one of the bot's own files; holds secrets (a .env file))"
    )


async def test_a_long_list_says_the_patch_is_not_whole_when_files_were_left_out(
    tmp_path: Path,
) -> None:
    many = tuple(_added(f"f{n:02}.txt", "x") for n in range(40))
    late = NewFile(path="z.txt", left_out="more than 100 new files")
    git = FakeGit()
    git.diff = WorkspaceChanges(since_commit=False, numstat="", patch="", new_files=(*many, late))
    chat = _Chat(_Profile(str(tmp_path / "work")), _Deps(git))
    await show_diff(cast("Any", chat))
    [(summary, _name, patch)] = chat.out.shown
    lines = summary.splitlines()
    assert lines[0] == "Changes in work against an empty repository (no commits yet):"
    assert lines[-3:] == [
        "… and 11 more",
        "Total: +40 in 40 new files",
        "Left out of the patch: 1 new file (more than 100 new files)",
    ]
    assert patch.count(b"+++ b/") == 40


async def test_diff_without_git_or_refused_by_git_says_so(tmp_path: Path) -> None:
    chat = _Chat(_Profile(str(tmp_path)), _Deps(None))
    await show_diff(cast("Any", chat))
    chat.deps.git = _Refusing()
    await show_diff(cast("Any", chat))
    assert chat.out.said == [
        NO_GIT,
        "git could not show the changes: detected dubious ownership in repository",
    ]


def test_odd_names_are_shown_in_git_s_own_quoting_tracked_or_new() -> None:
    """git quotes a tracked file's name in ``--numstat`` (C escapes in double quotes); a new
    file's name is quoted the same way, so one list never shows two styles. A name without a
    quote, backslash or control character is shown as it is, non-ASCII included."""
    odd = 'say "hi"\tnow.txt'
    numstat = '1\t0\t"say \\"hi\\"\\tnow.txt"\n'  # as git prints it with core.quotepath=off
    new_files = (
        NewFile(path=f"new {odd}", added=1, patch="+x\n"),
        NewFile(path="노트.txt", added=1, patch="+y\n"),
        NewFile(path="bell\a.txt", added=1, patch="+z\n"),
    )
    summary, count = diff_summary(numstat, new_files)
    assert summary.splitlines()[:4] == [
        '+1 -0  "say \\"hi\\"\\tnow.txt"',
        'new  +1  "new say \\"hi\\"\\tnow.txt"',
        "new  +1  노트.txt",
        'new  +1  "bell\\a.txt"',
    ]
    assert count == 4
