"""Files in and out with the bot as a real process (fake Telegram over HTTP, fake Codex over
stdio): a document sent through the real poller is downloaded (``getFile``, then the file
URL) and lands in the working directory's ``inbox/``, never over an existing file, and Codex
is told where; a picture sent as a file goes to Codex as a file on MCP, which cannot show
it; ``/get`` sends a file and a zipped folder and refuses what lies outside the working
directory; ``/diff`` shows a real git repository's changes with the patch as a
``.diff`` file, new files included (a link as its target, the bot's config under another name
left out)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import zipfile
from typing import TYPE_CHECKING

import trio

from tests.bot_process import running
from tests.fakes.codex_script import FakeCodex
from tests.fakes.telegram_server import open_fake_telegram
from tests.pictures import tiny_png
from tests.system.test_process import ALICE, CEILING, TOKEN, codex_calls, write_config

if TYPE_CHECKING:
    from pathlib import Path

    from tests.fakes.telegram_server import FakeTelegram


def documents(tg: FakeTelegram) -> list[tuple[str, bytes]]:
    return [
        (m.filename or "", m.document)
        for m in tg.messages(ALICE)
        if m.document is not None and m.filename
    ]


async def test_a_document_lands_in_the_inbox_and_codex_is_told_where(tmp_path: Path) -> None:
    fake = FakeCodex(tmp_path / "codex")
    work = tmp_path / "work"
    (work / "inbox").mkdir(parents=True)
    (work / "inbox" / "trace.log").write_text("an older trace\n")
    with trio.fail_after(CEILING):
        async with (
            open_fake_telegram(TOKEN) as tg,
            running(write_config(tmp_path, tg.base_url, fake), TOKEN) as bot,
        ):
            await tg.wait_for(lambda t: bool(t.calls_of("getUpdates")))
            sent = tg.add_file(b"line 1\nline 2\n", "documents/file_3.log")
            document = {**sent, "file_name": "trace.log", "mime_type": "text/plain"}
            tg.push_message(
                chat_id=ALICE,
                user_id=ALICE,
                extra={"document": document, "caption": "why does it fail?"},
            )
            await tg.wait_for(
                lambda t: any("FAKE-REPLY: why does it fail?" in x for x in t.sent_texts(ALICE))
            )
            # A picture sent as a file: this bot runs MCP, so Codex gets it as a file.
            picture = {**tg.add_file(tiny_png(), "documents/file_4.png"), "mime_type": "image/png"}
            tg.push_message(
                chat_id=ALICE,
                user_id=ALICE,
                extra={"document": {**picture, "file_name": "logo.png"}, "caption": "an icon"},
            )
            await tg.wait_for(
                lambda t: any("FAKE-REPLY: an icon" in x for x in t.sent_texts(ALICE))
            )
            huge = {"file_id": "H", "file_unique_id": "h", "file_size": 30 * 1024 * 1024}
            tg.push_message(chat_id=ALICE, user_id=ALICE, extra={"document": huge})
            await tg.wait_for(lambda t: any("30.0 MB" in x for x in t.sent_texts(ALICE)))
            bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    assert TOKEN not in bot.text()
    assert (work / "inbox" / "trace.log").read_text() == "an older trace\n"
    assert (work / "inbox" / "trace (2).log").read_bytes() == b"line 1\nline 2\n"
    assert tg.downloads == ["documents/file_3.log", "documents/file_4.png"]  # not the huge one
    assert (work / "inbox" / "logo.png").read_bytes() == tiny_png()
    texts = tg.sent_texts(ALICE)
    assert texts[0].startswith("Saved as inbox/trace (2).log (sent as “trace.log”")
    assert "Telegram lets bots download files up to 20 MB" in texts[-1]
    assert (
        "Codex can't look at pictures with this bot's setup (that needs the app-server "
        "backend), so “logo.png” goes to it as a file. Saved as inbox/logo.png."
    ) in texts
    prompt = codex_calls(fake, "why does it fail?")[0]["params"]["arguments"]["prompt"]
    assert prompt == (
        "why does it fail?\n\n(The file is inbox/trace (2).log in the working directory.)"
    )


def git(work: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(work), *args],
        check=True,
        capture_output=True,
        env={
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com",
            "HOME": str(work.parent),
            "PATH": "/usr/bin:/bin",
        },
    )


async def test_get_sends_files_and_folders_refuses_the_rest_and_diff_shows_git_changes(
    tmp_path: Path,
) -> None:
    fake = FakeCodex(tmp_path / "codex")
    work = tmp_path / "work"
    (work / "src").mkdir(parents=True)
    (work / "src" / "app.py").write_text("print('one')\n")
    (work / "README.md").write_text("# demo\n")
    git(work, "init", "-q")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "start")
    (work / "src" / "app.py").write_text("print('two')\nprint('three')\n")
    (work / "notes.txt").write_text("new\n")
    (work / "leak").symlink_to(tmp_path / "conf.toml")
    with trio.fail_after(CEILING):
        async with (
            open_fake_telegram(TOKEN) as tg,
            running(write_config(tmp_path, tg.base_url, fake), TOKEN) as bot,
        ):
            await tg.wait_for(lambda t: bool(t.calls_of("getUpdates")))
            os.link(tmp_path / "conf.toml", work / "copy.toml")  # the config, by another name
            for command, documents_after in (("/get src/app.py", 1), ("/get src", 2)):
                tg.push_message(chat_id=ALICE, user_id=ALICE, text=command)
                await tg.wait_for(lambda t: len(documents(t)) == documents_after)  # noqa: B023
            refused = ("/get ../conf.toml", "/get leak", f"/get {tmp_path}/state", "/get copy.toml")
            for command in refused:
                answered = len(tg.sent_texts(ALICE))
                tg.push_message(chat_id=ALICE, user_id=ALICE, text=command)
                await tg.wait_for(lambda t: len(t.sent_texts(ALICE)) > answered)  # noqa: B023
            tg.push_message(chat_id=ALICE, user_id=ALICE, text="/diff")
            await tg.wait_for(lambda t: len(documents(t)) == 3)
            await tg.wait_for(lambda t: any("Total:" in x for x in t.sent_texts(ALICE)))
            bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    (app_name, app), (zip_name, zipped), (diff_name, patch) = documents(tg)
    assert (app_name, app) == ("app.py", b"print('two')\nprint('three')\n")
    assert zip_name == "src.zip"
    assert zipfile.ZipFile(io.BytesIO(zipped)).read("app.py") == app
    refusals = [x for x in tg.sent_texts(ALICE) if "outside the working directory" in x]
    assert len(refusals) == 3, tg.sent_texts(ALICE)
    assert "copy.toml is one of the bot's own files; I don't send those." in tg.sent_texts(ALICE)
    assert diff_name == "work.diff"
    assert b"-print('one')\n+print('two')\n+print('three')\n" in patch
    assert b"--- /dev/null\n+++ b/notes.txt\n@@ -0,0 +1 @@\n+new\n" in patch
    link = (
        f"new file mode 120000\n--- /dev/null\n+++ b/leak\n@@ -0,0 +1 @@\n+{tmp_path}/conf.toml\n"
    )
    assert link.encode() in patch  # the link's target, never what it leads to
    assert b"copy.toml" not in patch
    assert (tmp_path / "conf.toml").read_bytes() not in patch
    summary = next(x for x in tg.sent_texts(ALICE) if "Total:" in x)
    assert summary.splitlines()[1:] == [
        "+2 -1  src/app.py",
        "new  (left out: one of the bot's own files)  copy.toml",
        "new  +1  leak",
        "new  +1  notes.txt",
        "Total: +2 -1 in 1 tracked file, +2 in 2 new files",
        "Left out of the patch: 1 new file (one of the bot's own files)",
    ]
    assert not codex_calls(fake, "")  # none of this reached Codex
