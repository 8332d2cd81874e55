"""python-telegram-bot, an independent client, accepts the fake as Telegram.

PTB runs on asyncio, so it runs in a worker thread with its own event loop while the fake
serves from this trio run.
"""

from __future__ import annotations

import asyncio

import pytest
import trio

from tests.fakes.telegram_server import RetryAfter, open_fake_telegram

telegram = pytest.importorskip("telegram")
TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


def in_asyncio(coroutine_function):
    return trio.to_thread.run_sync(asyncio.run, coroutine_function())


async def test_ptb_receives_sends_and_maps_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "1")  # PTB 22's opt-in to its future retry_after type
    with trio.fail_after(30):
        async with open_fake_telegram(TOKEN, bot_username="ConformanceBot") as tg:
            tg.push_message(chat_id=77, user_id=77, text="/start hello")
            tg.script_fault("sendMessage", RetryAfter(9), chat_id=78)
            outcome: dict[str, object] = {}

            async def session() -> None:
                bot = telegram.Bot(TOKEN, base_url=f"{tg.base_url}/bot")
                async with bot:
                    me = await bot.get_me()
                    outcome["username"] = me.username
                    updates = await bot.get_updates(timeout=0)
                    outcome["text"] = updates[0].message.text
                    outcome["command"] = updates[0].message.entities[0].type
                    sent = await bot.send_message(77, "<b>hi</b> there", parse_mode="HTML")
                    outcome["sent"] = sent.text
                    try:
                        await bot.send_message(78, "flooded")
                    except telegram.error.RetryAfter as error:
                        outcome["retry_after"] = error.retry_after

            await in_asyncio(session)
            assert outcome["username"] == "ConformanceBot"
            assert outcome["text"] == "/start hello"
            assert outcome["command"] == "bot_command"
            assert outcome["sent"] == "hi there"
            retry = outcome["retry_after"]
            assert getattr(retry, "total_seconds", lambda: retry)() == 9
            assert tg.sent_texts(77) == ["hi there"]


async def test_ptb_sees_a_conflict_for_a_second_poller() -> None:
    with trio.fail_after(30):
        async with open_fake_telegram(TOKEN) as tg:
            outcome: dict[str, object] = {}

            async def two_pollers() -> None:
                first = telegram.Bot(TOKEN, base_url=f"{tg.base_url}/bot")
                second = telegram.Bot(TOKEN, base_url=f"{tg.base_url}/bot")
                async with first, second:
                    parked = asyncio.create_task(first.get_updates(timeout=20, read_timeout=30))
                    await asyncio.sleep(0.3)  # let the first poll park at the fake
                    newer = asyncio.create_task(second.get_updates(timeout=1, read_timeout=10))
                    try:
                        await parked
                    except telegram.error.Conflict as error:
                        outcome["conflict"] = str(error)
                    await newer

            await in_asyncio(two_pollers)
            assert "only one bot instance" in str(outcome["conflict"])
