# ruff: noqa: E501  (recorded Bot API bodies are kept verbatim)
"""The HTTP adapter: request shapes and error mapping (MockTransport), and the real sender
delivering through it to the fake Bot API server."""

from __future__ import annotations

import json
import random
import re
import traceback

import httpx
import msgspec
import pytest
import trio

from actors import telegram_sender
from orchestrator.edges.telegram_http import open_telegram_api
from orchestrator.errors import (
    TelegramBadRequest,
    TelegramChatMigrated,
    TelegramConflict,
    TelegramForbidden,
    TelegramRetryAfter,
    TelegramTransientError,
    TelegramUnauthorized,
)
from orchestrator.messages import Button, SenderMsg, SendReply, UpdateLive
from orchestrator.rendering import render_markdown, visible_text
from tests.fakes.telegram_server import RetryAfter, open_fake_telegram

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


def transport(
    status: int, body: bytes, seen: list[httpx.Request] | None = None
) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, content=body)

    return httpx.MockTransport(handler)


async def test_request_shapes() -> None:
    seen: list[httpx.Request] = []
    ok = transport(200, b'{"ok":true,"result":{"message_id":12}}', seen)
    async with open_telegram_api(TOKEN, base_url="https://tg.example", transport=ok) as api:
        keyboard = ((Button("Approve", "ap:x:a"),),)
        message_id = await api.send_message(
            5, "<b>x</b>", parse_mode="HTML", keyboard=keyboard, message_thread_id=9
        )
        assert message_id == 12
    request = seen[0]
    assert request.url.path == f"/bot{TOKEN}/sendMessage"
    body = json.loads(request.content)
    assert body["reply_markup"] == {
        "inline_keyboard": [[{"text": "Approve", "callback_data": "ap:x:a"}]]
    }
    assert body["message_thread_id"] == 9
    assert body["link_preview_options"] == {"is_disabled": True}


async def test_buttons_are_changed_and_a_document_carries_them() -> None:
    seen: list[httpx.Request] = []
    ok = transport(200, b'{"ok":true,"result":{"message_id":12}}', seen)
    keyboard = ((Button("📝 Show diff", "df:x"),),)
    async with open_telegram_api(TOKEN, base_url="https://tg.example", transport=ok) as api:
        await api.edit_message_reply_markup(5, 12)
        await api.send_document(
            5, "reply.md", b"# long", keyboard=keyboard, disable_notification=True
        )
    edit, document = seen
    assert edit.url.path == f"/bot{TOKEN}/editMessageReplyMarkup"
    assert json.loads(edit.content) == {
        "chat_id": 5,
        "message_id": 12,
        "reply_markup": {"inline_keyboard": []},
    }
    form = document.content.decode()
    assert '{"inline_keyboard":[[{"text":"📝 Show diff","callback_data":"df:x"}]]}' in form
    assert 'name="disable_notification"\r\n\r\ntrue' in form


async def test_get_updates_returns_raw_updates() -> None:
    body = b'{"ok":true,"result":[{"update_id":1,"message":{}},{"update_id":"bad"}]}'
    async with open_telegram_api(TOKEN, transport=transport(200, body)) as api:
        updates = await api.get_updates(
            offset=None, poll_seconds=0, limit=10, allowed_updates=["message"]
        )
    assert [msgspec.json.decode(raw)["update_id"] for raw in updates] == [1, "bad"]


async def test_bodies_nested_past_the_decoder_are_answers_not_crashes() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    body = b'{"ok":true,"result":[{"update_id":3,"message":' + deep + b"}]}"
    async with open_telegram_api(TOKEN, transport=transport(200, body)) as api:
        updates = await api.get_updates(
            offset=None, poll_seconds=0, limit=10, allowed_updates=["message"]
        )
    assert [msgspec.json.decode(raw)["update_id"] for raw in updates] == [3]
    error = b'{"ok":false,"error_code":502,"description":"Bad Gateway","junk":' + deep + b"}"
    async with open_telegram_api(TOKEN, transport=transport(502, error)) as api:
        with pytest.raises(TelegramTransientError, match="Bad Gateway"):
            await api.send_message(5, "hi")


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (
            429,
            b'{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 5","parameters":{"retry_after":5}}',
            TelegramRetryAfter,
        ),
        (401, b'{"ok":false,"error_code":401,"description":"Unauthorized"}', TelegramUnauthorized),
        (
            403,
            b'{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}',
            TelegramForbidden,
        ),
        (
            409,
            b'{"ok":false,"error_code":409,"description":"Conflict: terminated by other getUpdates request"}',
            TelegramConflict,
        ),
        (
            400,
            b'{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded","parameters":{"migrate_to_chat_id":-100}}',
            TelegramChatMigrated,
        ),
        (
            400,
            b'{"ok":false,"error_code":400,"description":"Bad Request: message is not modified"}',
            TelegramBadRequest,
        ),
        (502, b"<html><body>Bad Gateway</body></html>", TelegramTransientError),
        (200, b'{"ok": true, "result": [', TelegramTransientError),
        (
            500,
            b'{"ok":false,"error_code":500,"description":"Internal Server Error: restart"}',
            TelegramTransientError,
        ),
    ],
)
async def test_errors_are_classified_and_token_free(
    status: int, body: bytes, error: type[Exception]
) -> None:
    async with open_telegram_api(TOKEN, transport=transport(status, body)) as api:
        with pytest.raises(error) as info:
            await api.send_message(1, "x")
    rendered = "".join(traceback.format_exception(info.value)) + repr(info.value)
    assert TOKEN not in rendered
    if isinstance(info.value, TelegramRetryAfter):
        assert info.value.retry_after == 5
    if isinstance(info.value, TelegramChatMigrated):
        assert info.value.migrate_to_chat_id == -100


@pytest.mark.parametrize("said", [b"-5", b"0", b"0.001", b"null"])
async def test_a_retry_after_under_a_second_waits_a_second(said: bytes) -> None:
    """A negative wait made the poller's `trio.sleep` raise, and 0 would make it spin."""
    body = b'{"ok":false,"error_code":429,"description":"Too Many","parameters":{"retry_after":'
    async with open_telegram_api(TOKEN, transport=transport(429, body + said + b"}}")) as api:
        with pytest.raises(TelegramRetryAfter) as info:
            await api.send_message(1, "x")
    assert info.value.retry_after == 1.0


@pytest.mark.parametrize(
    ("status", "body", "text"),
    [
        (
            502,
            b'{"ok":false,"error_code":502,"description":"Bad Gateway"}',
            "Telegram error 502: Bad Gateway",
        ),
        (
            502,
            b"<html>Bad Gateway</html>",
            "Telegram error 502: sendMessage: HTTP 502 with an HTML body",
        ),
        (
            200,
            b'{"ok": true, "result": [',
            "Telegram error: sendMessage: HTTP 200 with a malformed body",
        ),
    ],
)
async def test_an_error_names_a_code_only_when_it_is_an_error_code(
    status: int, body: bytes, text: str
) -> None:
    """A malformed answer under HTTP 200 is no "Telegram error 200" in the log."""
    async with open_telegram_api(TOKEN, transport=transport(status, body)) as api:
        with pytest.raises(TelegramTransientError) as info:
            await api.send_message(1, "x")
    assert str(info.value) == text


async def test_transport_errors_never_carry_the_url() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    async with open_telegram_api(TOKEN, transport=httpx.MockTransport(broken)) as api:
        with pytest.raises(TelegramTransientError) as info:
            await api.get_me()
    assert TOKEN not in "".join(traceback.format_exception(info.value))
    assert str(info.value).startswith("Telegram error: getMe: ")  # no "error 0"
    assert info.value.__cause__ is None


def ten_thousand_characters() -> str:
    parts: list[str] = []
    n = 0
    while sum(len(p) for p in parts) < 10_000:
        n += 1
        parts.append(f"Step {n}: if a < b && b > c then 👨‍👩‍👧 & 🇺🇦 ok.\n\n")
        if n % 9 == 0:
            parts.append(
                f"```cpp\ntemplate<typename T> T f(T a) {{ return a > {n} ? a : {n}; }}\n```\n\n"
            )
    return "".join(parts)


async def test_long_output_is_delivered_in_chunks_the_server_accepts() -> None:
    markdown = ten_thousand_characters()
    with trio.fail_after(60):
        async with (
            open_fake_telegram(TOKEN) as tg,
            open_telegram_api(TOKEN, base_url=tg.base_url) as api,
        ):
            send, receive = trio.open_memory_channel[SenderMsg](10)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    lambda: telegram_sender.run(
                        receive, api, max_chunks=10, rng=random.Random(0), trace=lambda r: None
                    )
                )
                await send.send(SendReply(chat_id=5, markdown=markdown))
                send.close()
            assert all(call.status == 200 for call in tg.calls)
            chunks = tg.sent_texts(5)
            assert len(chunks) >= 3
            expected = visible_text(render_markdown(markdown))
            squash = lambda text: re.sub(r"\s+", " ", text).strip()  # noqa: E731
            assert squash(" ".join(chunks)) == squash(expected)


async def test_a_429_mid_stream_delays_but_never_loses_the_final() -> None:
    with trio.fail_after(60):
        async with (
            open_fake_telegram(TOKEN) as tg,
            open_telegram_api(TOKEN, base_url=tg.base_url) as api,
        ):
            tg.script_fault("editMessageText", RetryAfter(2))
            send, receive = trio.open_memory_channel[SenderMsg](10)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    lambda: telegram_sender.run(
                        receive, api, max_chunks=4, rng=random.Random(0), trace=lambda r: None
                    )
                )
                await send.send(UpdateLive(chat_id=5, slot="run-1", text="working"))
                await tg.wait_for(lambda t: len(t.sent_texts(5)) == 1)
                await send.send(UpdateLive(chat_id=5, slot="run-1", text="still working"))
                await send.send(SendReply(chat_id=5, markdown="**final** result"))
                send.close()
            statuses = [
                c.status for c in tg.calls if c.method in ("editmessagetext", "sendmessage")
            ]
            assert 429 in statuses
            assert tg.sent_texts(5)[-1] == "final result"
            assert "still working" in tg.sent_texts(5)
