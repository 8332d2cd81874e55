"""The fake Bot API behaves like Telegram (checked with a plain HTTP client)."""

from __future__ import annotations

import httpx
import pytest
import trio

from tests.fakes.telegram_server import (
    NOT_MODIFIED,
    MalformedJson,
    RetryAfter,
    ServerError,
    command_entities,
    open_fake_telegram,
)

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
CEILING = 10


async def call(client: httpx.AsyncClient, method: str, **params):
    response = await client.post(f"/bot{TOKEN}/{method}", json=params, timeout=60)
    return response.status_code, response.json()


async def test_offset_confirmation_and_limit() -> None:
    with trio.fail_after(CEILING):
        async with (
            open_fake_telegram(TOKEN) as tg,
            httpx.AsyncClient(base_url=tg.base_url) as client,
        ):
            for n in range(3):
                tg.push_message(chat_id=1, user_id=1, text=f"m{n}")
            status, body = await call(client, "getUpdates", limit=2)
            assert status == 200
            assert [u["message"]["text"] for u in body["result"]] == ["m0", "m1"]
            ids = [u["update_id"] for u in body["result"]]
            _, body = await call(client, "getUpdates", offset=ids[-1] + 1)
            assert [u["message"]["text"] for u in body["result"]] == ["m2"]
            _, body = await call(client, "getupdates", offset=ids[-1] + 2)  # case-insensitive
            assert body["result"] == []
            _, body = await call(client, "getUpdates", offset=ids[0])
            assert body["result"] == []  # confirmed updates are gone for good


async def test_long_poll_parks_and_wakes_up() -> None:
    with trio.fail_after(CEILING):
        async with (
            open_fake_telegram(TOKEN) as tg,
            httpx.AsyncClient(base_url=tg.base_url) as client,
        ):
            result: list[object] = []

            async def poll() -> None:
                result.append(await call(client, "getUpdates", timeout=30))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(poll)
                await tg.wait_for(lambda t: len(t.calls_of("getUpdates")) == 1)
                started = trio.current_time()
                tg.push_message(chat_id=1, user_id=1, text="wake up")
            assert trio.current_time() - started < 5
            assert result[0][0] == 200  # type: ignore[index]
            assert result[0][1]["result"][0]["message"]["text"] == "wake up"  # type: ignore[index]


async def test_second_poller_gets_409() -> None:
    with trio.fail_after(CEILING):
        async with (
            open_fake_telegram(TOKEN) as tg,
            httpx.AsyncClient(base_url=tg.base_url) as client,
        ):
            results: list[tuple[int, dict[str, str]]] = []

            async def poll() -> None:
                results.append(await call(client, "getUpdates", timeout=30))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(poll)
                await tg.wait_for(lambda t: len(t.calls_of("getUpdates")) == 1)
                nursery.start_soon(poll)
                await tg.wait_for(lambda t: any(c.status == 409 for c in t.calls))
                tg.push_message(chat_id=1, user_id=1, text="x")
            statuses = sorted(status for status, _ in results)
            assert statuses == [200, 409]
            conflict = next(body for status, body in results if status == 409)
            assert "only one bot instance" in conflict["description"]


async def test_length_limits_in_code_points() -> None:
    async with open_fake_telegram(TOKEN) as tg, httpx.AsyncClient(base_url=tg.base_url) as client:
        assert (await call(client, "sendMessage", chat_id=1, text="😀" * 4096))[0] == 200
        status, body = await call(client, "sendMessage", chat_id=1, text="😀" * 4097)
        assert (status, body["description"]) == (400, "Bad Request: message is too long")
        status, body = await call(
            client, "sendMessage", chat_id=1, text="<b>x</b>" * 600, parse_mode="HTML"
        )
        assert status == 200  # markup does not count
        status, body = await call(client, "sendMessage", chat_id=1, text="   ")
        assert body["description"] == "Bad Request: text must be non-empty"
        status, body = await call(client, "sendMessage", chat_id=1, text="")
        assert body["description"] == "Bad Request: message text is empty"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("<foo>x</foo>", 'Unsupported start tag "foo"'),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("<b>x", 'Can\'t find end tag corresponding to start tag "b"'),
        ("a < b", "Unclosed start tag"),
        ("x</b>", "Unexpected end tag"),
    ],
)
async def test_html_parse_errors(text: str, fragment: str) -> None:
    async with open_fake_telegram(TOKEN) as tg, httpx.AsyncClient(base_url=tg.base_url) as client:
        status, body = await call(client, "sendMessage", chat_id=1, text=text, parse_mode="HTML")
        assert status == 400
        assert body["description"].startswith("Bad Request: can't parse entities: ")
        assert fragment in body["description"]


async def test_edits_not_modified_and_not_found() -> None:
    async with open_fake_telegram(TOKEN) as tg, httpx.AsyncClient(base_url=tg.base_url) as client:
        _, sent = await call(client, "sendMessage", chat_id=1, text="hello")
        message_id = sent["result"]["message_id"]
        status, body = await call(
            client, "editMessageText", chat_id=1, message_id=message_id, text="hello "
        )
        assert (status, body["description"]) == (400, NOT_MODIFIED)
        assert (
            await call(client, "editMessageText", chat_id=1, message_id=message_id, text="bye")
        )[0] == 200
        status, body = await call(client, "editMessageText", chat_id=1, message_id=999, text="x")
        assert body["description"] == "Bad Request: message to edit not found"
        assert tg.sent_texts(1) == ["bye"]


async def test_buttons_change_alone_and_the_text_stays() -> None:
    """``editMessageReplyMarkup``: the same buttons again are "not modified", as Telegram
    says; an empty keyboard takes them all away."""
    markup = {"inline_keyboard": [[{"text": "Stop", "callback_data": "bg:1"}]]}
    async with open_fake_telegram(TOKEN) as tg, httpx.AsyncClient(base_url=tg.base_url) as client:
        _, sent = await call(client, "sendMessage", chat_id=1, text="hi", reply_markup=markup)
        message_id = sent["result"]["message_id"]
        status, body = await call(
            client, "editMessageReplyMarkup", chat_id=1, message_id=message_id, reply_markup=markup
        )
        assert (status, body["description"]) == (400, NOT_MODIFIED)
        empty: dict[str, list[object]] = {"inline_keyboard": []}
        assert (
            await call(
                client,
                "editMessageReplyMarkup",
                chat_id=1,
                message_id=message_id,
                reply_markup=empty,
            )
        )[0] == 200
        (stored,) = tg.chats[1].values()
        assert (stored.text, stored.reply_markup) == ("hi", None)
        status, body = await call(client, "editMessageReplyMarkup", chat_id=1, message_id=999)
        assert body["description"] == "Bad Request: message to edit not found"


async def test_blocked_migrated_and_button_data() -> None:
    async with open_fake_telegram(TOKEN) as tg, httpx.AsyncClient(base_url=tg.base_url) as client:
        tg.block(5)
        status, body = await call(client, "sendMessage", chat_id=5, text="x")
        assert (status, body["description"]) == (403, "Forbidden: bot was blocked by the user")
        tg.migrate(-5, -1005)
        status, body = await call(client, "sendMessage", chat_id=-5, text="x")
        assert body["parameters"] == {"migrate_to_chat_id": -1005}
        keyboard = {"inline_keyboard": [[{"text": "x", "callback_data": "d" * 65}]]}
        status, body = await call(client, "sendMessage", chat_id=1, text="x", reply_markup=keyboard)
        assert body["description"] == "Bad Request: BUTTON_DATA_INVALID"


async def test_scripted_faults_and_wrong_token() -> None:
    async with open_fake_telegram(TOKEN) as tg, httpx.AsyncClient(base_url=tg.base_url) as client:
        tg.script_fault("sendMessage", RetryAfter(7))
        status, body = await call(client, "sendMessage", chat_id=1, text="x")
        assert (status, body["parameters"]["retry_after"]) == (429, 7)
        tg.script_fault("getUpdates", ServerError(502))
        response = await client.post(f"/bot{TOKEN}/getUpdates")
        assert response.status_code == 502
        assert response.text.startswith("<html>")
        tg.script_fault("getUpdates", MalformedJson())
        response = await client.post(f"/bot{TOKEN}/getUpdates")
        with pytest.raises(ValueError):  # noqa: PT011 - json's error type
            response.json()
        response = await client.post("/bot1:wrong/getMe")
        assert response.status_code == 401
        response = await client.post(f"/bot{TOKEN}/noSuchMethod")
        assert response.json()["description"] == "Not Found: method not found"


async def test_multipart_document_and_form_bodies() -> None:
    async with open_fake_telegram(TOKEN) as tg, httpx.AsyncClient(base_url=tg.base_url) as client:
        response = await client.post(
            f"/bot{TOKEN}/sendDocument",
            data={"chat_id": "1", "caption": "<b>summary</b>", "parse_mode": "HTML"},
            files={"document": ("reply.md", b"# long\n", "text/markdown")},
        )
        assert response.status_code == 200
        stored = tg.messages(1)[0]
        assert (stored.document, stored.filename, stored.text) == (
            b"# long\n",
            "reply.md",
            "summary",
        )
        response = await client.post(
            f"/bot{TOKEN}/sendMessage", data={"chat_id": "2", "text": "form"}
        )
        assert response.status_code == 200
        assert tg.sent_texts(2) == ["form"]


async def test_commands_get_entities_with_utf16_offsets() -> None:
    async with open_fake_telegram(TOKEN) as tg, httpx.AsyncClient(base_url=tg.base_url) as client:
        tg.push_message(chat_id=1, user_id=1, text="😀 /mode@TestBot plan")
        _, body = await call(client, "getUpdates")
        entity = body["result"][0]["message"]["entities"][0]
        assert entity == {"type": "bot_command", "offset": 3, "length": 13}


def test_mentions_and_commands_are_marked_as_telegram_marks_them() -> None:
    """A user's ``@username`` is a ``mention`` entity (5 to 32 characters after the @);
    ``/cmd@Bot`` is one ``bot_command``, with no mention inside it; offsets in UTF-16."""
    entities = command_entities("😀 @TestBot fix it, /mode@TestBot plan, ask @bob or @alice_x")
    assert [(e["type"], e["offset"], e["length"]) for e in entities] == [
        ("mention", 3, 8),
        ("bot_command", 20, 13),
        ("mention", 52, 8),
    ]
