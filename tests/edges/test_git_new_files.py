"""The files git does not track yet, in ``/diff``'s patch (`orchestrator.edges.git`), on real
repositories in a temporary folder: each text file with its lines, a binary file as binary, a
link as its target (never followed, not even to a named pipe), a repository inside as left
out; the patch applies to the last commit and gives back the working directory; the index is
never touched and no program the repository names runs; past the limits on how many and how
large, files are named with the reason instead."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import trio

from orchestrator.edges import git as git_edge
from orchestrator.edges.git import GitCli
from tests.edges.test_git import make_repository, name_programs_that_leave_marks

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

    from orchestrator.ports import NewFile, WorkspaceChanges

CEILING = 20.0
"""Seconds any one test may take on the trio clock: a git that blocks fails, not hangs."""


async def changes_of(work: Path) -> WorkspaceChanges:
    with trio.fail_after(CEILING):
        found = await GitCli().changes(work)
    assert found is not None
    return found


def by_path(changes: WorkspaceChanges) -> dict[str, NewFile]:
    return {new.path: new for new in changes.new_files}


async def test_new_files_are_in_the_patch_with_their_lines(tmp_path: Path) -> None:
    work = make_repository(tmp_path / "work")
    index = (work / ".git" / "index").read_bytes()
    (tmp_path / "secret.txt").write_text("SECRET outside the working directory\n")
    (work / "notes.txt").write_text("one\ntwo\nthree\n")
    (work / "src").mkdir()
    (work / "src" / "new module.py").write_text("print('hi')\n")
    (work / "-dash.txt").write_text("starts like an option\n")
    (work / "logo.png").write_bytes(b"\x89PNG\x00\x01\x02")
    (work / "empty").write_text("")
    (work / "leak").symlink_to(tmp_path / "secret.txt")
    inner = make_repository(work / "inner")
    (inner / "private.txt").write_text("PRIVATE to the inner repository\n")

    found = await changes_of(work)
    new = by_path(found)
    assert set(new) == {
        "-dash.txt",
        "empty",
        "inner/",
        "leak",
        "logo.png",
        "notes.txt",
        "src/new module.py",
    }
    assert new["notes.txt"].added == 3
    assert "+++ b/notes.txt\n@@ -0,0 +1,3 @@\n+one\n+two\n+three\n" in new["notes.txt"].patch
    assert new["src/new module.py"].added == 1
    assert new["-dash.txt"].patch.startswith("diff --git a/-dash.txt b/-dash.txt\n")
    assert new["empty"].added == 0
    assert "new file mode 100644" in new["empty"].patch
    assert new["logo.png"].added is None
    assert "Binary files /dev/null and b/logo.png differ" in new["logo.png"].patch
    assert new["leak"].added == 1
    assert "new file mode 120000" in new["leak"].patch
    assert f"+{tmp_path / 'secret.txt'}\n\\ No newline at end of file\n" in new["leak"].patch
    assert new["inner/"].left_out == "a git repository of its own"
    whole = "".join(n.patch for n in found.new_files)
    assert "SECRET" not in whole
    assert "PRIVATE" not in whole
    assert not any(n.left_out for n in found.new_files if n.path != "inner/")
    # Nothing was added to the index: git still calls every one of them untracked.
    assert (work / ".git" / "index").read_bytes() == index
    status = await trio.run_process(
        ["git", "-C", str(work), "status", "--porcelain"], capture_stdout=True
    )
    assert b"?? notes.txt\n" in status.stdout


async def test_the_patch_applied_to_the_last_commit_gives_the_working_directory(
    tmp_path: Path,
) -> None:
    """Tracked changes and new files (a link and an awkward name included) in one patch."""
    work = make_repository(tmp_path / "work")
    (work / "README").write_text("hello\nworld\n")
    (work / "docs").mkdir()
    (work / "docs" / "guide.md").write_text("# Guide\n\nStep one.\n")
    (work / 'say "hi"\tnow.txt').write_text("quoted name\n")
    (work / "latest").symlink_to("docs/guide.md")
    found = await changes_of(work)
    patch = found.patch + "".join(new.patch for new in found.new_files)

    copy = tmp_path / "copy"
    await trio.run_process(["git", "clone", "-q", str(work), str(copy)])
    await trio.run_process(["git", "-C", str(copy), "apply", "-"], stdin=patch.encode())
    for name in ("README", "docs/guide.md", 'say "hi"\tnow.txt'):
        assert (copy / name).read_text() == (work / name).read_text()
    assert os.readlink(copy / "latest") == "docs/guide.md"


async def test_a_link_to_a_named_pipe_is_shown_never_read(tmp_path: Path) -> None:
    """git reads through a link to a named pipe given on its command line (2.42 on), and
    reading a pipe nobody writes blocks: a link's patch never comes from git."""
    work = make_repository(tmp_path / "work")
    os.mkfifo(tmp_path / "pipe")
    (work / "to-pipe").symlink_to(tmp_path / "pipe")
    found = await changes_of(work)
    [link] = found.new_files
    assert (link.path, link.added, link.left_out) == ("to-pipe", 1, "")
    assert f"+{tmp_path / 'pipe'}\n" in link.patch


def test_a_new_file_in_a_folder_that_leads_outside_is_left_out(tmp_path: Path) -> None:
    """git does not list files through a linked folder; one swapped in after it listed
    them is not read either."""
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "key.pem").write_text("KEY\n")
    (work / "certs").symlink_to(tmp_path / "outside")
    [look] = git_edge._look_at(work, ("certs/key.pem",))
    assert look == git_edge._LeftOut("its folder leads outside the working directory")


async def test_new_files_run_no_program_the_repository_names(tmp_path: Path) -> None:
    """The filter, textconv and external diff the repository's configuration names apply to
    a new file too (``git diff --no-index`` runs a clean filter): none of them runs."""
    work = make_repository(tmp_path / "work")
    marks = tmp_path / "ran"
    (work / ".git" / "info" / "attributes").write_text("* filter=evil diff=evil\n")
    name_programs_that_leave_marks(work, marks)
    (work / "notes.txt").write_text("lower case\n")
    found = await changes_of(work)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("ran")) == []
    [notes] = found.new_files
    assert notes.added == 1
    assert "+lower case\n" in notes.patch


async def test_past_the_limits_new_files_are_named_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(git_edge, "NEW_FILES", 4)
    monkeypatch.setattr(git_edge, "NEW_FILE_BYTES", 1000)
    monkeypatch.setattr(git_edge, "NEW_FILES_BYTES", 1500)
    work = make_repository(tmp_path / "work")
    (work / "a-small.txt").write_text("small\n")
    (work / "b-big.txt").write_text("x" * 1001)
    (work / "c-fits.txt").write_text("y\n" * 300)  # a patch of some 900 bytes
    (work / "d-overflows.txt").write_text("z\n" * 300)  # would pass the 1500 bytes
    (work / "e-late.txt").write_text("past the count\n")
    found = await changes_of(work)
    assert [(n.path, n.added, n.left_out) for n in found.new_files] == [
        ("a-small.txt", 1, ""),
        ("b-big.txt", None, "larger than 1,000 bytes"),
        ("c-fits.txt", 300, ""),
        ("d-overflows.txt", None, "the patch is full (1,500 bytes of new files)"),
        ("e-late.txt", None, "more than 4 new files"),
    ]
    assert sum(len(n.patch) for n in found.new_files) <= 1500
