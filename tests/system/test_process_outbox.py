"""Results survive a Telegram outage and a crash in the middle of it: the bot as a process,
the fake Telegram over HTTP failing ``sendMessage`` for as long as the test says."""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
from typing import TYPE_CHECKING

import trio

from tests.bot_process import polling, running, write_config
from tests.fakes.codex_script import FakeCodex
from tests.fakes.telegram_server import FakeTelegram, ServerError, open_fake_telegram
from tests.procfs import tree

if TYPE_CHECKING:
    from pathlib import Path

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
ALICE = 4242
CEILING = 90
TRIES_TODAY = 6
"""What the sender spent on a result before it had an outbox: 6 tries, then dropped."""


def config(tmp_path: Path, base_url: str, fake: FakeCodex) -> Path:
    return write_config(
        tmp_path,
        telegram_url=base_url,
        user=ALICE,
        codex_command=fake.argv(),
        codex_env={"FAKE_CODEX_SCRIPT": str(fake.script_path)},
        batch_window=0.2,
        telegram={"retry_backoff_max": 1.0},  # the outage is counted in tries, not seconds
    )


def tries_of(tg: FakeTelegram, text: str) -> int:
    return sum(text in str(call.params.get("text")) for call in tg.calls_of("sendMessage"))


def delivered(tg: FakeTelegram, text: str) -> int:
    return sum(text in message for message in tg.sent_texts(ALICE))


async def test_a_result_waits_out_an_outage_longer_than_the_old_retry_budget(
    tmp_path: Path,
) -> None:
    fake = FakeCodex(tmp_path / "codex")
    reply = "FAKE-REPLY: during the outage"
    with trio.fail_after(CEILING):
        async with (
            open_fake_telegram(TOKEN) as tg,
            running(config(tmp_path, tg.base_url, fake), TOKEN) as bot,
        ):
            await tg.wait_for(lambda t: bool(t.calls_of("getUpdates")))
            tg.start_outage("sendMessage", ServerError(502))
            tg.push_message(chat_id=ALICE, user_id=ALICE, text="during the outage")
            await tg.wait_for(lambda t: tries_of(t, reply) > 2 * TRIES_TODAY)
            assert list((tmp_path / "state" / "outbox").glob("*.json"))
            tg.end_outage("sendMessage")
            await tg.wait_for(lambda t: delivered(t, reply) == 1)
            bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    assert delivered(tg, reply) == 1
    assert list((tmp_path / "state" / "outbox").glob("*.json")) == []


async def test_a_crash_in_the_middle_of_the_outage_still_delivers_once(tmp_path: Path) -> None:
    fake = FakeCodex(tmp_path / "codex")
    reply = "FAKE-REPLY: before the crash"
    path = None
    with trio.fail_after(CEILING):
        async with open_fake_telegram(TOKEN) as tg:
            path = config(tmp_path, tg.base_url, fake)
            async with polling(tg, path, TOKEN) as first:
                tg.start_outage("sendMessage", ServerError(502))
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="before the crash")
                await tg.wait_for(lambda t: tries_of(t, reply) >= 2)
                for pid in tree(first.process.pid):  # a crash: no drain, no flush
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            assert first.process.returncode == -signal.SIGKILL
            assert len(list((tmp_path / "state" / "outbox").glob("*.json"))) == 1
            polls = len(tg.calls_of("getUpdates"))
            async with running(path, TOKEN) as second:
                await tg.wait_for(lambda t: len(t.calls_of("getUpdates")) > polls)
                tg.end_outage("sendMessage")
                await tg.wait_for(lambda t: delivered(t, reply) == 1)
                # The update was handed off before the crash (ledger): Codex is not asked twice.
                second.process.send_signal(signal.SIGTERM)
    assert second.process.returncode == 0, second.text()
    assert delivered(tg, reply) == 1
    assert "not delivered yet; sending them first" in second.text()
    assert list((tmp_path / "state" / "outbox").glob("*.json")) == []


async def test_a_disk_that_refuses_every_write_costs_durability_not_service(
    tmp_path: Path,
) -> None:
    """The outbox cannot be written (a file where its folder goes: what a full or read-only
    disk does to a write, without root games). The bot starts, answers, says in the chat that
    it cannot save, logs the failure once, and stops cleanly. A folder where the ledger or a
    trace file goes is set aside at start (state is never followed into odd files) and those
    are written again."""
    fake = FakeCodex(tmp_path / "codex")
    state = tmp_path / "state"
    (state / "updates.json").mkdir(parents=True)
    (state / "outbox").write_text("not a folder")
    today = datetime.datetime.now(datetime.UTC).date()
    for day in (today, today + datetime.timedelta(days=1)):
        (state / "traces" / f"{day:%Y-%m-%d}.jsonl").mkdir(parents=True)
    with trio.fail_after(CEILING):
        async with (
            open_fake_telegram(TOKEN) as tg,
            running(config(tmp_path, tg.base_url, fake), TOKEN) as bot,
        ):
            await tg.wait_for(lambda t: bool(t.calls_of("getUpdates")))
            for text in ("first", "second"):
                tg.push_message(chat_id=ALICE, user_id=ALICE, text=text)
                reply = f"FAKE-REPLY: {text}"
                await tg.wait_for(lambda t: delivered(t, reply) == 1)  # noqa: B023
            bot.process.send_signal(signal.SIGTERM)
    text = bot.text()
    assert bot.process.returncode == 0, text
    notices = [message for message in tg.sent_texts(ALICE) if "cannot save" in message]
    assert len(notices) == 1, notices  # said once, not after every reply
    assert sum("cannot save undelivered replies" in line for line in text.splitlines()) == 1
    assert "updates.json was not a regular file" in text
    assert "cannot save the update ledger" not in text
    assert (state / "updates.json").is_file()
    assert "Traceback" not in text
