"""The bot as a process behind a proxy, HTTP (or HTTPS, spoken to over TLS) as on a company
network or SOCKS5 as where Telegram is blocked: the Bot API over HTTPS through the proxy's
tunnel, its certificate verified against the test's own authority (``SSL_CERT_FILE``), the
proxy's credentials from ``HTTPS_PROXY``; and a bot stopped (Ctrl-Z, a laptop's lid) while
Telegram answered still sends its reply once, as without a proxy."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest
import trio

from tests.bot_process import polling, running, stop_while_telegram_answers
from tests.fakes.codex_script import FakeCodex
from tests.fakes.proxies import open_fake_proxy
from tests.fakes.telegram_server import Delay, open_fake_telegram
from tests.fakes.tls import make_fake_tls
from tests.system.test_process import ALICE, CEILING, TOKEN, write_config

if TYPE_CHECKING:
    from pathlib import Path

PASSWORD = "s3cret pass"


@pytest.mark.parametrize("kind", ["http", "https", "socks5"], ids=lambda kind: f"{kind}-proxy")
async def test_a_bot_behind_a_proxy_talks_to_telegram_over_https_and_replies_once(
    tmp_path: Path, kind: str
) -> None:
    """(The wall-clock waits are the scenario: the stop, landing in the bot's wait for the
    answer, and the moment after it in which a second send would come.)"""
    fake = FakeCodex(tmp_path / "codex")
    tls = make_fake_tls(tmp_path / "tls")
    with trio.fail_after(CEILING):
        async with (
            open_fake_telegram(TOKEN, tls=tls.server) as tg,
            open_fake_proxy(
                f"bot:{PASSWORD}",
                socks=kind == "socks5",
                tls=tls.server if kind == "https" else None,
            ) as proxy,
        ):
            assert tg.base_url.startswith("https://")
            assert proxy.url().startswith(f"{kind}://")
            config = write_config(tmp_path, tg.base_url, fake)
            config.write_text(
                config.read_text().replace("[telegram]\n", "[telegram]\nrequest_timeout = 1\n")
            )
            url = proxy.url(f"bot:{PASSWORD}")
            environment = {  # both spellings: the lower case one wins where both are set
                **{name: url for name in ("HTTPS_PROXY", "https_proxy")},
                **{name: "" for name in ("NO_PROXY", "no_proxy")},
                "SSL_CERT_FILE": str(tls.authority),
            }
            async with polling(tg, config, TOKEN, environment=environment) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="hello through the proxy")
                await tg.wait_for(lambda t: len(t.messages(ALICE)) == 1)
                tg.script_fault("sendMessage", Delay(0.5), chat_id=ALICE)  # the answer's
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="answer while I am stopped")
                await tg.wait_for(lambda t: len(t.calls_of("sendMessage")) == 2)
                await stop_while_telegram_answers(bot)
    assert bot.process.returncode == 0, bot.text()
    assert [m.text.split("\n")[0] for m in tg.messages(ALICE)] == [
        "FAKE-REPLY: hello through the proxy",
        "FAKE-REPLY: answer while I am stopped",
    ]
    assert len(tg.calls_of("sendMessage")) == 2
    assert proxy.requests, "nothing went through the proxy"
    tunnel = ("SOCKS5" if kind == "socks5" else "CONNECT", tg.base_url.removeprefix("https://"))
    assert {(r.method, r.target, r.credentials) for r in proxy.requests} == {
        (*tunnel, f"bot:{PASSWORD}")
    }
    output = bot.text()
    assert f"reaching Telegram through the proxy {proxy.url()}" in output
    assert "timed out" not in output
    for secret in (TOKEN, PASSWORD, quote(PASSWORD), quote(PASSWORD, safe="")):
        assert secret not in output


async def test_a_proxy_that_refuses_the_credentials_is_said_and_the_bot_still_stops(
    tmp_path: Path,
) -> None:
    """Wrong credentials in ``HTTPS_PROXY``: the bot says the proxy refused (407), without
    the password, keeps trying as for an unreachable Telegram, and a stop ends it at once."""
    fake = FakeCodex(tmp_path / "codex")
    tls = make_fake_tls(tmp_path / "tls")
    with trio.fail_after(CEILING):
        async with (
            open_fake_telegram(TOKEN, tls=tls.server) as tg,
            open_fake_proxy(f"bot:{PASSWORD}") as proxy,
        ):
            config = write_config(tmp_path, tg.base_url, fake)
            environment = {
                "HTTPS_PROXY": proxy.url(f"bot:not {PASSWORD}"),
                **{name: "" for name in ("NO_PROXY", "no_proxy")},
                "SSL_CERT_FILE": str(tls.authority),
            }
            async with running(config, TOKEN, environment=environment, exit_within=10) as bot:
                await bot.wait_for_output(
                    lambda text: "407 (check the user and password in the proxy URL)" in text
                )
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    assert not tg.calls_of("getUpdates")
    output = bot.text()
    for secret in (TOKEN, PASSWORD, quote(PASSWORD), quote(PASSWORD, safe="")):
        assert secret not in output
