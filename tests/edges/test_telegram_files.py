"""Downloads through the HTTP adapter (`HttpTelegramApi.download_file`) from the fake Bot API
server: ``getFile``, then the file under ``/file/bot<token>/``; a file past the limit is
refused before or while it downloads, and no error ever carries the token (it is in the
file's URL)."""

from __future__ import annotations

import httpx
import pytest
import trio

from orchestrator.edges.telegram_http import open_telegram_api
from orchestrator.errors import TelegramBadRequest, TelegramFileTooBig, TelegramTransientError
from tests.fakes.telegram_server import open_fake_telegram

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


async def test_a_file_is_fetched_by_its_id() -> None:
    with trio.fail_after(30):
        async with open_fake_telegram(TOKEN) as tg:
            sent = tg.add_file(b"hello\x00world" * 1000, "documents/file_7.txt")
            async with open_telegram_api(TOKEN, base_url=tg.base_url) as api:
                data = await api.download_file(sent["file_id"], max_bytes=1_000_000)
    assert data == b"hello\x00world" * 1000
    assert tg.downloads == ["documents/file_7.txt"]
    assert [call.params["file_id"] for call in tg.calls_of("getfile")] == [sent["file_id"]]


async def test_a_file_past_the_limit_is_refused_without_downloading_it() -> None:
    with trio.fail_after(30):
        async with open_fake_telegram(TOKEN) as tg:
            sent = tg.add_file(b"x" * 5000, "photos/file_1.jpg")
            async with open_telegram_api(TOKEN, base_url=tg.base_url) as api:
                with pytest.raises(TelegramFileTooBig) as caught:
                    await api.download_file(sent["file_id"], max_bytes=4096)
                with pytest.raises(TelegramBadRequest) as unknown:
                    await api.download_file("nope", max_bytes=4096)
    assert caught.value.size == 5000
    assert tg.downloads == []
    assert TOKEN not in str(unknown.value)


def _lying_transport(seen: list[str]) -> httpx.MockTransport:
    """getFile says 10 bytes; the download is 100,000 (a file size Telegram did not state)."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path.endswith("/getFile"):
            return httpx.Response(
                200, content=b'{"ok":true,"result":{"file_id":"f","file_path":"a/b.bin"}}'
            )
        if request.url.path.endswith("/gone.bin"):
            raise httpx.ConnectError(f"cannot reach {request.url}")
        return httpx.Response(200, content=b"y" * 100_000)

    return httpx.MockTransport(handler)


async def test_a_download_is_cut_off_past_the_limit_and_errors_carry_no_token() -> None:
    seen: list[str] = []
    async with open_telegram_api(
        TOKEN, base_url="https://tg.example", transport=_lying_transport(seen)
    ) as api:
        with pytest.raises(TelegramFileTooBig):
            await api.download_file("f", max_bytes=1000)
    assert seen[-1] == f"/file/bot{TOKEN}/a/b.bin"

    def broken(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/getFile"):
            return httpx.Response(
                200, content=b'{"ok":true,"result":{"file_id":"f","file_path":"gone.bin"}}'
            )
        raise httpx.ConnectError(f"cannot reach {request.url}")

    async with open_telegram_api(
        TOKEN, base_url="https://tg.example", transport=httpx.MockTransport(broken)
    ) as api:
        with pytest.raises(TelegramTransientError) as caught:
            await api.download_file("f", max_bytes=1000)
    assert TOKEN not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
