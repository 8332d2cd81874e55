"""The lean HTTP/1.1 client: framing (length, chunked, to the end), keep-alive reuse, a
connection the server closed, errors that carry no path (the token is in the path), and a
deadline judged after what waits in the socket is read."""

from __future__ import annotations

import pytest
import trio

from orchestrator.edges.http1 import LATE_LOOK, HttpError, LeanHttp, _Connection, uses_proxy
from orchestrator.edges.telegram_http import open_telegram_api
from orchestrator.errors import TelegramTransientError
from tests.fakes.telegram_server import open_fake_telegram

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


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

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, serve, 0)
        port = listeners[0].socket.getsockname()[1]
        client = LeanHttp(f"http://127.0.0.1:{port}/base", connections=2)
        for _ in range(2):
            status, got = await client.post_json(
                "/bot1:x/getMe", b"{}", connect_seconds=5, seconds=5
            )
            assert got == body
            assert status in (200, 502)
        await client.aclose()
        nursery.cancel_scope.cancel()
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

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, serve, 0)
        port = listeners[0].socket.getsockname()[1]
        client = LeanHttp(f"http://127.0.0.1:{port}", connections=1)
        with pytest.raises(HttpError):
            await client.post_json("/x", b"{}", connect_seconds=5, seconds=5)
        nursery.cancel_scope.cancel()


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

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, serve, 0)
        port = listeners[0].socket.getsockname()[1]
        client = LeanHttp(f"http://127.0.0.1:{port}", connections=1)
        asked = trio.current_time()
        with pytest.raises(trio.TooSlowError):
            await client.post_json("/x", b"{}", connect_seconds=5, seconds=30)
        assert trio.current_time() - asked == pytest.approx(30 + LATE_LOOK, abs=0.01)
        nursery.cancel_scope.cancel()


def test_a_proxy_in_the_environment_keeps_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert not uses_proxy("https://api.telegram.org")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert uses_proxy("https://api.telegram.org")
    monkeypatch.setenv("NO_PROXY", "api.telegram.org")
    assert not uses_proxy("https://api.telegram.org")
