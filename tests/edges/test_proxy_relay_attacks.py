"""The workers' proxy relay against what a prompted command, or another user of the machine,
may try: make the proxy echo the credentials the relay adds, hold its connections without
its secret, reset a tunnel, or learn the proxy's address from a failure.

(Malformed and smuggling heads are in `tests.edges.test_proxy_relay`, one case each.)"""

from __future__ import annotations

import base64
import logging
import socket
import struct
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import quote

import trio

from orchestrator.edges.http1_proxy import Proxy
from orchestrator.edges.proxy_relay import ProxyRelay
from tests.edges.test_proxy_relay import (
    CREDENTIALS,
    PASSWORD,
    answer_through,
    relay_authorization,
)
from tests.fakes.proxies import open_fake_proxy
from tests.fakes.tls import make_fake_tls

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

REAL = base64.b64encode(CREDENTIALS.encode())
"""The real proxy's credentials as a ``Proxy-Authorization`` carries them."""


async def read_head(stream: trio.abc.ReceiveStream) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head and (chunk := await stream.receive_some(65536)):
        head += chunk
    return head


async def test_max_forwards_is_not_passed_on() -> None:
    """``Max-Forwards: 0`` asks the proxy itself to answer; for a ``TRACE`` (refused: see
    the malformed heads) its answer is the request it got, the relay's credentials in it.
    The header is the relay's to drop; the proxy gets the rest, with the credentials."""
    heads: list[bytes] = []

    async def echoing_proxy(stream: trio.SocketStream) -> None:
        head = await read_head(stream)
        heads.append(head)
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(head) + head
        )
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(
            partial(trio.serve_tcp, echoing_proxy, 0, host="127.0.0.1")
        )
        port = listener.socket.getsockname()[1]
        await answer_through(
            f"http://proxy-user:{quote(PASSWORD, safe='')}@127.0.0.1:{port}",
            b"GET http://example.org/ HTTP/1.1\r\nHost: example.org\r\nMax-Forwards: 0\r\n\r\n",
        )
        nursery.cancel_scope.cancel()
    [forwarded] = heads
    assert b"max-forwards" not in forwarded.lower()
    assert b"Proxy-Authorization: Basic " + REAL in forwarded
    assert forwarded.startswith(b"GET http://example.org/ HTTP/1.1\r\n")


async def test_idle_connections_without_the_secret_do_not_take_the_workers_slots() -> None:
    """Anyone on the machine can connect to 127.0.0.1: connections that have not shown the
    secret have slots of their own, and a worker's is served while they sit idle."""
    async with open_fake_proxy(CREDENTIALS) as proxy, trio.open_nursery() as nursery:
        upstream = Proxy.parse(proxy.url(CREDENTIALS))
        assert upstream is not None
        relay = ProxyRelay(upstream, connections=1, unverified=2)
        await nursery.start(relay.serve)
        idle = await trio.open_tcp_stream("127.0.0.1", relay.port)  # says nothing
        worker = await trio.open_tcp_stream("127.0.0.1", relay.port)
        await worker.send_all(
            b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n" + relay_authorization(relay) + b"\r\n"
        )
        with trio.fail_after(5):  # before the fix: no answer until the idle one timed out
            answer = await read_head(worker)
        assert answer.startswith(b"HTTP/1.1 502")  # the proxy was asked (port 1 refuses)
        assert len(proxy.requests) == 1
        await idle.aclose()
        await worker.aclose()
        nursery.cancel_scope.cancel()


async def test_a_client_that_resets_its_tunnel_is_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A killed curl, or Codex dropping a streamed answer, resets the connection with data
    on its way: the tunnel ends quietly (no traceback at ERROR), and its server side closes."""
    server_done = trio.Event()

    async def chatty(stream: trio.SocketStream) -> None:
        try:
            while True:
                await stream.send_all(b"x" * 65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            server_done.set()

    async with open_fake_proxy(CREDENTIALS) as proxy, trio.open_nursery() as nursery:
        upstream = Proxy.parse(proxy.url(CREDENTIALS))
        assert upstream is not None
        relay = ProxyRelay(upstream)
        await nursery.start(relay.serve)
        [listener] = await nursery.start(partial(trio.serve_tcp, chatty, 0, host="127.0.0.1"))
        origin = listener.socket.getsockname()[1]
        client = await trio.open_tcp_stream("127.0.0.1", relay.port)
        await client.send_all(
            b"CONNECT 127.0.0.1:%d HTTP/1.1\r\n" % origin + relay_authorization(relay) + b"\r\n"
        )
        assert (await read_head(client)).startswith(b"HTTP/1.1 200")
        # an abortive close: RST, with the server's bytes unread
        client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await client.aclose()
        with trio.fail_after(5):
            await server_done.wait()
        nursery.cancel_scope.cancel()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_a_proxy_certificate_for_another_name_is_a_502_without_the_proxys_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenSSL's "Hostname mismatch, certificate is not valid for '<host>'" names the host
    the relay asked for: the proxy's, which is not the workers' to learn from it."""
    made = make_fake_tls(tmp_path / "tls", names=("other.example",))
    monkeypatch.setenv("SSL_CERT_FILE", str(made.authority))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    async with open_fake_proxy(CREDENTIALS, tls=made.server) as proxy:
        answer = await answer_through(proxy.url(CREDENTIALS).replace("127.0.0.1", "localhost"))
    assert answer.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert b"certificate is not valid for that host" in answer
    assert b"localhost" not in answer
