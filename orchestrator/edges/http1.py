"""A lean HTTP/1.1 client for the Bot API's calls: keep-alive connections over trio.

httpx (with httpcore and h11) cost about a millisecond of the bot's one core per Bot API
call, a quarter of its main thread at 1,000 chats (bench/scale.py, py-spy): URL parsing,
header models, a pool that polls every idle connection on every request and response. A
JSON ``POST`` to one host needs none of that: one pre-built head, one ``send_all``, a status
line, the headers that frame the body (``Content-Length``, ``Transfer-Encoding: chunked``,
``Connection: close``) and the body. `orchestrator.edges.telegram_http` uses this for every
call, the multipart upload (`multipart`) included, directly or through an HTTP(S) or SOCKS5
proxy (`orchestrator.edges.http1_proxy`), except with test transports (those stay on
httpx). Behind an ``https://`` proxy, TLS to the Bot API runs inside the TLS to the proxy:
trio's `trio.SSLStream` wraps any stream, another one too. The upload comes here for the
read past its deadline (`_Connection.receive`): a ``sendDocument`` timed out by a stop of
the bot was sent again.

Errors: `HttpError` for anything the transport or the framing gets wrong (the caller maps
it, with timeouts, to a transient Telegram error). Nothing here ever mentions a path, so the
token in the URL never reaches an exception.
"""

from __future__ import annotations

import math
import os
import secrets
import select
import ssl
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final, ParamSpec, TypeVar, final
from urllib.parse import urlsplit

import trio

from orchestrator import uncontended
from orchestrator.edges.http1_proxy import Proxy, ProxyRefused, open_tunnel

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Mapping

__all__ = ["HttpError", "LeanHttp", "multipart", "open_through_proxy", "ssl_context"]

P = ParamSpec("P")
T = TypeVar("T")

MAX_HEAD: Final = 64 * 1024
"""Bytes of a response's status line and headers before it counts as broken."""

MAX_BODY: Final = 64 * 1024 * 1024
"""Bytes of a response body before it counts as broken (getUpdates answers are far smaller)."""

LATE_LOOK: Final = 1.0
"""Seconds a read past its deadline still waits for what is already in the socket
(`_Connection.receive`): one pass of the run loop is enough, the rest is a margin for a busy
loop."""


SEND_PIECE: Final = 256 * 1024
"""Bytes of a request sent under one deadline (`LeanHttp.post`): a JSON call is one piece,
an upload as many as it needs."""


class HttpError(Exception):
    """The connection or the response framing failed (no path, no token in the message)."""


@final
class _Connection:
    __slots__ = ("buffer", "deadline", "looked", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.deadline = math.inf
        """`trio.current_time` by which the answer in progress is due."""
        self.looked = False
        """The answer in progress had its look past the deadline (`receive`)."""

    def expect(self, seconds: float) -> None:
        """An answer is due within `seconds` from now."""
        self.deadline = trio.current_time() + seconds
        self.looked = False

    def closed_by_peer(self) -> bool:
        """Whether an idle connection has something to read: end of file or junk, either
        way not reusable (one poll of this socket only)."""
        stream = self.stream
        while isinstance(stream, trio.SSLStream):  # TLS, or TLS in TLS to a proxy
            stream = stream.transport_stream
        if not isinstance(stream, trio.SocketStream):
            return False
        poller = select.poll()
        poller.register(stream.socket.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    async def receive(self) -> bytes | bytearray:
        """The next bytes of the answer (``b""`` at its end), due by `deadline`.

        A passed deadline is judged after one more look at the socket: the rest of the
        answer has `LATE_LOOK` more, once per answer (a server that trickles its answer
        cannot draw it out past that). A bot stopped (Ctrl-Z, a paused machine) while the
        server answered wakes with the deadline passed *and* the answer waiting in its
        socket: the wait for I/O that the stop interrupted returns as timed out, without
        the socket, so the deadline cancels the read before it sees the answer. Time the
        bot did not run is not the server's silence: a ``sendMessage`` timed out that way
        was sent again, the reply twice in the chat. The look costs nothing on the way: a
        cancelled read takes no bytes from the socket (nor, past the handshake, from a TLS
        stream).

        Raises:
            trio.TooSlowError: nothing came by the deadline, nor at the look after it.
        """
        while True:
            with trio.move_on_at(self.deadline):
                return await self.stream.receive_some(65536)
            if self.looked:
                raise trio.TooSlowError
            self.looked = True
            self.deadline = trio.current_time() + LATE_LOOK

    async def fill(self) -> None:
        chunk = await self.receive()
        if not chunk:
            raise HttpError("the server closed the connection")
        self.buffer += chunk


@final
class LeanHttp:
    """POST JSON to one server over at most `connections` keep-alive connections, directly
    or through a `proxy` (`orchestrator.edges.http1_proxy`): a tunnel to the server, or for
    an ``http`` server behind an HTTP(S) proxy the whole URL in the request, as httpx does."""

    def __init__(self, base_url: str, *, connections: int, proxy: Proxy | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {parts.scheme}://{parts.hostname}")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._proxy = proxy
        name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # IPv6
        host = name if parts.port is None else f"{name}:{parts.port}"
        self._headers = b"Host: " + host.encode("idna") + b"\r\n"
        """The head's lines before the body's: ``Host``, and a forwarding proxy's credentials."""
        self._prefix = parts.path.rstrip("/").encode()
        self._tunnel = proxy is not None and (self._tls or not proxy.forwards_plain_http)
        if proxy is not None and not self._tunnel:  # the proxy forwards the request itself
            self._prefix = f"http://{name}:{self._port}".encode("idna") + self._prefix
            self._headers += proxy.authorization
        self._ssl = ssl_context() if self._tls else None
        self._proxy_ssl = ssl_context() if proxy is not None and proxy.tls else None
        self._idle: list[_Connection] = []
        self._slots = trio.CapacityLimiter(connections)

    async def post(
        self,
        path: str,
        body: bytes,
        *,
        connect_seconds: float,
        seconds: float,
        content_type: bytes = b"application/json",
    ) -> tuple[int, bytes]:
        """``POST`` `body` (JSON, or `content_type`) to `path`; return the status and the body.

        `seconds` bounds each `SEND_PIECE` of the request and then the whole answer: an
        upload of 50 MB goes at the link's pace, and a link that stalls fails as soon.

        Raises:
            HttpError: the connection failed or the answer was not HTTP.
            trio.TooSlowError: no connection within `connect_seconds`, a piece of the
                request not taken within `seconds`, or no whole answer within `seconds`
                after the request was sent (a passed deadline is judged after a look at
                what waits in the socket: `_Connection.receive`).
        """
        head = b"".join(
            (
                b"POST ",
                self._prefix,
                path.encode(),
                b" HTTP/1.1\r\n",
                self._headers,
                b"Content-Type: ",
                content_type,
                b"\r\nContent-Length: ",
                str(len(body)).encode(),
                b"\r\n\r\n",
            )
        )
        await uncontended.acquire(self._slots)
        try:
            connection = await self._connection(connect_seconds)
            reusable = False
            try:
                request = memoryview(head + body)
                for start in range(0, len(request), SEND_PIECE):
                    connection.expect(seconds)
                    with trio.fail_at(connection.deadline):
                        await _guarded(
                            connection.stream.send_all, request[start : start + SEND_PIECE]
                        )
                connection.expect(seconds)
                status, reusable, payload = await _guarded(_read_response, connection)
                return status, payload
            finally:
                if reusable:
                    self._idle.append(connection)
                else:
                    await trio.aclose_forcefully(connection.stream)
        finally:
            self._slots.release()

    async def _connection(self, connect_seconds: float) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.buffer and not connection.closed_by_peer():
                return connection
            await trio.aclose_forcefully(connection.stream)
        proxy = self._proxy
        with trio.fail_after(connect_seconds), _connecting():
            stream: trio.abc.Stream
            if proxy is None:
                stream = await _guarded(trio.open_tcp_stream, self._host, self._port)
            else:
                stream = await open_through_proxy(
                    proxy, self._proxy_ssl, self._host, self._port, tunnel=self._tunnel
                )
        if self._ssl is None:
            return _Connection(stream)
        server = trio.SSLStream(
            stream, self._ssl, server_hostname=self._host, https_compatible=True
        )  # the handshake goes with the first request, under its deadline
        return _Connection(server)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await trio.aclose_forcefully(connection.stream)


def multipart(
    fields: Mapping[str, str], files: Mapping[str, tuple[str, bytes, str]]
) -> tuple[bytes, bytes]:
    """A ``multipart/form-data`` body of `fields` and `files` (name → (filename, content,
    content type)), and its content type. A file name is quoted as browsers and httpx
    quote it (WHATWG): ``"``, CR and LF percent-encoded, so no name ends its header."""
    boundary = secrets.token_hex(16).encode()
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(_part_head(boundary, name) + b"\r\n\r\n" + value.encode() + b"\r\n")
    for name, (filename, content, kind) in files.items():
        quoted = filename.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
        head = _part_head(boundary, name) + f'; filename="{quoted}"'.encode()
        parts.append(head + b"\r\nContent-Type: " + kind.encode() + b"\r\n\r\n")
        parts.append(content + b"\r\n")
    parts.append(b"--" + boundary + b"--\r\n")
    return b"".join(parts), b"multipart/form-data; boundary=" + boundary


def _part_head(boundary: bytes, name: str) -> bytes:
    return b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + name.encode() + b'"'


async def open_through_proxy(
    proxy: Proxy, context: ssl.SSLContext | None, host: str, port: int, *, tunnel: bool
) -> trio.abc.Stream:
    """A connection to `proxy` (over TLS with `context`, for an ``https://`` one) and, when
    `tunnel`, through it to `host`:`port`; otherwise the proxy itself is at the other end, to
    be sent a request with the whole URL. The caller's deadline bounds it.

    Raises:
        HttpError: the proxy could not be reached, or refused the tunnel.
    """
    tcp = await _guarded(trio.open_tcp_stream, proxy.host, proxy.port)
    stream: trio.abc.Stream = tcp
    try:
        if context is not None:
            stream = await _proxy_tls(tcp, context, proxy.host)
        if tunnel:
            await _guarded(open_tunnel, stream, proxy, host, port)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


async def _proxy_tls(
    tcp: trio.SocketStream, context: ssl.SSLContext, host: str
) -> trio.SSLStream[trio.SocketStream]:
    """TLS to an ``https://`` proxy on `tcp`, its handshake done (the caller's deadline
    bounds it); a failure says it was the proxy's TLS, not the Bot API's."""
    stream = trio.SSLStream(tcp, context, server_hostname=host, https_compatible=True)
    try:
        await stream.do_handshake()
    except (OSError, trio.BrokenResourceError) as error:
        raise HttpError(f"TLS to the proxy failed: {_reason(error)}") from None
    return stream


def ssl_context() -> ssl.SSLContext:
    """The certificates httpx would use: certifi's bundle, unless ``SSL_CERT_FILE`` or
    ``SSL_CERT_DIR`` name others (OpenSSL reads those itself)."""
    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context()
    try:
        import certifi
    except ImportError:  # pragma: no cover - httpx depends on it
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


async def _guarded(call: Callable[P, Awaitable[T]], *args: P.args, **kw: P.kwargs) -> T:
    try:
        return await call(*args, **kw)
    except ProxyRefused as error:
        raise HttpError(str(error)) from None
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as error:
        raise HttpError(f"{type(error).__name__}: {_reason(error)}") from None


NAME_MISMATCH: Final = frozenset({62, 64})
"""OpenSSL's verify codes for a certificate of another host name or IP address, whose
message names the host asked for (a proxy's address is not for the workers: its relay)."""

CONNECT_ATTEMPT: Final = "): "
"""What ends the address in trio's ``Error connecting to ('10.0.0.1', 3128): Connection
refused``."""


def _reason(error: BaseException) -> str:
    """Why `error` happened, in the system's words: trio's connect raises one `OSError` for
    all its attempts, from a group of theirs ("Connection refused", not "ExceptionGroup"),
    and its TLS stream a broken stream from OpenSSL's ("certificate verify failed: unable
    to get local issuer certificate", not "SSLCertVerificationError")."""
    if isinstance(error, ssl.SSLCertVerificationError):
        if error.verify_code in NAME_MISMATCH:  # OpenSSL's words name the host: not ours
            return "certificate verify failed: the certificate is not valid for that host"
        return f"certificate verify failed: {error.verify_message}"
    if isinstance(error, ssl.SSLError) and error.reason:
        return f"TLS: {error.reason}"
    strerror = getattr(error, "strerror", None)
    if strerror:  # trio's says where it tried (a proxy's address, too): the reason alone
        return str(strerror).rpartition(CONNECT_ATTEMPT)[2]
    cause = error.__cause__ or error.__context__
    if isinstance(cause, BaseExceptionGroup):
        return ", ".join(dict.fromkeys(_reason(attempt) for attempt in cause.exceptions))
    if cause is not None:
        return _reason(cause)
    return type(error).__name__


@contextmanager
def _connecting() -> Iterator[None]:
    """Name a failure to connect as such (the host is down or refuses: a transient error)."""
    try:
        yield
    except HttpError as error:
        raise HttpError(f"ConnectError ({error})") from None


async def _read_response(connection: _Connection) -> tuple[int, bool, bytes]:
    """Read one response: (status, whether the connection may be reused, body)."""
    buffer = connection.buffer
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        if len(buffer) > MAX_HEAD:
            raise HttpError("response headers too long")
        await connection.fill()
    lines = bytes(buffer[:end]).split(b"\r\n")
    del buffer[: end + 4]
    status_line = lines[0].split(None, 2)
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
        raise HttpError("not an HTTP/1.x response")
    try:
        status = int(status_line[1])
    except ValueError:
        raise HttpError("a malformed status line") from None
    keep = status_line[0] == b"HTTP/1.1"
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise HttpError("a malformed Content-Length") from None
        elif name == b"transfer-encoding":
            chunked = value.endswith(b"chunked")
        elif name == b"connection":
            if b"close" in value:
                keep = False
            elif b"keep-alive" in value:
                keep = True
    if status < 200 or status in (204, 304):
        if 100 <= status < 200:
            raise HttpError("an interim response")  # we never send Expect: 100-continue
        return status, keep, b""
    if chunked:
        return status, keep, await _read_chunked(connection)
    if length is None:  # the body runs to the end of the connection
        while True:
            if len(buffer) > MAX_BODY:
                raise HttpError("response body too long")
            chunk = await connection.receive()
            if not chunk:
                break
            buffer += chunk
        body = bytes(buffer)
        buffer.clear()
        return status, False, body
    if length > MAX_BODY:
        raise HttpError("response body too long")
    while len(buffer) < length:
        await connection.fill()
    body = bytes(buffer[:length])
    del buffer[:length]
    return status, keep, body


async def _read_chunked(connection: _Connection) -> bytes:
    buffer = connection.buffer
    body = bytearray()
    while True:
        while (end := buffer.find(b"\r\n")) < 0:
            if len(buffer) > MAX_HEAD:
                raise HttpError("a chunk header too long")
            await connection.fill()
        size_text = bytes(buffer[:end]).split(b";", 1)[0].strip()
        del buffer[: end + 2]
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpError("a malformed chunk size") from None
        if size == 0:
            while True:  # trailers, up to the empty line
                while (end := buffer.find(b"\r\n")) < 0:
                    if len(buffer) > MAX_HEAD:
                        raise HttpError("trailers too long")
                    await connection.fill()
                line = bytes(buffer[:end])
                del buffer[: end + 2]
                if not line:
                    return bytes(body)
        if len(body) + size > MAX_BODY:
            raise HttpError("response body too long")
        while len(buffer) < size + 2:
            await connection.fill()
        body += buffer[:size]
        del buffer[: size + 2]
