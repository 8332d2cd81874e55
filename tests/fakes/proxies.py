"""Fake proxies on 127.0.0.1, as a company network or a censored one puts in front of the Bot
API. An HTTP proxy: a tunnel for ``CONNECT host:port`` (an ``https`` server: the proxy sees
neither the path nor the token) and forwarding for a request with the whole URL (an ``http``
server), with Basic credentials when it is given some. A SOCKS5 proxy (RFC 1928, RFC 1929's
user and password): a tunnel to a server by name or address. The HTTP one also spoken to
over TLS (an ``https://`` proxy). Each records what its clients asked of it."""

from __future__ import annotations

import base64
import functools
import ipaddress
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

import h11
import trio

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncIterator


@dataclass(frozen=True)
class ProxyRequest:
    """What a client asked: ``CONNECT`` (HTTP) or ``SOCKS5`` and ``host:port``, or a method
    and the whole URL; the credentials it gave (``user:password``, decoded), or None."""

    method: str
    target: str
    credentials: str | None


@dataclass
class FakeProxy:
    credentials: str | None = None
    """``user:password`` the proxy asks for (407 without them), or None: open to all."""
    refuse: int | None = None
    """A status (HTTP) or reply code (SOCKS5) to answer every tunnel with instead."""
    socks: bool = False
    """A SOCKS5 proxy instead of an HTTP one."""
    tls: ssl.SSLContext | None = None
    """The server side of TLS to clients (an ``https://`` proxy), or None: plain."""
    port: int = 0
    requests: list[ProxyRequest] = field(default_factory=list)

    def url(self, credentials: str | None = None) -> str:
        """The proxy's URL as a user writes it in ``HTTPS_PROXY``, with `credentials`
        (``user:password``) percent-encoded."""
        user = ""
        if credentials is not None:
            name, _, password = credentials.partition(":")
            user = f"{quote(name, safe='')}:{quote(password, safe='')}@"
        scheme = "socks5" if self.socks else "https" if self.tls else "http"
        return f"{scheme}://{user}127.0.0.1:{self.port}"


async def _next_event(connection: h11.Connection, stream: trio.abc.Stream) -> h11.Event:
    while True:
        event = connection.next_event()
        if isinstance(event, h11.Event):
            return event
        if event is h11.PAUSED:  # a new request before the answer: not this proxy's clients
            raise h11.RemoteProtocolError("pipelined request")
        connection.receive_data(bytes(await stream.receive_some(65536)))


def _relayed(sink: h11.Connection, event: h11.Event) -> bytes:
    """`event` (a head, a body's piece, its end) as `sink` sends it on."""
    if isinstance(event, h11.ConnectionClosed):
        raise trio.BrokenResourceError
    return sink.send(event) or b""


def _credentials(request: h11.Request) -> str | None:
    for name, value in request.headers:
        if name == b"proxy-authorization" and value.lower().startswith(b"basic "):
            return base64.b64decode(value[6:]).decode()
    return None


async def _answer(connection: h11.Connection, stream: trio.abc.Stream, status: int) -> None:
    headers = [("content-length", "0"), ("connection", "close")]
    if status == 407:
        headers.append(("proxy-authenticate", 'Basic realm="test"'))
    await stream.send_all(connection.send(h11.Response(status_code=status, headers=headers)))
    await stream.send_all(connection.send(h11.EndOfMessage()))


async def _pipe(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
    try:
        while chunk := await source.receive_some(65536):
            await sink.send_all(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    with trio.CancelScope(shield=True):
        await trio.aclose_forcefully(sink)


async def _tunnel(
    connection: h11.Connection, client: trio.abc.Stream, request: h11.Request
) -> None:
    host, _, port = request.target.decode().rpartition(":")
    server = await trio.open_tcp_stream(host.strip("[]"), int(port))
    await client.send_all(connection.send(h11.Response(status_code=200, headers=[])))
    early, _ = connection.trailing_data
    if early:
        await server.send_all(early)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_pipe, client, server)
        nursery.start_soon(_pipe, server, client)


async def _forward(
    connection: h11.Connection,
    client: trio.abc.Stream,
    request: h11.Request,
    upstreams: dict[str, tuple[trio.abc.Stream, h11.Connection]],
) -> None:
    url = urlsplit(request.target.decode())
    authority = url.netloc
    if authority not in upstreams:
        stream = await trio.open_tcp_stream(url.hostname or "", url.port or 80)
        upstreams[authority] = (stream, h11.Connection(h11.CLIENT))
    server, upstream = upstreams[authority]
    target = url.path + (f"?{url.query}" if url.query else "")
    headers = [(n, v) for n, v in request.headers if not n.startswith(b"proxy-")]
    forwarded = h11.Request(method=request.method, target=target, headers=headers)
    await server.send_all(upstream.send(forwarded))
    while True:  # the request's body
        event = await _next_event(connection, client)
        await server.send_all(_relayed(upstream, event))
        if isinstance(event, h11.EndOfMessage):
            break
    while True:  # the answer, relayed as it comes (a long poll's head before its body)
        event = await _next_event(upstream, server)
        await client.send_all(_relayed(connection, event))
        if isinstance(event, h11.EndOfMessage):
            break
    upstream.start_next_cycle()


async def _exactly(stream: trio.abc.Stream, count: int) -> bytes:
    received = b""
    while len(received) < count:
        chunk = await stream.receive_some(count - len(received))
        if not chunk:
            raise trio.BrokenResourceError
        received += chunk
    return received


async def _serve_socks(client: trio.abc.Stream, proxy: FakeProxy) -> None:
    """RFC 1928 as a proxy answers it: the login it asks for, then ``CONNECT``."""
    _, count = await _exactly(client, 2)
    methods = await _exactly(client, count)
    given: str | None = None
    if proxy.credentials is not None:
        if 2 not in methods:
            await client.send_all(b"\x05\xff")
            return
        await client.send_all(b"\x05\x02")
        _, length = await _exactly(client, 2)
        user = await _exactly(client, length)
        (length,) = await _exactly(client, 1)
        password = await _exactly(client, length)
        given = f"{user.decode()}:{password.decode()}"
        if given != proxy.credentials:
            proxy.requests.append(ProxyRequest("SOCKS5", "", given))
            await client.send_all(b"\x01\x01")
            return
        await client.send_all(b"\x01\x00")
    else:
        await client.send_all(b"\x05\x00")
    _, command, _, kind = await _exactly(client, 4)
    if kind == 3:
        (length,) = await _exactly(client, 1)
        host = (await _exactly(client, length)).decode()
    else:
        host = str(ipaddress.ip_address(await _exactly(client, 4 if kind == 1 else 16)))
    port = int.from_bytes(await _exactly(client, 2), "big")
    proxy.requests.append(ProxyRequest("SOCKS5", f"{host}:{port}", given))
    if command != 1 or proxy.refuse is not None:
        await client.send_all(bytes([5, proxy.refuse or 7, 0, 1, 0, 0, 0, 0, 0, 0]))
        return
    server = await trio.open_tcp_stream(host, port)
    await client.send_all(b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x00")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_pipe, client, server)
        nursery.start_soon(_pipe, server, client)


async def _serve(client: trio.abc.Stream, proxy: FakeProxy) -> None:
    if proxy.tls is not None:
        client = trio.SSLStream(client, proxy.tls, server_side=True)
    if proxy.socks:
        try:
            await _serve_socks(client, proxy)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(client)
        return

    connection = h11.Connection(h11.SERVER)
    upstreams: dict[str, tuple[trio.abc.Stream, h11.Connection]] = {}
    try:
        while True:
            request = await _next_event(connection, client)
            if not isinstance(request, h11.Request):
                return
            given = _credentials(request)
            proxy.requests.append(
                ProxyRequest(request.method.decode(), request.target.decode(), given)
            )
            if proxy.credentials is not None and given != proxy.credentials:
                await _answer(connection, client, 407)
                return
            if request.method == b"CONNECT":
                if proxy.refuse is not None:
                    await _answer(connection, client, proxy.refuse)
                    return
                await _tunnel(connection, client, request)
                return
            await _forward(connection, client, request, upstreams)
            connection.start_next_cycle()
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError, OSError):
        return
    finally:
        for server, _ in upstreams.values():
            await trio.aclose_forcefully(server)
        await trio.aclose_forcefully(client)


@asynccontextmanager
async def open_fake_proxy(
    credentials: str | None = None,
    *,
    refuse: int | None = None,
    socks: bool = False,
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[FakeProxy]:
    """Serve a fake HTTP (or `socks`: SOCKS5) proxy on 127.0.0.1 for the duration of the
    block, spoken to over `tls` when given (an ``https://`` proxy)."""
    proxy = FakeProxy(credentials=credentials, refuse=refuse, socks=socks, tls=tls)
    async with trio.open_nursery() as nursery:
        serve = functools.partial(_serve, proxy=proxy)
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, serve, 0, host="127.0.0.1")
        )
        proxy.port = listeners[0].socket.getsockname()[1]
        try:
            yield proxy
        finally:
            nursery.cancel_scope.cancel()
