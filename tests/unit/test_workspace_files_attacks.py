"""``/get`` and the inbox against what a prompted agent can plant in the working directory:
hard links to the bot's private files, folders too deep or too full to zip, a folder swapped
for a FIFO while it is zipped, token-shaped names, and an inbox made a link."""

from __future__ import annotations

import io
import os
import stat
import threading
import time
import zipfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import pytest

from actors.chat_files import _outgoing, _save_in_inbox
from orchestrator import workspace_files
from orchestrator.messages import UpdateLive
from orchestrator.redaction import redact_outbound
from orchestrator.workspace_files import Refused, TooBig, read_limited, zip_folder

if TYPE_CHECKING:
    from collections.abc import Callable

TOKEN_SHAPED = "123456:" + "a" * 35


def nest(top: Path, levels: int, name: str) -> Path:
    """`levels` folders named `name`, one in the other, under `top`: the deepest."""
    os.close(nest_open(top, levels, name))
    return top.joinpath(*[name] * levels)


def nest_open(top: Path, levels: int, name: str) -> int:
    """`nest`, the deepest folder open (its path may be longer than a path can be)."""
    fd = os.open(top, os.O_RDONLY)
    for _ in range(levels):
        os.mkdir(name, dir_fd=fd)
        child = os.open(name, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
    return fd


def test_a_hard_link_is_not_sent_alone_nor_in_a_zip(tmp_path: Path) -> None:
    """A hard link has the file's identity, but the bot knows only a few of its private
    files by theirs (the config, .env, the token file): not state_dir's, nor Codex's login,
    nor an old copy of a file rewritten since. A file with other names is not sent."""
    work, state = tmp_path / "work", tmp_path / "state"
    (work / "pub").mkdir(parents=True)
    state.mkdir()
    key = state / "session.key"
    key.write_bytes(b"K" * 32)
    os.link(key, work / "notes.txt")
    os.link(key, work / "pub" / "key.bin")
    (work / "pub" / "readme.md").write_text("hello")
    with pytest.raises(Refused, match=r"notes.txt has other names on this disk \(hard links\)"):
        _outgoing(work, "notes.txt", state, secrets=())
    _, _, zipped, what = _outgoing(work, "pub", state, secrets=())
    assert zipfile.ZipFile(io.BytesIO(zipped)).namelist() == ["readme.md"]
    assert what == "1 file, zipped"


def test_a_file_hard_linked_after_the_check_is_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("private")
    (tmp_path / "work").mkdir()
    os.link(secret, tmp_path / "work" / "swapped.txt")
    with pytest.raises(Refused, match="changed while I was reading it"):
        read_limited(tmp_path / "work", PurePosixPath("swapped.txt"), 1000)


def test_a_zip_stops_at_the_limit_as_it_grows_not_once_it_is_built(tmp_path: Path) -> None:
    """Empty files count nothing, but each adds its name twice and its headers: 2,000 of
    them 60 folders of 250-byte names deep make a 1 GB zip. It stops at the limit."""
    (tmp_path / "work").mkdir()
    deepest = nest_open(tmp_path / "work", 60, "d" * 250)
    for number in range(2000):
        os.close(os.open(f"{number:0200d}", os.O_CREAT | os.O_WRONLY, dir_fd=deepest))
    os.close(deepest)
    with pytest.raises(TooBig) as raised:
        zip_folder(tmp_path / "work", PurePosixPath(), 1_000_000)
    assert 1_000_000 < raised.value.size < 1_100_000  # stopped at the file that crossed it


def test_a_folder_too_deep_is_refused_in_words(tmp_path: Path) -> None:
    """``mkdir -p a/a/a/…`` 1,200 deep made `os.fwalk` (recursive) raise RecursionError and
    zipfile a struct.error for a long name, which crashed the chat: now a refusal."""
    (tmp_path / "work" / "deep").mkdir(parents=True)
    (nest(tmp_path / "work" / "deep", workspace_files.MAX_ZIP_DEPTH + 1, "a") / "f").touch()
    with pytest.raises(Refused, match="deep has folders more than 64 deep, too deep to zip"):
        zip_folder(tmp_path / "work", PurePosixPath("deep"), 1_000_000)
    (nest(tmp_path / "work", workspace_files.MAX_ZIP_DEPTH, "b") / "f").write_text("x")
    _, files = zip_folder(tmp_path / "work", PurePosixPath("b"), 1_000_000)
    assert files == 1  # as deep as allowed: zipped


def test_a_folder_with_too_many_names_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workspace_files, "MAX_ZIP_ENTRIES", 100)
    crowded = tmp_path / "work" / "crowded"
    crowded.mkdir(parents=True)
    for number in range(101):
        (crowded / f"{number}.txt").touch()
    with pytest.raises(Refused, match="crowded holds more than 100 files and folders"):
        zip_folder(tmp_path / "work", PurePosixPath("crowded"), 1_000_000)


def test_a_folder_swapped_for_a_fifo_while_zipped_is_passed_over_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk looks at a name, then opens it: a FIFO swapped in between (the agent's
    ``renameat2`` in a loop) must fail that open at once, not wait for a writer (which
    `os.fwalk`'s plain open did, holding the chat and the bot's stop for good). The swap is
    made certain here: the look says "folder" for the FIFO."""
    pub = tmp_path / "work" / "pub"
    pub.mkdir(parents=True)
    (pub / "a.txt").write_text("hello")
    os.mkfifo(pub / "sub")
    real_stat = os.stat

    def seen_as_a_folder(path: str, *args: object, **kwargs: object) -> os.stat_result:
        info = real_stat(path, *args, **kwargs)  # type: ignore[arg-type]
        if path == "sub":
            return os.stat_result((stat.S_IFDIR | 0o755, *tuple(info)[1:]))
        return info

    monkeypatch.setattr(os, "stat", seen_as_a_folder)
    unblocked = watchdog(pub / "sub", after=5.0)
    started = time.monotonic()
    data, files = zip_folder(tmp_path / "work", PurePosixPath("pub"), 10_000)
    assert time.monotonic() - started < 5.0, "the zip waited on the FIFO"
    unblocked()
    assert (files, zipfile.ZipFile(io.BytesIO(data)).namelist()) == (1, ["a.txt"])


def watchdog(fifo: Path, *, after: float) -> Callable[[], None]:
    """Open `fifo` for writing `after` seconds from now, unless called off (the function it
    returns): a reader that hangs on it (the failure under test) is let go, and the test
    fails on its time instead of hanging the suite."""
    called_off = threading.Event()

    def let_go() -> None:
        if not called_off.wait(after):
            with open(fifo, "wb"):
                pass

    threading.Thread(target=let_go, daemon=True).start()
    return called_off.set


def test_a_folder_swapped_in_for_a_file_is_refused_without_a_descriptor_left(
    tmp_path: Path,
) -> None:
    (tmp_path / "work" / "adir").mkdir(parents=True)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        with pytest.raises(Refused, match="changed while I was reading it"):
            read_limited(tmp_path / "work", PurePosixPath("adir"), 1000)
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_token_shaped_name_is_redacted_in_the_zip_which_stays_whole(tmp_path: Path) -> None:
    """The sender redacts a document byte for byte: a token-shaped name left in the zip's
    headers would be rewritten there, and the zip broken (the agent could break every
    ``/get`` of a folder that way). The zip names it redacted already."""
    pub = tmp_path / "work" / "pub"
    pub.mkdir(parents=True)
    (pub / f"{TOKEN_SHAPED}.json").write_text("{}")
    (pub / "readme.md").write_text("hello")
    data, _ = zip_folder(tmp_path / "work", PurePosixPath("pub"), 10_000)
    sent = redact_outbound(
        UpdateLive(chat_id=1, slot="x", text="", document=data, document_name="pub.zip")
    )
    assert isinstance(sent, UpdateLive)
    with zipfile.ZipFile(io.BytesIO(sent.document)) as archive:
        assert archive.namelist() == ["[REDACTED].json", "readme.md"]
        assert archive.read("readme.md") == b"hello"


def test_an_inbox_made_a_link_into_git_is_refused(tmp_path: Path) -> None:
    """The sandbox keeps the agent out of .git; the bot, outside it, must not write there for
    it through an ``inbox`` link."""
    work = tmp_path / "work"
    (work / ".git").mkdir(parents=True)
    (work / "inbox").symlink_to(".git")
    with pytest.raises(Refused, match=r"leads into a \.git folder"):
        _save_in_inbox(work, work / "inbox", "shallow", b"x" * 40, ())
    assert list((work / ".git").iterdir()) == []


def test_an_inbox_under_a_link_out_creates_nothing_outside(tmp_path: Path) -> None:
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (work / "tg").symlink_to(outside)
    with pytest.raises(Refused, match="leads out of the working directory"):
        _save_in_inbox(work, work / "tg" / "inbox", "notes.txt", b"x", ())
    assert list(outside.iterdir()) == []  # the inbox folder was not made there first
