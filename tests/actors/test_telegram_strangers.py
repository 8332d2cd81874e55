"""Strangers cost nothing: 1,500 refusals and a 429 on one of them leave an allowed user's
reply as fast as on a quiet bot (the sender in virtual time, Telegram with a latency)."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import trio
import trio.testing

from actors import telegram_sender
from actors.telegram_flood_control import STRANGER_BACKLOG, STRANGER_RATE
from orchestrator.errors import TelegramRetryAfter
from orchestrator.messages import AnswerCallback, SenderMsg, SendReply
from tests.fakes.telegram_api import FakeTelegramApi

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from contextlib import AbstractAsyncContextManager

ALLOWED = 4242
ROUND_TRIP = 0.25
"""What an allowed user's reply takes on a quiet bot: one call to Telegram and back."""


def open_sender(
    api: FakeTelegramApi, stats: telegram_sender.SenderStatistics
) -> AbstractAsyncContextManager[trio.MemorySendChannel[SenderMsg]]:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def opened() -> AsyncIterator[trio.MemorySendChannel[SenderMsg]]:
        send, receive = trio.open_memory_channel[SenderMsg](256)
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: telegram_sender.run(
                    receive,
                    api,
                    max_chunks=3,
                    rng=random.Random(1),
                    trace=lambda record: None,
                    statistics=stats,
                    task_status=task_status,
                )
            )
            with send:
                yield send

    return opened()


def delivered_at(api: FakeTelegramApi, chat_id: int) -> float:
    return next(c.at for c in api.calls_of("sendMessage") if c.chat_id == chat_id)


async def test_a_refusal_in_a_group_quotes_the_strangers_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """In a group everyone sees the refusal: it quotes the message it answers, so it is
    clear whom it is for (the router sets the quote; the stranger's path must keep it)."""
    api = FakeTelegramApi()
    with trio.fail_after(60):
        async with open_sender(api, telegram_sender.SenderStatistics()) as send:
            await send.send(
                SendReply(chat_id=-100, markdown="private", stranger=True, reply_to_message_id=42)
            )
            await api.wait_for(lambda a: bool(a.calls_of("sendMessage")))
    [call] = api.calls_of("sendMessage")
    assert call.extra["reply_to_message_id"] == 42


async def test_an_allowed_reply_stays_fast_behind_1500_strangers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    api = FakeTelegramApi()
    api.latency = lambda: ROUND_TRIP / 2
    stats = telegram_sender.SenderStatistics()
    with trio.fail_after(600):
        async with open_sender(api, stats) as send:
            for stranger in range(1, 1501):
                await send.send(
                    SendReply(chat_id=100_000 + stranger, markdown="private", stranger=True)
                )
                if stranger % 3 == 0:
                    await send.send(
                        AnswerCallback(
                            callback_query_id=f"q{stranger}", text="Not for you.", stranger=True
                        )
                    )
            asked = trio.current_time()
            await send.send(SendReply(chat_id=ALLOWED, markdown="your result"))
            await api.wait_for(lambda a: any(c.chat_id == ALLOWED for c in a.calls))
            latency = delivered_at(api, ALLOWED) - asked
            await trio.sleep(60)
    assert latency <= ROUND_TRIP, latency
    # The refusals that went out stayed under their cap; the rest were dropped and counted.
    assert stats.strangers_sent <= STRANGER_RATE * 61 + STRANGER_BACKLOG
    assert stats.strangers_dropped >= 1500 + 500 - stats.strangers_sent - STRANGER_BACKLOG
    assert stats.strangers_sent + stats.strangers_dropped == 2000


async def test_a_429_on_a_strangers_button_pauses_only_the_strangers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    api = FakeTelegramApi()
    api.fail("answerCallbackQuery", TelegramRetryAfter("Too Many Requests: retry after 24", 24))
    stats = telegram_sender.SenderStatistics()
    with trio.fail_after(600):
        async with open_sender(api, stats) as send:
            await send.send(
                AnswerCallback(callback_query_id="q1", text="Not for you.", stranger=True)
            )
            await api.wait_for(lambda a: bool(a.calls_of("answerCallbackQuery")))
            asked = trio.current_time()
            await send.send(SendReply(chat_id=ALLOWED, markdown="your result"))
            await send.send(SendReply(chat_id=7, markdown="refused", stranger=True))
            await api.wait_for(lambda a: any(c.chat_id == ALLOWED for c in a.calls))
            assert delivered_at(api, ALLOWED) - asked < 1
            await api.wait_for(lambda a: any(c.chat_id == 7 for c in a.calls))
            assert delivered_at(api, 7) - asked >= 23  # the refusals did wait
    assert stats.strangers_429 == 1
