"""The lean HTTP client's way through a proxy: which one the environment names, and the
tunnel through it.

A bot behind a proxy (``HTTPS_PROXY``, a company network; ``ALL_PROXY=socks5://…`` where
Telegram is reached through SOCKS) used to send every Bot API call through httpx, whose
timeouts do not look at what waits in the socket: a ``sendMessage`` or ``sendDocument``
timed out by a stop of the bot (Ctrl-Z, a laptop's lid) was sent again, the reply twice in
the chat (`orchestrator.edges.http1`, ``_Connection.receive``). The client speaks to the two
kinds of proxy a bot meets, as httpx does:

- ``http://``: ``CONNECT host:port`` for an ``https`` server (a tunnel; TLS to the server
  runs inside it, the proxy sees neither the path nor the token), and the request itself
  with the whole URL for an ``http`` server;
- ``https://``: the same, spoken over TLS to the proxy (its certificate verified as the
  server's), so the credentials and the ``CONNECT`` line never cross the network in the
  clear; TLS to the server then runs inside that TLS (`orchestrator.edges.http1`);
- ``socks5://`` and ``socks5h://`` (RFC 1928, with RFC 1929's user and password): a tunnel
  to the server by its name, which the proxy resolves.

The proxy's address and credentials never reach a log line, an exception or a ``repr``:
the URL may hold a password, as the Bot API's path holds the token.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    import trio

__all__ = [
    "MAX_TUNNEL_ANSWER",
    "PROXY_FIX",
    "Proxy",
    "ProxyRefused",
    "environment_proxy",
    "open_tunnel",
    "proxy_problem",
    "proxy_shown",
    "proxy_shown_url",
]

MAX_TUNNEL_ANSWER: Final = 16 * 1024
"""Bytes of an HTTP proxy's answer to ``CONNECT`` before it counts as broken."""

DEFAULT_PORTS: Final = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}

PROXY_FIX: Final = "correct it, or unset it to reach Telegram directly"
"""What to do about a proxy `proxy_problem` refuses."""

SPOKEN_SCHEMES: Final = ("http", "https", "socks5", "socks5h")
"""The proxies the bot reaches Telegram through."""

SOCKS_REPLIES: Final = {
    1: "general failure",
    2: "not allowed by its rules",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}
"""RFC 1928's reply codes, as a refusal says them."""


class ProxyRefused(Exception):
    """The proxy did not open the tunnel (its answer only: no address, no credentials)."""


@dataclass(frozen=True)
class Proxy:
    """A proxy this client speaks to: its kind, where it listens, whether it is spoken to
    over TLS (``https://``), and the credentials of its URL (kept out of ``repr``)."""

    kind: Literal["http", "socks5"]
    host: str
    port: int
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> Proxy | None:
        """The proxy `url` names, or None when no proxy can be made of it (a scheme or a port
        `proxy_problem` refuses before the bot starts)."""
        try:
            parts = urlsplit(url if "://" in url else f"http://{url}")
            scheme = parts.scheme.lower()
            if scheme not in DEFAULT_PORTS or not parts.hostname:
                return None
            port = parts.port or DEFAULT_PORTS[scheme]
        except ValueError:  # a port that is not a number, "Invalid IPv6 URL"
            return None
        return cls(
            "socks5" if scheme.startswith("socks5") else "http",
            parts.hostname,
            port,
            unquote(parts.username or ""),
            unquote(parts.password or ""),
            tls=scheme == "https",
        )

    @property
    def has_credentials(self) -> bool:
        """Whether the URL holds a user or a password (the workers then get a relay)."""
        return bool(self.username or self.password)

    @property
    def forwards_plain_http(self) -> bool:
        """Whether a request to an ``http`` server goes to the proxy whole (its URL in the
        request line) rather than through a tunnel."""
        return self.kind == "http"

    @property
    def authorization(self) -> bytes:
        """An HTTP proxy's ``Proxy-Authorization`` line for the URL's credentials, or empty."""
        if self.kind != "http" or not (self.username or self.password):
            return b""
        secret = f"{self.username}:{self.password}".encode()
        return b"Proxy-Authorization: Basic " + base64.b64encode(secret) + b"\r\n"


def environment_proxy(base_url: str) -> str | None:
    """The proxy URL the environment names for `base_url` (``HTTPS_PROXY`` or ``HTTP_PROXY``
    by its scheme, else ``ALL_PROXY``; none for a host in ``NO_PROXY``), as httpx reads
    them; None to go direct."""
    parts = urlsplit(base_url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


def proxy_problem(base_url: str) -> str | None:
    """Why the environment's proxy for `base_url` cannot be used, or None: the variable that
    names it and what is wrong (``HTTPS_PROXY: …``), never the URL (it may hold a password).
    A start with such a proxy crashed in httpx with a traceback (``socks4://``, a port that
    is not a number)."""
    problem = _url_problem(base_url)
    if problem is None:
        return None
    scheme = urlsplit(base_url).scheme
    names = (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY")
    variable = next((name for name in names if os.environ.get(name)), names[1])
    return f"{variable}: {problem}"


def _url_problem(base_url: str) -> str | None:
    """What is wrong with the environment's proxy URL for `base_url`, or None."""
    try:
        url = environment_proxy(base_url)
        if url is None:
            return None
        parts = urlsplit(url if "://" in url else f"http://{url}")
        port = parts.port
    except ValueError as error:  # its text may quote a password written where a port goes
        if "IPv6" in str(error):
            return "the proxy URL's host is not a valid IPv6 address in [ ]"
        return "the proxy URL's port is not a number from 1 to 65535"
    if parts.scheme.lower() not in SPOKEN_SCHEMES:
        *others, last = (f"{name}://" for name in SPOKEN_SCHEMES)
        return (
            f"{parts.scheme}:// is not a proxy the bot speaks to "
            f"(it speaks {', '.join(others)} and {last})"
        )
    if not parts.hostname:
        return "the proxy URL names no host"
    if port == 0:
        return "the proxy URL's port is not a number from 1 to 65535"
    return None


def proxy_shown(base_url: str) -> str:
    """Where the environment's proxy for `base_url` is, without its credentials (``host:port``,
    for doctor and the log), or ``""`` when there is none."""
    url = environment_proxy(base_url)
    return "" if url is None else proxy_shown_url(url)


def proxy_shown_url(url: str) -> str:
    """A proxy's `url` without its credentials (``scheme://host:port``)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}"


async def open_tunnel(stream: trio.abc.Stream, proxy: Proxy, host: str, port: int) -> None:
    """Ask `proxy`, connected on `stream`, for a tunnel to `host`:`port`; on return the
    stream carries bytes to and from that server.

    Raises:
        ProxyRefused: the proxy refused, or did not answer as its protocol says.
        trio.BrokenResourceError: the connection failed (the caller's deadline bounds it).
    """
    if proxy.kind == "socks5":
        await _socks5_tunnel(stream, proxy, host, port)
    else:
        await _http_tunnel(stream, proxy, host, port)


async def _http_tunnel(stream: trio.abc.Stream, proxy: Proxy, host: str, port: int) -> None:
    name = f"[{host}]" if ":" in host else host
    authority = f"{name}:{port}".encode("idna")
    await stream.send_all(
        b"CONNECT "
        + authority
        + b" HTTP/1.1\r\nHost: "
        + authority
        + b"\r\n"
        + proxy.authorization
        + b"\r\n"
    )
    answer = bytearray()
    while (end := answer.find(b"\r\n\r\n")) < 0:
        if len(answer) > MAX_TUNNEL_ANSWER:
            raise ProxyRefused("the proxy's answer to CONNECT is too long")
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise ProxyRefused("the proxy closed the connection before it answered CONNECT")
        answer += chunk
    status_line = bytes(answer[: answer.find(b"\r\n")]).split(None, 2)
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
        raise ProxyRefused("the proxy's answer to CONNECT is not HTTP")
    status = status_line[1].decode("ascii", "replace")
    if not status.startswith("2"):
        reason = status_line[2].decode("ascii", "replace")[:60] if len(status_line) > 2 else ""
        refusal = f"the proxy refused the tunnel: {status} {reason}".rstrip()
        if status == "407":
            refusal += " (check the user and password in the proxy URL)"
        raise ProxyRefused(refusal)
    if len(answer) > end + 4:  # the server speaks first only after our TLS hello
        raise ProxyRefused("the proxy sent bytes after its answer to CONNECT")


async def _socks5_tunnel(stream: trio.abc.Stream, proxy: Proxy, host: str, port: int) -> None:
    """RFC 1928's ``CONNECT`` by the server's name (or its address, for an IP literal), after
    RFC 1929's user and password when the URL has them."""
    credentials = bool(proxy.username or proxy.password)
    await stream.send_all(b"\x05\x02\x00\x02" if credentials else b"\x05\x01\x00")
    version, method = await _exactly(stream, 2)
    if version != 5:
        raise ProxyRefused("the proxy does not speak SOCKS5")
    if method == 2 and credentials:
        user, password = proxy.username.encode(), proxy.password.encode()
        if len(user) > 255 or len(password) > 255:
            raise ProxyRefused("the SOCKS5 user or password is longer than 255 bytes")
        await stream.send_all(
            b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password
        )
        if (await _exactly(stream, 2))[1] != 0:
            raise ProxyRefused("the SOCKS5 proxy refused the user and password")
    elif method == 0xFF and not credentials:
        raise ProxyRefused("the SOCKS5 proxy asks for a user and password (the proxy URL has none)")
    elif method != 0:
        raise ProxyRefused(f"the SOCKS5 proxy takes none of our logins (it chose {method})")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode("idna")
        address = b"\x03" + bytes([len(name)]) + name
    else:
        address = (b"\x01" if literal.version == 4 else b"\x04") + literal.packed
    await stream.send_all(b"\x05\x01\x00" + address + port.to_bytes(2, "big"))
    version, reply, _, kind = await _exactly(stream, 4)
    if version != 5:
        raise ProxyRefused("the proxy's answer to SOCKS5 CONNECT is not SOCKS5")
    if reply != 0:
        said = SOCKS_REPLIES.get(reply, f"code {reply}")
        raise ProxyRefused(f"the SOCKS5 proxy refused the tunnel: {said}")
    if kind == 3:
        (length,) = await _exactly(stream, 1)
    else:
        length = {1: 4, 4: 16}.get(kind, -1)
        if length < 0:
            raise ProxyRefused("the SOCKS5 proxy's answer has an unknown address type")
    await _exactly(stream, length + 2)  # where the proxy is bound, and its port


async def _exactly(stream: trio.abc.Stream, count: int) -> bytes:
    """`count` bytes of the proxy's answer (a SOCKS5 answer has no more behind it)."""
    received = bytearray()
    while len(received) < count:
        chunk = await stream.receive_some(count - len(received))
        if not chunk:
            raise ProxyRefused("the proxy closed the connection before it answered")
        received += chunk
    return bytes(received)
