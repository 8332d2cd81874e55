"""No message and no reply lost to a SIGKILL (issue 13): the bot as a process, killed with
its whole tree at the two points where the message path used to hold them only in memory.

- Inbound: the kill lands once Telegram was told the update is handled (the poller parked in
  its next long poll with the offset past it), so Telegram will never send it again. The
  message must be in the session file by then, and run after the restart.
- Outbound: the sender is held (it takes nothing from its inbox), so a result waits in that
  inbox at the kill. It must be in the outbox already, and go out once after the restart.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from typing import TYPE_CHECKING

import trio

from tests.bot_process import ENTRY, polling, running
from tests.fakes.codex_script import FakeCodex
from tests.fakes.telegram_server import Delay, FakeTelegram, open_fake_telegram
from tests.procfs import tree
from tests.system.test_process import codex_calls, session_state, wait_for_file, write_config

if TYPE_CHECKING:
    from pathlib import Path

    from tests.bot_process import Bot

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
ALICE = 4242
CEILING = 90

HELD_SENDER = (
    "import trio\n"
    "from actors import telegram_sender\n"
    "async def held(*args, **kwargs):\n"
    "    await trio.sleep_forever()  # takes nothing from its inbox\n"
    "telegram_sender.run = held\n"
) + ENTRY
"""The bot with a sender that never takes a message: what is said waits in its inbox."""


def kill_tree(bot: Bot) -> None:
    for pid in tree(bot.process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def confirmed_past(tg: FakeTelegram, update_id: int) -> bool:
    """The poller asked for updates after `update_id`: Telegram forgot it for good."""
    return any(
        int(call.params.get("offset", 0) or 0) > update_id for call in tg.calls_of("getUpdates")
    )


async def test_a_message_confirmed_to_telegram_survives_a_kill(tmp_path: Path) -> None:
    fake = FakeCodex(tmp_path / "codex")
    fake.rule("sleepy", delay=60)
    with trio.fail_after(CEILING * 2):
        async with open_fake_telegram(TOKEN) as tg:
            config = write_config(tmp_path, tg.base_url, fake)
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="sleepy job")
                await tg.wait_for(lambda t: any(m.startswith("⏳") for m in t.sent_texts(ALICE)))
                update_id = tg.push_message(chat_id=ALICE, user_id=ALICE, text="while it sleeps")
                await tg.wait_for(lambda t: confirmed_past(t, update_id))
                kill_tree(bot)  # the poller sits in its next long poll: nothing is pending
            assert bot.process.returncode == -signal.SIGKILL
            assert session_state(tmp_path)["queue"] == ["while it sleeps"]
            ledger = json.loads((tmp_path / "state" / "updates.json").read_text())
            assert update_id in ledger["recent"]

            fake.rules.clear()
            async with running(config, TOKEN) as bot:
                await tg.wait_for(
                    lambda t: any("FAKE-REPLY: while it sleeps" in m for m in t.sent_texts(ALICE))
                )
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    assert len(codex_calls(fake, "while it sleeps")) == 1
    assert len(codex_calls(fake, "sleepy job")) == 1  # offered again, never rerun by itself


async def test_a_result_waiting_for_the_sender_survives_a_kill(tmp_path: Path) -> None:
    fake = FakeCodex(tmp_path / "codex")
    outbox = tmp_path / "state" / "outbox"
    reply = "FAKE-REPLY: answer me"

    def kept() -> bool:
        return any(reply in path.read_text() for path in outbox.glob("*.json"))

    with trio.fail_after(CEILING * 2):
        async with open_fake_telegram(TOKEN) as tg:
            config = write_config(tmp_path, tg.base_url, fake)
            async with polling(tg, config, TOKEN, entry=HELD_SENDER) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="answer me")
                await wait_for_file(kept)  # only the chat writes it: the sender takes nothing
                kill_tree(bot)
            assert bot.process.returncode == -signal.SIGKILL
            assert tg.sent_texts(ALICE) == []  # nothing reached Telegram before the kill

            async with running(config, TOKEN) as bot:
                await tg.wait_for(lambda t: any(reply in m for m in t.sent_texts(ALICE)))
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    assert sum(reply in m for m in tg.sent_texts(ALICE)) == 1
    assert len(codex_calls(fake, "answer me")) == 1
    assert list(outbox.glob("*.json")) == []


async def test_a_slow_download_holds_no_other_chat_and_a_kill_during_it_is_told(
    tmp_path: Path,
) -> None:
    """A file Telegram serves slowly: the bot still takes the next updates (another chat is
    answered meanwhile), and a kill during the download is told after the restart."""
    fake = FakeCodex(tmp_path / "codex")
    group = -100_777
    with trio.fail_after(CEILING * 2):
        async with open_fake_telegram(TOKEN) as tg:
            config = write_config(tmp_path, tg.base_url, fake)
            document = {
                **tg.add_file(b"a,b\n1,2\n", "documents/notes.csv"),
                "file_name": "notes.csv",
            }
            tg.script_fault("getFile", Delay(CEILING * 4))  # Telegram's file service is slow
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, extra={"document": document})
                await tg.wait_for(lambda t: bool(t.calls_of("getFile")))
                tg.push_message(
                    chat_id=group, user_id=ALICE, chat_type="supergroup", text="/status"
                )
                with trio.fail_after(10):  # the poller waits up to 30 s for a chat that holds it
                    await tg.wait_for(lambda t: any("Mode:" in m for m in t.sent_texts(group)))
                kill_tree(bot)
            assert bot.process.returncode == -signal.SIGKILL
            assert session_state(tmp_path)["downloading"] == "file notes.csv"

            tg.faults.clear()
            async with running(config, TOKEN) as bot:
                await tg.wait_for(
                    lambda t: any(
                        "downloading your file notes.csv" in m for m in t.sent_texts(ALICE)
                    )
                )
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    assert len(tg.calls_of("getFile")) == 1  # taken once: not fetched again after the restart
    assert session_state(tmp_path)["downloading"] == ""
    assert codex_calls(fake, "notes.csv") == []
