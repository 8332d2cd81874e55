"""A proxy on 127.0.0.1 for the Codex workers, holding the real proxy's credentials.

Behind a proxy that wants a user and password (``HTTPS_PROXY=http://user:pass@proxy:3128``)
the workers need it to reach the model, and every variable of a worker reaches the commands
the agent runs, which anyone who can write to the chat or the repository may have prompted:
the password would be one ``env`` away. So the workers are given this relay instead
(``http://codex:<secret>@127.0.0.1:<port>``): it asks the real proxy for what they ask of it,
adding the credentials on the way. The agent can still use the proxy through the relay while
the bot runs (the workers must reach the model through it), but the password never leaves
the bot, and the relay's own secret is worth nothing anywhere else or after the bot stops.
Only this user's processes can read a worker's environment (``/proc/<pid>/environ`` is the
owner's), so another user of the machine cannot borrow the relay either; nor hold it: a
connection that has not shown the secret has `HEAD_SECONDS` to do so, in a budget of its own
(`MAX_UNVERIFIED`), so idle connections of anyone's do not take the workers' slots.

It speaks the two things HTTP clients ask of a proxy:

- ``CONNECT host:port`` (an ``https`` server; what Codex, npm and curl use for the model and
  registries): a tunnel through the real proxy (`orchestrator.edges.http1_proxy`, any kind
  the bot speaks: ``http://``, ``https://``, ``socks5://``), then bytes both ways;
- a request with the whole URL (an ``http`` server): passed on to an HTTP proxy with its
  credentials, or sent to the server through a SOCKS5 tunnel with the path alone. One
  request per connection (``Connection: close``): every request to an HTTP proxy must carry
  the credentials, and only the head of the first is read here.

A proxy URL with credentials that the relay cannot speak to (``socks4://``, a port that is
not a number) is taken out of the workers' environment, with a warning naming the variable:
the workers could not have used it through the relay, and the password must not reach them.

A request is read strictly, so that what the relay checks is what the proxy reads: no
control character in any line (a bare LF would end the head early where the proxy sees it,
moving the credentials the relay adds into a body sent on), a method and header names that
are tokens, HTTP/1.0 or 1.1, a host name DNS could carry. ``TRACE`` (and ``TRACK``) is
refused, and ``Max-Forwards`` dropped: their answer is the request as received, the
credentials in it.

What it refuses, it answers as a proxy does: 407 without the relay's secret (with the
challenge, for clients that wait for one), 400 for what is not a proxy request, 405 for an
echoing method, 502 when the real proxy cannot be reached or refuses (its reason, never its
address or credentials). A client that resets its tunnel ends it quietly.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

import trio

from orchestrator.edges.http1 import HttpError, open_through_proxy, ssl_context
from orchestrator.edges.http1_proxy import Proxy, proxy_shown_url
from orchestrator.logging import SaidOnce

if TYPE_CHECKING:
    import ssl
    from collections.abc import MutableMapping

__all__ = ["RELAYED_VARIABLES", "ProxyRelay", "serve_proxy_relays"]

logger: Final = logging.getLogger(__name__)

RELAYED_VARIABLES: Final = (
    "https_proxy",
    "http_proxy",
    "all_proxy",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "ALL_PROXY",
    "npm_config_https_proxy",
    "npm_config_proxy",
    "NPM_CONFIG_HTTPS_PROXY",
    "NPM_CONFIG_PROXY",
)
"""The variables that name a proxy for the workers: curl's and Codex's, and npm's own (the
default command runs Codex through npx). ``NO_PROXY`` holds no secret."""

RELAY_USER: Final = "codex"

MAX_HEAD: Final = 16 * 1024
"""Bytes of a request line and headers before the request counts as broken."""

HEAD_SECONDS: Final = 10.0
"""How long a client may take to send its request's head (clients send it at once; a
connection that does not holds an unverified slot, and must give it back soon)."""

CONNECT_SECONDS: Final = 30.0
"""How long reaching the real proxy (and through it the server) may take."""

PIECE: Final = 64 * 1024

LINGER_SECONDS: Final = 1.0
"""How long a refused client may go on sending before its connection is closed."""

MAX_CONNECTIONS: Final = 128
"""Connections served at once (each holds two of the bot's file descriptors)."""

MAX_UNVERIFIED: Final = 16
"""Connections accepted at once that have not shown the relay's secret yet: any local user
can connect to 127.0.0.1, and idle connections of theirs must not take the workers' slots."""

MAX_HOST: Final = 255
"""Bytes of a host name (DNS's limit, and what a SOCKS5 request can carry)."""

ACCEPT_PAUSE: Final = 0.5
"""Seconds before accepting again after the system refused a descriptor."""

MAX_SAID: Final = 256
"""Distinct failures to reach a server remembered, so that each is logged once at WARNING."""

CHALLENGE: Final = b'Proxy-Authenticate: Basic realm="codex-orchestrator"\r\n'
"""A 407's challenge, for clients that send credentials only when asked."""

DROPPED_HEADERS: Final = frozenset(
    {b"proxy-authorization", b"proxy-connection", b"connection", b"keep-alive", b"max-forwards"}
)
"""Headers of a request with the whole URL that are for the relay, not passed on
(``Max-Forwards: 0`` asks the proxy itself to answer, which a ``TRACE`` would do with the
request it got: the credentials the relay added)."""

ECHOING_METHODS: Final = frozenset({b"TRACE", b"TRACK"})
"""Methods whose answer is the request itself, as the proxy or the server received it: with
the credentials the relay adds. Refused."""

_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""A method or a header name (RFC 9110, section 5.6.2)."""

_CONTROL: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
"""Bytes no line of a head may hold (a tab may): a bare LF or CR would end a line or the head
where the proxy's parser sees it and the relay's does not, moving the credentials the relay
adds into a body, or smuggling a request past its check."""

_GONE: Final = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)
"""A side of a connection went away: the other is closed with it."""


class _Refused(Exception):
    """What to answer the client instead of relaying: a status and a reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class _Request:
    method: bytes
    target: bytes
    version: bytes
    headers: list[tuple[bytes, bytes]]


class ProxyRelay:
    """One relay on 127.0.0.1 in front of `upstream` (see the module docstring)."""

    def __init__(
        self,
        upstream: Proxy,
        *,
        connections: int = MAX_CONNECTIONS,
        unverified: int = MAX_UNVERIFIED,
    ) -> None:
        self.upstream = upstream
        self.port = 0
        self._slots = trio.Semaphore(connections)
        self._unverified = trio.Semaphore(unverified)
        self._secret = secrets.token_urlsafe(24)
        self._expected = base64.b64encode(f"{RELAY_USER}:{self._secret}".encode())
        self._ssl: ssl.SSLContext | None = ssl_context() if upstream.tls else None
        self._said = SaidOnce(MAX_SAID)
        """Failures logged at WARNING already."""

    @property
    def url(self) -> str:
        """What the workers are given in place of the real proxy's URL."""
        return f"http://{RELAY_USER}:{self._secret}@127.0.0.1:{self.port}"

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on 127.0.0.1 (a port the system picks; `url` has it once started).

        A connection is accepted only while fewer than `unverified` wait to show the
        relay's secret (within `HEAD_SECONDS`), and served only while fewer than `connections`
        are served: the relay's sockets are the bot's, and a command that opened thousands
        through it would leave none for Telegram. The others wait in the system's queue of
        the listening socket."""
        [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listener.socket.getsockname()[1]
        async with listener, trio.open_nursery() as nursery:
            task_status.started()
            while True:
                await self._unverified.acquire()
                try:
                    client = await listener.accept()
                except OSError as error:  # out of file descriptors: wait for some to close
                    self._unverified.release()
                    logger.warning("the workers' proxy relay could not accept: %s", error)
                    await trio.sleep(ACCEPT_PAUSE)
                    continue
                nursery.start_soon(self._serve_client, client)

    async def _serve_client(self, client: trio.SocketStream) -> None:
        verified = False
        try:
            head, rest = await _read_head(client)
            request = _parse(head)
            if not self._authorized(request):
                raise _Refused(407, "Proxy Authentication Required")
            self._unverified.release()
            verified = True
            async with self._slots:
                await self._relay(client, request, rest)
        except _Refused as refused:
            await _answer(client, refused.status, refused.reason)
        except _GONE:
            pass  # a side went away: the other is closed with it
        except Exception:  # a bug here must not end the bot, only this connection
            logger.exception("the workers' proxy relay failed on a connection")
        finally:
            await trio.aclose_forcefully(client)
            if not verified:
                self._unverified.release()

    async def _relay(self, client: trio.SocketStream, request: _Request, rest: bytes) -> None:
        if request.method.upper() in ECHOING_METHODS:  # a lenient server ignores the case
            raise _Refused(405, "Method Not Allowed: it would echo the proxy's credentials")
        if request.method == b"CONNECT":
            host, port = _authority(request.target, default_port=None)
            server = await self._open(host, port, tunnel=True)
            async with server:
                await client.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await _pipe(client, server, rest)
            return
        try:
            url = urlsplit(request.target.decode("latin-1"))
            named = url.scheme.lower() == "http" and bool(url.hostname)
        except ValueError:  # "Invalid IPv6 URL", and the like
            named = False
        if not named:
            raise _Refused(400, "Bad Request: a proxy request names an http:// URL")
        host, port = _authority(url.netloc.rpartition("@")[2].encode(), default_port=80)
        plain = self.upstream.forwards_plain_http
        server = await self._open(host, port, tunnel=not plain)
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        line_target = request.target if plain else path.encode("latin-1")
        forwarded = [
            request.method + b" " + line_target + b" " + request.version + b"\r\n",
            *(
                name + b": " + value + b"\r\n"
                for name, value in request.headers
                if name.lower() not in DROPPED_HEADERS
            ),
            b"Connection: close\r\n",
            self.upstream.authorization if plain else b"",
            b"\r\n",
        ]
        async with server:
            await _pipe(client, server, b"".join(forwarded) + rest)

    def _authorized(self, request: _Request) -> bool:
        for name, value in request.headers:
            if name.lower() == b"proxy-authorization":
                scheme, _, token = value.strip().partition(b" ")
                if scheme.lower() == b"basic":
                    return hmac.compare_digest(token.strip(), self._expected)
        return False

    async def _open(self, host: str, port: int, *, tunnel: bool) -> trio.abc.Stream:
        try:
            with trio.fail_after(CONNECT_SECONDS):
                return await open_through_proxy(self.upstream, self._ssl, host, port, tunnel=tunnel)
        except trio.TooSlowError:
            raise _Refused(504, "Gateway Timeout: the proxy did not answer in time") from None
        except HttpError as error:
            said = f"{host}:{port}: {error}"
            level = self._said.level(said, logging.WARNING)  # Codex retries: then at DEBUG
            logger.log(level, "the workers' proxy relay could not reach %s", said)
            raise _Refused(502, f"Bad Gateway: {error}") from None


async def serve_proxy_relays(
    environment: MutableMapping[str, str],
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Put a relay in place of every proxy with credentials that `environment` (the workers')
    names, one per proxy, and serve them; started with how many there are (0: nothing to
    hide, the variables are left as they are, and this returns at once)."""
    relays: dict[str, ProxyRelay] = {}
    for variable in RELAYED_VARIABLES:
        url = environment.get(variable)
        if not url:
            continue
        proxy = Proxy.parse(url)
        if proxy is None and _holds_credentials(url):
            del environment[variable]
            logger.warning(
                "%s: the Codex workers do not get this proxy: its URL holds a password, and "
                "it is not a proxy the bot can relay for them (http://, https:// or socks5:// "
                "with a port that is a number), so a command the agent runs could read it",
                variable,
            )
            continue
        if proxy is None or not proxy.has_credentials:
            continue
        if url not in relays:
            relays[url] = ProxyRelay(proxy)
    if not relays:
        task_status.started(0)
        return
    async with trio.open_nursery() as nursery:
        for url, relay in relays.items():
            await nursery.start(relay.serve)
            logger.info(
                "the Codex workers reach the proxy %s through a relay on 127.0.0.1:%d, which "
                "keeps its credentials from them",
                proxy_shown_url(url),
                relay.port,
            )
        for variable in RELAYED_VARIABLES:
            relay_of = relays.get(environment.get(variable, ""))
            if relay_of is not None:
                environment[variable] = relay_of.url
        task_status.started(len(relays))


def _holds_credentials(url: str) -> bool:
    """Whether `url` names a user or password (an ``@`` before its host), read without
    parsing it whole: it is a URL `Proxy.parse` could not read."""
    authority = url.partition("://")[2] if "://" in url else url
    return "@" in authority.partition("/")[0]


async def _read_head(client: trio.abc.Stream) -> tuple[bytes, bytes]:
    """The request's line and headers, and what came after them."""
    received = bytearray()
    with trio.move_on_after(HEAD_SECONDS) as waited:
        while (end := received.find(b"\r\n\r\n")) < 0:
            if len(received) > MAX_HEAD:
                raise _Refused(431, "Request Header Fields Too Large")
            chunk = await client.receive_some(PIECE)
            if not chunk:
                raise trio.BrokenResourceError("the client left before its request")
            received += chunk
    if waited.cancelled_caught:
        raise _Refused(408, "Request Timeout")
    if end > MAX_HEAD:
        raise _Refused(431, "Request Header Fields Too Large")
    return bytes(received[:end]), bytes(received[end + 4 :])


def _parse(head: bytes) -> _Request:
    """The request in `head`, read strictly: what the relay checks must be what the proxy
    reads (`_CONTROL`)."""
    if _CONTROL.search(head.replace(b"\r\n", b"")):
        raise _Refused(400, "Bad Request")
    line, *lines = head.split(b"\r\n")
    parts = line.split(b" ")
    if (
        len(parts) != 3
        or not _TOKEN.fullmatch(parts[0])
        or not parts[1]
        or parts[2] not in (b"HTTP/1.0", b"HTTP/1.1")
    ):
        raise _Refused(400, "Bad Request")
    headers = []
    for header in lines:
        name, colon, value = header.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise _Refused(400, "Bad Request")
        headers.append((name, value.strip()))
    return _Request(parts[0], parts[1], parts[2], headers)


def _authority(target: bytes, *, default_port: int | None) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) as a host and a port."""
    text = target.decode("latin-1")
    host, colon, port = text.rpartition(":")
    if not colon or "]" in port:
        if default_port is None:
            raise _Refused(400, "Bad Request: CONNECT names host:port")
        host, port = text, str(default_port)
    host = host.removeprefix("[").removesuffix("]")
    if not (host and port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise _Refused(400, "Bad Request: not a host and port")
    try:
        name = host.encode("idna")  # as a proxy or a SOCKS5 request will carry it
    except UnicodeError:
        raise _Refused(400, "Bad Request: not a host name") from None
    if len(name) > MAX_HOST:
        raise _Refused(400, "Bad Request: not a host name")
    return host, int(port)


async def _answer(client: trio.SocketStream, status: int, reason: str) -> None:
    challenge = CHALLENGE if status == 407 else b""
    body = reason.encode("utf-8", "replace") + b"\n"
    head = (
        f"HTTP/1.1 {status} {reason.split(':')[0]}\r\n".encode("latin-1", "replace")
        + challenge
        + b"Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    with contextlib.suppress(OSError, trio.BrokenResourceError, trio.ClosedResourceError):
        await client.send_all(head + body)
        # A close with the client's bytes unread would reset the connection, and the client
        # might lose the answer: say the end, and let what it still sends arrive first.
        await client.send_eof()
        with trio.move_on_after(LINGER_SECONDS):
            unread = MAX_HEAD
            while unread > 0 and (chunk := await client.receive_some(PIECE)):
                unread -= len(chunk)


async def _pipe(client: trio.abc.Stream, server: trio.abc.Stream, first: bytes) -> None:
    """Bytes both ways until the server's side ends (`first` goes to the server first). The
    client's end of sending is passed on where the server's stream can say it (TCP)."""

    async def upwards() -> None:
        try:
            if first:
                await server.send_all(first)
            while chunk := await client.receive_some(PIECE):
                await server.send_all(chunk)
            if isinstance(server, trio.abc.HalfCloseableStream):
                await server.send_eof()
        except _GONE:  # a client that reset the connection: the tunnel ends
            nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(upwards)
        with contextlib.suppress(*_GONE):
            while chunk := await server.receive_some(PIECE):
                await client.send_all(chunk)
        nursery.cancel_scope.cancel()
