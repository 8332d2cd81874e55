"""The workers' proxy relay (`orchestrator.edges.proxy_relay`) in front of a fake proxy that
wants a password: what a worker asks of the relay (a ``CONNECT`` tunnel to an HTTPS server,
a request with the whole URL to an HTTP one) reaches the server through the real proxy with
its credentials, through each kind the bot speaks (http, https, socks5); without the relay's
secret nothing reaches the proxy; a refusal is answered as a proxy answers, without the
proxy's address or password; and only proxies with credentials are relayed."""

from __future__ import annotations

import base64
import logging
import ssl
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import pytest
import trio
import trio.testing

from orchestrator.edges.http1_proxy import Proxy
from orchestrator.edges.proxy_relay import ProxyRelay, serve_proxy_relays
from tests.fakes.proxies import open_fake_proxy
from tests.fakes.telegram_server import open_fake_telegram
from tests.fakes.tls import make_fake_tls

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from tests.fakes.proxies import FakeProxy
    from tests.fakes.tls import FakeTls

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
PASSWORD = "p@ss w:ord"
CREDENTIALS = f"proxy-user:{PASSWORD}"


@pytest.fixture(params=["http", "https", "socks5"], ids=lambda kind: f"{kind}-proxy")
def kind(request: pytest.FixtureRequest) -> str:
    """The real proxy's scheme."""
    return str(request.param)


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTls:
    """The test's certificate authority, trusted by the relay (for an ``https://`` proxy)."""
    made = make_fake_tls(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(made.authority))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    return made


@asynccontextmanager
async def relayed(
    kind: str, tls: FakeTls, *, given: str = CREDENTIALS, refuse: int | None = None
) -> AsyncIterator[tuple[FakeProxy, ProxyRelay]]:
    """A fake proxy of `kind` that wants `CREDENTIALS`, and a relay that gives it `given`."""
    async with (
        open_fake_proxy(
            CREDENTIALS,
            refuse=refuse,
            socks=kind == "socks5",
            tls=tls.server if kind == "https" else None,
        ) as proxy,
        trio.open_nursery() as nursery,
    ):
        upstream = Proxy.parse(proxy.url(given))
        assert upstream is not None
        relay = ProxyRelay(upstream)
        await nursery.start(relay.serve)
        yield proxy, relay
        nursery.cancel_scope.cancel()


def worker_client(relay_url: str, tls: FakeTls) -> httpx.AsyncClient:
    """A worker's HTTP client, given the relay as its proxy (as Codex and npm are)."""
    trusted = ssl.create_default_context(cafile=str(tls.authority))
    return httpx.AsyncClient(proxy=relay_url, verify=trusted, trust_env=False)


async def ask(relay: ProxyRelay, head: bytes) -> bytes:
    """Send `head` to the relay as it is; its whole answer."""
    stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
    async with stream:
        await stream.send_all(head)
        answer = b""
        while chunk := await stream.receive_some(65536):
            answer += chunk
    return answer


async def answer_through(
    url: str, head: bytes = b"CONNECT example.org:443 HTTP/1.1\r\n\r\n"
) -> bytes:
    """The whole answer of a relay in front of the proxy `url` to one request, `head`, with
    the relay's secret added after its first line."""
    upstream = Proxy.parse(url)
    assert upstream is not None
    relay = ProxyRelay(upstream)
    async with trio.open_nursery() as nursery:
        await nursery.start(relay.serve)
        line, _, rest = head.partition(b"\r\n")
        answer = await ask(relay, line + b"\r\n" + relay_authorization(relay) + rest)
        nursery.cancel_scope.cancel()
    return answer


def relay_authorization(relay: ProxyRelay) -> bytes:
    parts = urlsplit(relay.url)
    secret = f"{parts.username}:{parts.password}".encode()
    return b"Proxy-Authorization: Basic " + base64.b64encode(secret) + b"\r\n"


async def test_a_tunnel_to_an_https_server_goes_through_the_proxy_with_its_credentials(
    kind: str, tls: FakeTls
) -> None:
    async with (
        open_fake_telegram(TOKEN, tls=tls.server) as telegram,
        relayed(kind, tls) as (proxy, relay),
    ):
        assert PASSWORD not in relay.url
        assert relay.url.startswith("http://codex:")
        async with worker_client(relay.url, tls) as client:
            first = await client.get(f"{telegram.base_url}/bot{TOKEN}/getMe")
            second = await client.get(f"{telegram.base_url}/bot{TOKEN}/getMe")
    assert first.status_code == second.status_code == 200
    assert first.json()["result"]["username"] == "TestBot"
    authority = telegram.base_url.removeprefix("https://")
    method = "SOCKS5" if kind == "socks5" else "CONNECT"
    # one tunnel, kept open by the client for its second request
    assert [(r.method, r.target, r.credentials) for r in proxy.requests] == [
        (method, authority, CREDENTIALS)
    ]


async def test_a_request_to_an_http_server_is_passed_on_with_the_credentials(
    kind: str, tls: FakeTls
) -> None:
    """An HTTP(S) proxy gets the whole URL and the credentials, a SOCKS5 one a tunnel with
    the path alone; one request per connection, so each carries the credentials."""
    async with (
        open_fake_telegram(TOKEN) as telegram,
        relayed(kind, tls) as (proxy, relay),
        worker_client(relay.url, tls) as client,
    ):
        answers = [
            await client.post(f"{telegram.base_url}/bot{TOKEN}/sendMessage", json=body)
            for body in ({"chat_id": 42, "text": "one"}, {"chat_id": 42, "text": "two"})
        ]
    assert [answer.status_code for answer in answers] == [200, 200]
    assert telegram.sent_texts(42) == ["one", "two"]
    authority = telegram.base_url.removeprefix("http://")
    expected = (
        ("SOCKS5", authority, CREDENTIALS)
        if kind == "socks5"
        else ("POST", f"{telegram.base_url}/bot{TOKEN}/sendMessage", CREDENTIALS)
    )
    assert [(r.method, r.target, r.credentials) for r in proxy.requests] == [expected] * 2


@pytest.mark.parametrize(
    "authorization",
    [b"", b"Proxy-Authorization: Basic " + base64.b64encode(b"codex:guess") + b"\r\n"],
    ids=["none", "a-guess"],
)
async def test_without_the_relays_secret_nothing_reaches_the_proxy(
    tls: FakeTls, authorization: bytes
) -> None:
    async with relayed("http", tls) as (proxy, relay):
        answer = await ask(
            relay, b"CONNECT example.org:443 HTTP/1.1\r\nHost: x\r\n" + authorization + b"\r\n"
        )
    assert answer.startswith(b"HTTP/1.1 407 Proxy Authentication Required\r\n")
    assert b'Proxy-Authenticate: Basic realm="codex-orchestrator"' in answer
    assert proxy.requests == []


@pytest.mark.parametrize(
    ("kind", "refuse", "given", "said"),
    [
        ("http", 403, CREDENTIALS, "the proxy refused the tunnel: 403"),
        (
            "https",
            None,
            "proxy-user:wrong",
            "the proxy refused the tunnel: 407 (check the user and password in the proxy URL)",
        ),
        ("socks5", 5, CREDENTIALS, "the SOCKS5 proxy refused the tunnel: connection refused"),
    ],
)
async def test_a_refusal_is_a_bad_gateway_in_the_proxys_words_without_its_secrets(
    tls: FakeTls,
    kind: str,
    refuse: int | None,
    given: str,
    said: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="orchestrator.edges.proxy_relay")
    async with relayed(kind, tls, given=given, refuse=refuse) as (proxy, relay):
        connect = b"CONNECT example.org:443 HTTP/1.1\r\n" + relay_authorization(relay) + b"\r\n"
        first = await ask(relay, connect)
        again = await ask(relay, connect)
    assert first == again
    assert first.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert said.encode() in first
    port = str(proxy.port).encode()
    for secret in (PASSWORD.encode(), b"proxy-user", port):
        assert secret not in first
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        f"the workers' proxy relay could not reach example.org:443: {said}"
    ]  # once, though Codex asks again
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize(
    ("head", "answer"),
    [
        (b"GET /relative HTTP/1.1\r\nHost: x\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"GET https://example.org/ HTTP/1.1\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"CONNECT example.org HTTP/1.1\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"NONSENSE\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"GET http://x/ HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n", b"HTTP/1.1 431 Request"),
        (b"GET http://x/ HTTP/1.1\r\nX: a\n\nZ\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"GET http://x/ HTTP/1.1\r\nX: a\rY: b\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"GET http://x/\x00 HTTP/1.1\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"GET http://x/ HTTP/1.2\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"G(T http://x/ HTTP/1.1\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"GET http://x/ HTTP/1.1\r\nX Y: z\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"TRACE http://x/ HTTP/1.1\r\n", b"HTTP/1.1 405 Method Not Allowed"),
        (b"track http://x/ HTTP/1.1\r\n", b"HTTP/1.1 405 Method Not Allowed"),
        (b"CONNECT example.org:\xb2 HTTP/1.1\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"CONNECT a..b:443 HTTP/1.1\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"CONNECT " + b"a" * 70 + b".org:443 HTTP/1.1\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"CONNECT " + b".".join([b"a" * 60] * 5) + b":443 HTTP/1.1\r\n", b"HTTP/1.1 400 Bad"),
        (b"GET http://[::1/ HTTP/1.1\r\n", b"HTTP/1.1 400 Bad Request"),
    ],
    ids=[
        "origin-form",
        "https-url",
        "connect-without-port",
        "not-http",
        "too-large",
        "bare-lf",
        "bare-cr",
        "nul",
        "http-1.2",
        "method-not-a-token",
        "header-name-not-a-token",
        "trace-echoes",
        "lower-case-track",
        "port-not-ascii",
        "empty-label",
        "label-too-long",
        "name-too-long",
        "broken-ipv6",
    ],
)
async def test_what_is_not_a_proxy_request_is_refused(
    kind: str, tls: FakeTls, head: bytes, answer: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Read strictly, so that what the relay checks is what the proxy reads: a bare LF
    there would end the head early and move the credentials the relay adds into a body
    sent on; a TRACE's answer is the request with them. A host no proxy could be asked for
    is a 400 too, not an error of the relay's."""
    async with relayed(kind, tls) as (proxy, relay):
        line, _, rest = head.partition(b"\r\n")
        authorized = line + b"\r\n" + relay_authorization(relay) + rest + b"\r\n"
        said = await ask(relay, authorized)
    assert said.startswith(answer), said[:200]
    assert proxy.requests == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_only_proxies_with_credentials_are_relayed(tls: FakeTls) -> None:
    secret = f"http://user:{PASSWORD.replace(' ', '%20').replace('@', '%40')}@proxy.example:3128"
    environment = {
        "HTTPS_PROXY": secret,
        "https_proxy": secret,
        "ALL_PROXY": "socks5://other:pw@socks.example:1080",
        "HTTP_PROXY": "http://open.example:8080",
        "npm_config_https_proxy": secret,
        "NO_PROXY": "localhost,127.0.0.1",
        "PATH": "/usr/bin",
    }
    async with trio.open_nursery() as nursery:
        count = await nursery.start(serve_proxy_relays, environment)
        assert count == 2  # one per proxy, not per variable
        relays = {environment[name] for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY")}
        assert len(relays) == 2
        assert environment["HTTPS_PROXY"] == environment["https_proxy"]
        assert environment["npm_config_https_proxy"] == environment["HTTPS_PROXY"]
        for url in relays:
            parts = urlsplit(url)
            assert (parts.scheme, parts.username, parts.hostname) == ("http", "codex", "127.0.0.1")
            assert "other" not in url
        assert environment["HTTP_PROXY"] == "http://open.example:8080"  # nothing to hide
        assert environment["NO_PROXY"] == "localhost,127.0.0.1"
        assert PASSWORD.replace(" ", "%20") not in str(environment)
        nursery.cancel_scope.cancel()
    plain = {"HTTPS_PROXY": "http://open.example:8080"}
    async with trio.open_nursery() as nursery:
        assert await nursery.start(serve_proxy_relays, plain) == 0
    assert plain == {"HTTPS_PROXY": "http://open.example:8080"}


async def test_a_proxy_with_a_password_the_relay_cannot_speak_to_is_kept_from_the_workers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A URL `Proxy.parse` cannot read would reach the workers as it is, password and all:
    it is taken out instead, and the log names the variable, never the URL."""
    environment = {
        "ALL_PROXY": "socks4://proxy-user:hunter2@proxy.example:1080",
        "npm_config_proxy": "http://proxy-user:hunter2@proxy.example:31x8/",
        "https_proxy": "http://proxy-user:hunter2@[::1/",  # "Invalid IPv6 URL"
        "HTTP_PROXY": "socks4://proxy.example:1080",  # nothing to hide: left as it is
        "PATH": "/usr/bin",
    }
    with caplog.at_level(logging.WARNING, logger="orchestrator.edges.proxy_relay"):
        async with trio.open_nursery() as nursery:
            assert await nursery.start(serve_proxy_relays, environment) == 0
    assert environment == {"HTTP_PROXY": "socks4://proxy.example:1080", "PATH": "/usr/bin"}
    warnings = [record.getMessage() for record in caplog.records]
    assert [line.split(":")[0] for line in warnings] == [
        "https_proxy",
        "ALL_PROXY",
        "npm_config_proxy",
    ]
    assert "its URL holds a password" in warnings[0]
    assert not any("hunter2" in line or "proxy.example" in line for line in warnings)


async def test_a_proxy_that_is_down_is_a_bad_gateway_without_its_address() -> None:
    with trio.socket.socket() as unused:  # a port nobody listens on
        await unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    answer = await answer_through(f"http://proxy-user:pw@127.0.0.1:{port}")
    assert answer.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert b"Connection refused" in answer
    assert str(port).encode() not in answer
    assert b"proxy-user" not in answer


async def test_connections_beyond_the_limit_wait_until_one_closes(tls: FakeTls) -> None:
    """The relay's sockets are the bot's: it serves `connections` at once, and the next waits
    in the listening socket's queue, not in a descriptor of the bot."""
    async with open_fake_proxy(CREDENTIALS) as proxy, trio.open_nursery() as nursery:
        upstream = Proxy.parse(proxy.url(CREDENTIALS))
        assert upstream is not None
        relay = ProxyRelay(upstream, connections=1)
        await nursery.start(relay.serve)
        async with open_fake_telegram(TOKEN) as origin:
            authority = origin.base_url.removeprefix("http://").encode()
            connect = b"CONNECT " + authority + b" HTTP/1.1\r\n" + relay_authorization(relay)
            first = await trio.open_tcp_stream("127.0.0.1", relay.port)
            await first.send_all(connect + b"\r\n")
            assert (await first.receive_some(4096)).startswith(b"HTTP/1.1 200")
            second = await trio.open_tcp_stream("127.0.0.1", relay.port)
            await second.send_all(connect + b"\r\n")
            # (a wall-clock window for what must not happen: a relay without the limit
            # answers in well under a millisecond)
            with trio.move_on_after(0.3) as waited:
                await second.receive_some(4096)
            assert waited.cancelled_caught
            assert len(proxy.requests) == 1
            await first.aclose()  # a slot frees: the second is served
            with trio.fail_after(5):
                assert (await second.receive_some(4096)).startswith(b"HTTP/1.1 200")
            assert len(proxy.requests) == 2
            await second.aclose()
        nursery.cancel_scope.cancel()


async def test_a_proxy_that_never_answers_is_a_gateway_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """(`CONNECT_SECONDS` on the test's clock: the wait is jumped over, not slept.)"""
    silent: list[trio.SocketStream] = []

    async def hold(stream: trio.SocketStream) -> None:
        silent.append(stream)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, hold, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        upstream = Proxy.parse(f"http://proxy-user:pw@127.0.0.1:{port}")
        assert upstream is not None
        relay = ProxyRelay(upstream)
        await nursery.start(relay.serve)
        started = trio.current_time()
        answer = await ask(
            relay, b"CONNECT example.org:443 HTTP/1.1\r\n" + relay_authorization(relay) + b"\r\n"
        )
        waited = trio.current_time() - started
        nursery.cancel_scope.cancel()
    assert answer.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n")
    assert b"the proxy did not answer in time" in answer
    assert len(silent) == 1  # the relay did reach it
    assert 30 <= waited < 32  # CONNECT_SECONDS
