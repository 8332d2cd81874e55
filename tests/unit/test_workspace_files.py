"""`orchestrator.workspace_files`: names from users made safe, nothing overwritten, what /get
may read (never outside the working directory, through a link, into state_dir or a .env),
folders zipped without links, photos kept privately and pruned after their retention."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import pytest

from actors.chat_diff import diff_summary
from orchestrator.ports import NewFile
from orchestrator.redaction import REDACTED
from orchestrator.workspace_files import (
    NAME_BYTES,
    Refused,
    TooBig,
    identities,
    in_git_work_tree,
    is_env_file,
    prune_images,
    read_limited,
    readable_target,
    safe_name,
    save_new,
    store_image,
    zip_folder,
)

if TYPE_CHECKING:
    from pathlib import Path

HERE = PurePosixPath(".")
"""The working directory itself, as /get names it relative to itself."""


@pytest.mark.parametrize(
    ("sent", "saved"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("/abs/path/notes.txt", "notes.txt"),
        (".env", "env"),
        ("...hidden", "hidden"),
        ("..", "file"),
        ("", "file"),
        ("a\x00b\x07c.txt", "abc.txt"),
        ("evil\u202etxt.exe", "eviltxt.exe"),
        ("zero\u200bwidth.md", "zerowidth.md"),
        ("  spaced   out .txt ", "spaced out.txt"),
        ("tab\tand\nnewline.log", "tabandnewline.log"),
    ],
)
def test_a_sent_name_loses_folders_leading_dots_and_control_characters(
    sent: str, saved: str
) -> None:
    assert safe_name(sent) == saved


def test_a_long_name_is_cut_to_the_limit_keeping_its_extension() -> None:
    name = safe_name("é" * 300 + ".tar")
    assert name.endswith(".tar")
    assert len(name.encode()) <= NAME_BYTES
    name.encode().decode()  # not cut inside a character


def test_the_fallback_names_a_file_without_a_usable_name() -> None:
    assert safe_name("\x01\x02", fallback="file-7") == "file-7"


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    inbox = PurePosixPath("inbox")
    first = save_new(tmp_path, inbox, "a.txt", b"one")
    second = save_new(tmp_path, inbox, "a.txt", b"two")
    third = save_new(tmp_path, inbox, "a.txt", b"three")
    assert [p.name for p in (first, second, third)] == ["a.txt", "a (2).txt", "a (3).txt"]
    assert first == PurePosixPath("inbox/a.txt")
    assert (tmp_path / first).read_bytes() == b"one"
    assert (tmp_path / second).read_bytes() == b"two"


def test_a_link_in_the_way_is_not_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.txt").symlink_to(outside)
    saved = save_new(tmp_path, PurePosixPath("inbox"), "a.txt", b"new")
    assert saved.name == "a (2).txt"
    assert outside.read_text() == "keep"


def test_an_inbox_swapped_for_a_link_after_the_check_is_not_written_through(
    tmp_path: Path,
) -> None:
    """The agent could make the inbox (or a folder on its way) a link once it was checked:
    the file is refused, not saved where the link leads."""
    work = tmp_path / "work"
    (work / "files").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (work / "files").rmdir()
    (work / "files").symlink_to(elsewhere)
    with pytest.raises(Refused, match="changed while I was saving into it"):
        save_new(work, PurePosixPath("files"), "a.txt", b"from the user")
    assert list(elsewhere.iterdir()) == []


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    (work / "src").mkdir(parents=True)
    (work / "src" / "main.py").write_text("print('hi')\n")
    (work / ".env").write_text("TOKEN=secret\n")
    (tmp_path / "secret.txt").write_text("outside\n")
    (work / "escape").symlink_to(tmp_path / "secret.txt")
    (work / "escape_dir").symlink_to(tmp_path)
    (work / "inner_link").symlink_to(work / "src" / "main.py")
    return work


def test_get_reads_files_and_folders_inside_the_working_directory(
    workspace: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    assert readable_target(workspace, "src/main.py", state) == workspace / "src" / "main.py"
    assert readable_target(workspace, str(workspace / "src"), state) == workspace / "src"
    assert readable_target(workspace, "inner_link", state) == workspace / "src" / "main.py"
    assert readable_target(workspace, ".", state) == workspace


@pytest.mark.parametrize(
    ("requested", "why"),
    [
        ("../secret.txt", "outside the working directory"),
        ("/etc/passwd", "outside the working directory"),
        ("escape", "outside the working directory"),
        ("escape_dir/secret.txt", "outside the working directory"),
        ("src/../../secret.txt", "outside the working directory"),
        (".env", "holds secrets"),
        ("nothing/here", "There is no"),
        ("", "Say which file"),
        # Each of these crashed the chat ("your session was reset") before, as asked again.
        ("src/a\0b", "There is no"),  # a message can carry a NUL, a path cannot
        ("~no-such-user-here/x", "outside the working directory"),  # ~name: nobody here
        ("y" * 300, "There is no"),  # longer than a file name can be
    ],
)
def test_get_refuses_what_leads_out_or_holds_secrets(
    workspace: Path, tmp_path: Path, requested: str, why: str
) -> None:
    with pytest.raises(Refused, match=why):
        readable_target(workspace, requested, tmp_path / "state")


def test_a_refusal_names_a_long_or_odd_path_on_one_short_line(
    workspace: Path, tmp_path: Path
) -> None:
    """A pasted 5,000-character path, or one with a line break and a direction control,
    comes back as one line of the bot's sentence, not as three messages or reversed text."""
    requested = "missing/\u202eevil\n" + "x" * 5000
    with pytest.raises(Refused) as refusal:
        readable_target(workspace, requested, tmp_path / "state")
    text = str(refusal.value)
    assert text.startswith("There is no missing/evil x")
    assert text.endswith("… in the working directory.")
    assert "\n" not in text
    assert "\u202e" not in text
    assert len(text) < 100 + len("There is no  in the working directory.") + 1
    with pytest.raises(Refused, match=r"^That path is only invisible characters"):
        readable_target(workspace, "\u202e\u2066", tmp_path / "state")  # nothing to show


def test_get_refuses_the_bots_own_state_even_inside_the_workspace(tmp_path: Path) -> None:
    """The config check keeps state_dir out of every workspace; this is the second lock."""
    work = tmp_path / "work"
    (work / "state").mkdir(parents=True)
    (work / "state" / "session.key").write_text("k")
    with pytest.raises(Refused, match="belongs to the bot"):
        readable_target(work, "state/session.key", work / "state")


def test_the_whole_env_family_is_refused_and_left_out_of_zips(workspace: Path) -> None:
    family = [".env.production", ".env.local", ".env.bak", ".env~", ".envrc", ".ENV"]
    for name in family:
        (workspace / "src" / name).write_text("TOKEN=1")
        with pytest.raises(Refused, match="holds secrets"):
            readable_target(workspace, f"src/{name}", workspace.parent / "state")
    (workspace / "src" / ".environment.md").write_text("not a secret")
    assert is_env_file(".environment.md") is False
    data, _count = zip_folder(workspace, PurePosixPath("src"), 10_000_000)
    assert sorted(zipfile.ZipFile(io.BytesIO(data)).namelist()) == [".environment.md", "main.py"]


def test_get_refuses_git_folders_however_they_are_named(workspace: Path) -> None:
    """A .git folder's config can hold a remote's credentials: refused as asked (a folder
    inside, a worktree's .git file, an absolute path, one not there) and through a link,
    while names that only begin with .git are files like any other."""
    state = workspace.parent / "state"
    (workspace / ".git").mkdir()
    (workspace / ".git" / "config").write_text("url = https://user:secret@example.com/r\n")
    (workspace / "lib" / ".git").mkdir(parents=True)
    (workspace / "lib" / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (workspace / "tree").mkdir()
    (workspace / "tree" / ".git").write_text("gitdir: ../.git/worktrees/tree\n")
    (workspace / "meta").symlink_to(workspace / ".git")
    (workspace / "settings").symlink_to(workspace / ".git" / "config")
    asked = [
        ".git",
        ".git/",
        "./.git/config",
        ".git/no-such-file",
        "lib/.git/HEAD",
        "tree/.git",
        "src/../.git/config",
        ".GIT/config",
        str(workspace / ".git" / "config"),
        "meta",
        "meta/config",
        "settings",
    ]
    for requested in asked:
        with pytest.raises(Refused, match=r"is git's own data \(a \.git folder"):
            readable_target(workspace, requested, state)
    for name in (".gitignore", ".github", "my.git"):
        (workspace / name).write_text("fine\n")
        assert readable_target(workspace, name, state) == workspace / name


def test_a_folder_is_zipped_without_links_git_or_env(workspace: Path) -> None:
    (workspace / ".git").mkdir()
    (workspace / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    os.mkfifo(workspace / "src" / "pipe")  # would hang a plain read: left out
    data, count = zip_folder(workspace, HERE, 10_000_000)
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.namelist() == ["src/main.py"]
    assert archive.read("src/main.py") == b"print('hi')\n"
    assert count == 1
    data, count = zip_folder(workspace, PurePosixPath("src"), 10_000_000)
    assert zipfile.ZipFile(io.BytesIO(data)).namelist() == ["main.py"]


def test_a_folder_or_file_past_the_limit_is_too_big(workspace: Path) -> None:
    """A file's own size is exact; a folder's count stops past the limit, whichever of its
    files crossed it, and says only that."""
    (workspace / "a.bin").write_bytes(b"x" * 600)
    (workspace / "big.bin").write_bytes(b"x" * 5000)
    with pytest.raises(TooBig) as folder:
        zip_folder(workspace, HERE, 1000)
    assert (folder.value.size, folder.value.exact) == (5600, False)
    with pytest.raises(TooBig) as file:
        read_limited(workspace, PurePosixPath("big.bin"), 1000)
    assert (file.value.size, file.value.exact) == (5000, True)
    assert read_limited(workspace, PurePosixPath("big.bin"), 5000) == b"x" * 5000


@pytest.mark.parametrize("swap", ["the file", "its folder"], ids=["file-swapped", "folder-swapped"])
def test_a_path_swapped_for_a_link_after_the_check_is_refused_not_read(
    workspace: Path, tmp_path: Path, swap: str
) -> None:
    """The agent writes the working directory while /get reads it: a file (or a folder on
    its path) that passed the check and then became a link to a secret is not followed."""
    state = tmp_path / "state"
    target = readable_target(workspace, "src/main.py", state)
    assert target == workspace / "src" / "main.py"
    if swap == "the file":
        target.unlink()
        target.symlink_to(tmp_path / "secret.txt")
    else:
        (workspace / "src").rename(workspace / "old_src")
        (workspace / "src").symlink_to(tmp_path)
        (tmp_path / "main.py").write_text("outside\n")
    with pytest.raises(Refused, match="changed while I was reading it"):
        read_limited(workspace, PurePosixPath("src/main.py"), 10_000)
    if swap == "its folder":
        with pytest.raises(Refused, match="changed while I was reading it"):
            zip_folder(workspace, PurePosixPath("src"), 10_000)


def test_images_are_private_and_pruned_after_their_retention(tmp_path: Path) -> None:
    images = tmp_path / "state" / "images"
    old = store_image(images, b"old", ".jpg")
    new = store_image(images, b"new", ".png")
    assert stat.S_IMODE(os.stat(images).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(old).st_mode) == 0o600
    assert old.suffix == ".jpg"
    assert old.name != new.name
    now = new.stat().st_mtime
    os.utime(old, (now - 7200, now - 7200))
    assert prune_images(images, now=now + 10, retention=3600) == 1
    assert not old.exists()
    assert new.read_bytes() == b"new"
    assert prune_images(tmp_path / "missing", now=now, retention=1) == 0


def test_the_diff_summary_counts_lines_binaries_and_new_files() -> None:
    numstat = "3\t1\tsrc/a.py\n-\t-\tlogo.png\n10\t0\tREADME.md\n"
    new_files = [
        NewFile(path="notes.txt", added=12, patch="+..."),
        NewFile(path="icon.png", patch="Binary files /dev/null and b/icon.png differ\n"),
        NewFile(path="big.bin", left_out="larger than 1 MB"),
    ]
    text, count = diff_summary(numstat, new_files)
    assert count == 6
    assert text.splitlines() == [
        "+3 -1  src/a.py",
        "binary  logo.png",
        "+10 -0  README.md",
        "new  +12  notes.txt",
        "new  binary  icon.png",
        "new  (left out: larger than 1 MB)  big.bin",
        "Total: +13 -1 in 3 tracked files, +12 in 2 new files",
        "Left out of the patch: 1 new file (larger than 1 MB)",
    ]


def test_a_zipped_file_is_redacted_before_it_is_compressed(workspace: Path) -> None:
    """The sender redacts what it sends, but cannot look into a deflated zip."""
    token = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    (workspace / "src" / "notes.txt").write_text(f"the bot token is {token}\n")
    data, _ = zip_folder(workspace, PurePosixPath("src"), 10_000_000, secrets=(token,))
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert token not in archive.read("notes.txt").decode()
    assert archive.read("notes.txt").decode() == f"the bot token is {REDACTED}\n"
    assert archive.read("main.py") == b"print('hi')\n"  # the rest as it was


def test_the_bots_own_files_are_refused_under_any_name(workspace: Path, tmp_path: Path) -> None:
    """A hard link in the working directory to the bot's config is the config: refused when
    asked for, left out of a zip."""
    config = tmp_path / "conf.toml"
    config.write_text("[telegram]\nallowed_users = [1]\n")
    os.link(config, workspace / "src" / "notes.txt")
    own = identities([str(config), str(tmp_path / "no-such.env")])
    assert len(own) == 1
    with pytest.raises(Refused, match="one of the bot's own files"):
        readable_target(workspace, "src/notes.txt", tmp_path / "state", own)
    with pytest.raises(Refused):
        read_limited(workspace, PurePosixPath("src/notes.txt"), 10_000, own)
    data, _count = zip_folder(workspace, PurePosixPath("src"), 10_000_000, own=own)
    assert zipfile.ZipFile(io.BytesIO(data)).namelist() == ["main.py"]
    assert readable_target(workspace, "src/main.py", tmp_path / "state", own)


def test_a_git_work_tree_has_a_git_file_or_a_git_folder_with_its_head(tmp_path: Path) -> None:
    """An empty ``.git`` folder is no repository (git passes it over too): Codex 0.171.0's
    sandbox leaves one in every writable root, /tmp and the working directory included, once
    a command ran there, and it made every folder below look like a work tree."""
    plain = tmp_path / "plain" / "src"
    plain.mkdir(parents=True)
    (tmp_path / ".git").mkdir()  # the sandbox's leftover mount point, above everything here
    (tmp_path / "plain" / ".git").mkdir()
    assert not in_git_work_tree(plain)
    repository = tmp_path / "repository"
    (repository / ".git").mkdir(parents=True)
    (repository / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repository / "src" / ".git").mkdir(parents=True)  # a leftover inside a repository
    assert in_git_work_tree(repository / "src")
    worktree = tmp_path / "worktree"
    worktree.mkdir()
    (worktree / ".git").write_text("gitdir: /elsewhere/.git/worktrees/worktree\n")
    assert in_git_work_tree(worktree)
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / ".git").symlink_to(repository / ".git")  # as Android's repo tool links them
    assert in_git_work_tree(linked)
