"""The Bot API behind a proxy, as a company network has it: calls on the lean client through
a tunnel to an HTTPS server (the certificate verified against the test's own authority) or
forwarded to an HTTP one, through an HTTP proxy, one spoken to over TLS (``https://``, the
Bot API's TLS inside the proxy's) or a SOCKS5 one; the proxy's credentials sent and never
shown, a refusal said in words; file downloads through the same proxy on httpx."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest

from orchestrator.edges.http1_proxy import Proxy, environment_proxy, proxy_problem, proxy_shown
from orchestrator.edges.telegram_http import open_telegram_api
from orchestrator.errors import TelegramTransientError
from tests.fakes.proxies import open_fake_proxy
from tests.fakes.telegram_server import open_fake_telegram
from tests.fakes.tls import make_fake_tls

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager
    from pathlib import Path

    from tests.fakes.proxies import FakeProxy
    from tests.fakes.tls import FakeTls

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
PASSWORD = "p@ss w:ord"
CREDENTIALS = f"proxy-user:{PASSWORD}"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(params=["http", "https", "socks5"], ids=lambda kind: f"{kind}-proxy")
def kind(request: pytest.FixtureRequest) -> str:
    """The proxy's scheme."""
    return str(request.param)


def fake_proxy(
    kind: str, tls: FakeTls, credentials: str | None = CREDENTIALS, refuse: int | None = None
) -> AbstractAsyncContextManager[FakeProxy]:
    """A fake proxy of `kind` (``https``: spoken to over TLS from the test's authority)."""
    return open_fake_proxy(
        credentials,
        refuse=refuse,
        socks=kind == "socks5",
        tls=tls.server if kind == "https" else None,
    )


@pytest.fixture(autouse=True)
def no_proxy_of_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


async def test_an_https_bot_api_through_a_proxy_tunnel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    tls = make_fake_tls(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.authority))
    async with (
        open_fake_telegram(TOKEN, tls=tls.server) as telegram,
        fake_proxy(kind, tls) as proxy,
    ):
        assert proxy.url().startswith(f"{kind}://")
        monkeypatch.setenv("HTTPS_PROXY", proxy.url(CREDENTIALS))
        async with open_telegram_api(TOKEN, base_url=telegram.base_url) as api:
            assert api._lean is not None  # the lean client, not httpx
            first = await api.send_message(42, "through the tunnel")
            sent = await api.send_document(42, "notes.txt", b"the notes\n")
            assert sent == first + 1
            file = telegram.add_file(b"\x00binary\xff" * 1000, "documents/a.bin")
            downloaded = await api.download_file(file["file_id"], max_bytes=1 << 20)
    assert telegram.sent_texts(42)[0] == "through the tunnel"
    assert telegram.messages(42)[-1].document == b"the notes\n"
    assert downloaded == b"\x00binary\xff" * 1000
    authority = telegram.base_url.removeprefix("https://")
    # One tunnel for the lean client's calls, one for httpx's download.
    assert [(r.method, r.target, r.credentials) for r in proxy.requests] == [
        ("SOCKS5" if kind == "socks5" else "CONNECT", authority, CREDENTIALS)
    ] * 2


async def test_an_http_bot_api_through_a_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """An HTTP(S) proxy takes the whole URL (as httpx sends it); a SOCKS5 one makes a
    tunnel."""
    tls = make_fake_tls(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.authority))
    async with (
        open_fake_telegram(TOKEN) as telegram,
        fake_proxy(kind, tls) as proxy,
    ):
        monkeypatch.setenv("HTTP_PROXY", proxy.url(CREDENTIALS))
        async with open_telegram_api(TOKEN, base_url=telegram.base_url) as api:
            assert api._lean is not None
            await api.send_message(42, "one")
            await api.send_message(42, "two")
    assert telegram.sent_texts(42) == ["one", "two"]
    authority = telegram.base_url.removeprefix("http://")
    expected = (
        [("SOCKS5", authority, CREDENTIALS)]
        if kind == "socks5"
        else [("POST", f"{telegram.base_url}/bot{TOKEN}/sendMessage", CREDENTIALS)] * 2
    )
    assert [(r.method, r.target, r.credentials) for r in proxy.requests] == expected


NO_LOGIN = "refused the tunnel: 407 (check the user and password in the proxy URL)"


@pytest.mark.parametrize(
    ("kind", "refuse", "credentials", "said"),
    [
        ("http", 403, CREDENTIALS, "the proxy refused the tunnel: 403"),
        ("http", None, None, NO_LOGIN),
        ("https", None, "proxy-user:wrong", NO_LOGIN),
        ("socks5", 2, CREDENTIALS, "the SOCKS5 proxy refused the tunnel: not allowed by its rules"),
        ("socks5", None, "proxy-user:wrong", "the SOCKS5 proxy refused the user and password"),
        ("socks5", None, None, "the SOCKS5 proxy asks for a user and password"),
    ],
    ids=[
        "http-forbidden",
        "http-no-login",
        "https-wrong-login",
        "socks-rules",
        "socks-wrong-login",
        "socks-no-login",
    ],
)
async def test_a_proxy_that_refuses_the_tunnel_is_said_without_secrets(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    refuse: int | None,
    credentials: str | None,
    said: str,
) -> None:
    tls = make_fake_tls(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.authority))
    async with (
        open_fake_telegram(TOKEN, tls=tls.server) as telegram,
        fake_proxy(kind, tls, refuse=refuse) as proxy,
    ):
        monkeypatch.setenv("HTTPS_PROXY", proxy.url(credentials))
        async with open_telegram_api(TOKEN, base_url=telegram.base_url) as api:
            with pytest.raises(TelegramTransientError) as caught:
                await api.send_message(42, "x")
    message = str(caught.value)
    assert said in message, message
    assert "sendMessage" in message
    for secret in (TOKEN, PASSWORD, quote(PASSWORD, safe=""), "wrong"):
        assert secret not in message
    assert telegram.sent_texts(42) == []


async def test_a_certificate_the_machine_does_not_trust_fails_in_words(tmp_path: Path) -> None:
    """The lean client verifies the server (here: an authority nobody named)."""
    tls = make_fake_tls(tmp_path / "tls")
    async with (
        open_fake_telegram(TOKEN, tls=tls.server) as telegram,
        open_telegram_api(TOKEN, base_url=telegram.base_url) as api,
    ):
        with pytest.raises(TelegramTransientError) as caught:
            await api.send_message(42, "x")
    said = "certificate verify failed: unable to get local issuer certificate"
    assert said in str(caught.value), caught.value
    assert TOKEN not in str(caught.value)
    assert telegram.sent_texts(42) == []


async def test_an_https_proxy_the_machine_does_not_trust_fails_in_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy's certificate is verified as the server's is; the failure says it was the
    proxy's TLS, and nothing was sent through it."""
    telegram_tls = make_fake_tls(tmp_path / "telegram-tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(telegram_tls.authority))
    proxy_tls = make_fake_tls(tmp_path / "proxy-tls")  # an authority nobody named
    async with (
        open_fake_telegram(TOKEN, tls=telegram_tls.server) as telegram,
        fake_proxy("https", proxy_tls) as proxy,
    ):
        monkeypatch.setenv("HTTPS_PROXY", proxy.url(CREDENTIALS))
        async with open_telegram_api(TOKEN, base_url=telegram.base_url) as api:
            with pytest.raises(TelegramTransientError) as caught:
                await api.send_message(42, "x")
    message = str(caught.value)
    said = "TLS to the proxy failed: certificate verify failed: unable to get local issuer"
    assert said in message, message
    for secret in (TOKEN, PASSWORD, quote(PASSWORD, safe="")):
        assert secret not in message
    assert proxy.requests == []  # the credentials never went to a proxy nobody vouched for
    assert telegram.sent_texts(42) == []


def test_the_proxy_is_read_from_the_environment_as_httpx_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = "https://api.telegram.org"
    assert environment_proxy(api) is None
    monkeypatch.setenv("ALL_PROXY", "http://all.example:1")
    assert environment_proxy(api) == "http://all.example:1"
    monkeypatch.setenv("HTTP_PROXY", "http://plain.example:2")
    assert environment_proxy(api) == "http://all.example:1"  # not for an https server
    monkeypatch.setenv("HTTPS_PROXY", "proxy.example:3128")
    assert environment_proxy(api) == "proxy.example:3128"
    assert environment_proxy("http://127.0.0.1:8081") == "http://plain.example:2"
    assert proxy_shown(api) == "http://proxy.example:3128"
    monkeypatch.setenv("HTTPS_PROXY", "http://user:secret@[::1]:3128")
    assert proxy_shown(api) == "http://[::1]:3128"  # never the credentials
    monkeypatch.setenv("NO_PROXY", "telegram.org,localhost")
    assert environment_proxy(api) is None
    assert proxy_shown(api) == ""
    assert environment_proxy("http://localhost:8081") is None


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("proxy.example:3128", Proxy("http", "proxy.example", 3128)),
        ("http://proxy.example", Proxy("http", "proxy.example", 80)),
        ("http://u%40x:p%3Aw@[::1]:8080", Proxy("http", "::1", 8080, "u@x", "p:w")),
        ("socks5://proxy.example", Proxy("socks5", "proxy.example", 1080)),
        ("SOCKS5H://u:p@proxy.example:9050", Proxy("socks5", "proxy.example", 9050, "u", "p")),
        ("https://proxy.example", Proxy("http", "proxy.example", 443, tls=True)),
        ("https://u:p@proxy.example:8443", Proxy("http", "proxy.example", 8443, "u", "p", True)),
        ("socks4://proxy.example:1080", None),
        ("http://proxy.example:port", None),
    ],
)
def test_which_proxies_the_lean_client_speaks_to(url: str, parsed: Proxy | None) -> None:
    assert Proxy.parse(url) == parsed


def test_a_proxy_shows_no_credentials() -> None:
    proxy = Proxy.parse(f"http://proxy-user:{quote(PASSWORD, safe='')}@proxy.example:3128")
    assert proxy is not None
    assert proxy.authorization.startswith(b"Proxy-Authorization: Basic ")
    assert PASSWORD not in repr(proxy)
    assert "proxy-user" not in repr(proxy)


@pytest.mark.parametrize(
    ("variable", "url", "said"),
    [
        ("https_proxy", "http://me:pw@proxy.example:3128", None),
        ("HTTPS_PROXY", "proxy.example:3128", None),  # no scheme: http, as httpx reads it
        ("ALL_PROXY", "socks5h://proxy.example", None),
        ("https_proxy", "https://proxy.example", None),
        ("https_proxy", "socks://proxy.example:1080", "socks:// is not a proxy the bot"),
        ("HTTPS_PROXY", "http://me:pw@", "the proxy URL names no host"),
        ("ALL_PROXY", "http://me:pw", "port is not a number from 1 to 65535"),
        ("HTTPS_PROXY", "socks5://proxy.example:70000", "port is not a number from 1 to 65535"),
        ("HTTPS_PROXY", "http://proxy.example:0", "port is not a number from 1 to 65535"),
    ],
)
def test_a_proxy_the_bot_cannot_use_is_named_by_its_variable_without_the_url(
    monkeypatch: pytest.MonkeyPatch, variable: str, url: str, said: str | None
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, url)
    problem = proxy_problem("https://api.telegram.org")
    if said is None:
        assert problem is None
        return
    assert problem is not None
    assert problem.startswith(f"{variable}: ")
    assert said in problem
    assert "pw" not in problem
