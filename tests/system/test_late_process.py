"""What was sent while the bot was down, with the bot as a process on the shipped
``sessions.stale_after`` (600 s): a prompt that waited longer is offered with "Run now",
never run by itself; a command and a prompt that waited less are served; the offer runs
once, when pressed.

The downtime is made by the update ledger: the first run writes when it last had every
update (``caught_up``) at its stop, and the test moves that moment two hours back, as if the
bot had been down since then. The messages then carry the dates a phone would have given
them (Telegram's ``date``, Unix seconds)."""

from __future__ import annotations

import json
import signal
import time
from typing import TYPE_CHECKING

import trio

from tests.bot_process import polling
from tests.fakes.codex_script import FakeCodex
from tests.fakes.telegram_server import open_fake_telegram
from tests.system.test_process import (
    ALICE,
    CEILING,
    TOKEN,
    buttons_of,
    codex_calls,
    press_first_button,
    write_config,
)

if TYPE_CHECKING:
    from pathlib import Path


async def test_prompts_sent_while_the_bot_was_down_are_offered_not_run(tmp_path: Path) -> None:
    fake = FakeCodex(tmp_path / "codex")
    ledger = tmp_path / "state" / "updates.json"
    with trio.fail_after(CEILING):
        async with open_fake_telegram(TOKEN) as tg:
            config = write_config(tmp_path, tg.base_url, fake)
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="hello")
                await tg.wait_for(
                    lambda t: any(x.startswith("FAKE-REPLY: hello\n") for x in t.sent_texts(ALICE))
                )
                bot.process.send_signal(signal.SIGTERM)
            assert bot.process.returncode == 0, bot.text()
            written = json.loads(ledger.read_text())
            assert time.time() - 120 < written["caught_up"] <= time.time()  # at the stop
            now = int(time.time())
            ledger.write_text(json.dumps({**written, "caught_up": now - 7200}))

            def sent(text: str, ago: int) -> None:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text=text, extra={"date": now - ago})

            sent("deploy the release", 3600)
            sent("/status", 3500)
            sent("and tag it v2", 3000)
            sent("what time is it", 60)  # waited less than stale_after: runs
            async with polling(tg, config, TOKEN) as bot:
                await tg.wait_for(
                    lambda t: any("\nwhat time is it\n" in x for x in t.sent_texts(ALICE))
                )
                [offer] = [m for m in tg.messages(ALICE) if m.text.startswith("📨")]
                await tg.wait_for(lambda t: "and tag it v2" in offer.text)
                assert offer.text == (
                    "📨 You sent 2 messages while the bot was offline, the first 1 hour ago, so "
                    "they were not run by themselves: they may no longer be what you want.\n"
                    "“deploy the release”\n“and tag it v2”\n\n"
                    "Press Run now to run them as one request."
                )
                assert buttons_of(offer) == ["▶ Run now"]
                assert any(x.startswith("Mode: ") for x in tg.sent_texts(ALICE))  # /status
                assert codex_calls(fake, "deploy the release") == []
                data = offer.reply_markup["inline_keyboard"][0][0]["callback_data"]
                press_first_button(tg, offer)
                await tg.wait_for(
                    lambda t: any(
                        x.startswith("FAKE-REPLY: deploy the release\n\nand tag it v2\n\n")
                        for x in t.sent_texts(ALICE)
                    )
                )
                assert offer.text == (
                    "📨 Sent while the bot was offline:\n"
                    "“deploy the release”\n“and tag it v2”\n\n▶ Run now, as you asked."
                )
                assert buttons_of(offer) == []
                tg.push_callback(  # a second press (another phone, or a double tap)
                    chat_id=ALICE, user_id=ALICE, message_id=offer.message_id, data=data
                )
                await tg.wait_for(lambda t: len(t.calls_of("answerCallbackQuery")) == 2)
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    answers = [call.params.get("text") for call in tg.calls_of("answerCallbackQuery")]
    assert answers == ["Running it now.", "That request was already run, or is no longer offered."]
    assert len(codex_calls(fake, "deploy the release")) == 1
    assert "2 messages waited at Telegram over sessions.stale_after (600 s)" in bot.text()
