"""The lean HTTP/1.1 client: framing (length, chunked, to the end), keep-alive reuse, a
connection the server closed, errors that carry no path (the token is in the path), and a
deadline judged after what waits in the socket is read."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import pytest
import trio

from orchestrator.edges.http1 import (
    LATE_LOOK,
    HttpError,
    LeanHttp,
    _Connection,
    multipart,
)
from orchestrator.edges.telegram_http import open_telegram_api
from orchestrator.errors import TelegramTransientError
from tests.fakes.telegram_server import open_fake_telegram

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


@asynccontextmanager
async def client_of(
    serve: Callable[[trio.SocketStream], Awaitable[None]], *, path: str = "", connections: int = 1
) -> AsyncIterator[LeanHttp]:
    """A lean client of a server on 127.0.0.1 whose connections `serve` answers; the server
    and the client's connections end with the block."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, serve, 0)
        port = listeners[0].socket.getsockname()[1]
        client = LeanHttp(f"http://127.0.0.1:{port}{path}", connections=connections)
        try:
            yield client
        finally:
            await client.aclose()
            nursery.cancel_scope.cancel()


async def test_json_calls_go_through_the_lean_client_and_reuse_one_connection() -> None:
    async with (
        open_fake_telegram(TOKEN) as telegram,
        open_telegram_api(TOKEN, base_url=telegram.base_url) as api,
    ):
        first = await api.send_message(42, "one")
        second = await api.send_message(42, "two <b>x</b>", parse_mode="HTML")
        assert second == first + 1
        assert telegram.sent_texts(42)[0] == "one"
        me = await api.get_me()
        assert me.username == "TestBot"


@pytest.mark.parametrize(
    ("answer", "body", "reusable"),
    [
        (b'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{"ok":true}', b'{"ok":true}', True),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'4;x=y\r\n{"ok\r\n7\r\n":true}\r\n0\r\nTrailer: 1\r\n\r\n',
            b'{"ok":true}',
            True,
        ),
        (b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"ok":true}', b'{"ok":true}', False),
        (b"HTTP/1.0 502 Bad Gateway\r\nContent-Length: 3\r\n\r\nbad", b"bad", False),
    ],
)
async def test_framing(answer: bytes, body: bytes, reusable: bool) -> None:
    requests: list[bytes] = []
    connections = 0

    async def serve(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        async with stream:
            while True:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    data += chunk
                requests.append(data)
                await stream.send_all(answer)
                if not reusable:
                    return

    async with client_of(serve, path="/base", connections=2) as client:
        for _ in range(2):
            status, got = await client.post("/bot1:x/getMe", b"{}", connect_seconds=5, seconds=5)
            assert got == body
            assert status in (200, 502)
    assert requests[0].startswith(b"POST /base/bot1:x/getMe HTTP/1.1\r\n")
    assert b"Content-Length: 2\r\n" in requests[0]
    assert connections == (1 if reusable else 2)


async def test_a_refused_connection_is_a_transient_error_without_the_token() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()  # nobody listens there now
    async with open_telegram_api(TOKEN, base_url=f"http://127.0.0.1:{port}") as api:
        with pytest.raises(TelegramTransientError) as caught:
            await api.send_message(1, "x")
    assert TOKEN not in str(caught.value)
    assert "sendMessage" in str(caught.value)
    assert "Connection refused" in str(caught.value)  # the system's words, not "ExceptionGroup"


async def test_a_broken_answer_is_an_http_error() -> None:
    async def serve(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some(65536)
            await stream.send_all(b"SSH-2.0-nope\r\n\r\n")

    async with client_of(serve) as client:
        with pytest.raises(HttpError):
            await client.post("/x", b"{}", connect_seconds=5, seconds=5)


async def test_a_read_past_its_deadline_takes_what_waits_in_the_socket(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A bot stopped while the server answered wakes with the deadline passed and the answer
    in its socket, not yet read: the answer is read, not timed out (timed out, a sendMessage
    was sent again). With nothing there, the read times out after one more look, and the
    answer has one look only: a server that trickles it cannot draw it out."""
    ours, theirs = trio.socket.socketpair()
    connection = _Connection(trio.SocketStream(ours))
    async with trio.SocketStream(theirs) as server:
        await server.send_all(b"HTTP/1.1 200 OK")
        connection.expect(-1)  # it woke after the deadline
        assert await connection.receive() == b"HTTP/1.1 200 OK"
        looked_at = trio.current_time()
        await server.send_all(b"\r\nContent-Length: 2")  # the rest, trickling in
        assert await connection.receive() == b"\r\nContent-Length: 2"
        with pytest.raises(trio.TooSlowError):
            await connection.receive()
        assert trio.current_time() - looked_at == pytest.approx(LATE_LOOK)
        await trio.sleep(LATE_LOOK / 2)
        await server.send_all(b"\r\n\r\n")
        with pytest.raises(trio.TooSlowError):  # its look is over
            await connection.receive()
        assert trio.current_time() - looked_at == pytest.approx(1.5 * LATE_LOOK)
        await connection.stream.aclose()


async def test_a_silent_server_times_out_after_the_deadline_and_a_look(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def serve(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some(65536)
            await trio.sleep_forever()

    async with client_of(serve) as client:
        asked = trio.current_time()
        with pytest.raises(trio.TooSlowError):
            await client.post("/x", b"{}", connect_seconds=5, seconds=30)
        assert trio.current_time() - asked == pytest.approx(30 + LATE_LOOK, abs=0.01)


async def test_an_upload_slower_than_the_deadline_goes_through_while_it_moves(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The deadline bounds each piece of a request, then the answer: a 24 MB document on a
    link that takes 1 MB a second arrives (httpx, which sent uploads before, bounds each
    write the same way), where one deadline for the whole call would cut it off."""
    body = bytes(24 * 1024 * 1024)
    received = bytearray()

    async def serve(stream: trio.SocketStream) -> None:
        async with stream:
            # Until the head and the whole body are in.
            while (end := received.find(b"\r\n\r\n")) < 0 or len(received) - end - 4 < len(body):
                received.extend(await stream.receive_some(1024 * 1024))
                await trio.sleep(1)
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await trio.sleep_forever()

    async with client_of(serve) as client:
        asked = trio.current_time()
        status, got = await client.post(
            "/x", body, connect_seconds=5, seconds=10, content_type=b"application/octet-stream"
        )
        assert (status, got) == (200, b"ok")
        assert trio.current_time() - asked > 10  # longer than the deadline, piece by piece
        assert b"Content-Type: application/octet-stream\r\n" in received


def test_a_multipart_body_parses_back_field_for_field() -> None:
    """What `multipart` writes, read by the standard library's MIME parser: each field, the
    file's bytes untouched (CR, LF and a would-be boundary in them), and a file name whose
    quote and line breaks are percent-encoded instead of ending its header."""
    import email.parser
    import email.policy

    content = b"\x00\r\n--not-the-boundary\r\n\xff" * 3
    body, kind = multipart(
        {"chat_id": "42", "caption": "é ✓"},
        {"document": ('a"b\r\nc.md', content, "text/markdown")},
    )
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + kind + b"\r\n\r\n" + body
    )
    parts = list(message.iter_parts())
    assert [part.get_param("name", header="content-disposition") for part in parts] == [
        "chat_id",
        "caption",
        "document",
    ]
    caption = parts[1].get_payload(decode=True)
    assert isinstance(caption, bytes)
    assert caption.decode() == "é ✓"
    assert parts[2].get_filename() == "a%22b%0D%0Ac.md"
    assert parts[2].get_content_type() == "text/markdown"
    assert parts[2].get_payload(decode=True) == content


async def test_a_document_goes_through_the_lean_client() -> None:
    async with (
        open_fake_telegram(TOKEN) as telegram,
        open_telegram_api(TOKEN, base_url=telegram.base_url) as api,
    ):
        first = await api.send_message(42, "one")
        sent = await api.send_document(42, "notes.txt", b"line\r\n", caption="the <b>notes</b>")
        assert sent == first + 1
    stored = telegram.messages(42)[-1]
    assert (stored.filename, stored.document, stored.text) == (
        "notes.txt",
        b"line\r\n",
        "the <b>notes</b>",
    )
