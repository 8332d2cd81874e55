"""``codex-orchestrator doctor`` as a real process against Telegram's failure modes: it asks
``getMe`` as ``start`` does, and fails (exit 1) with what went wrong and a fix."""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING

import pytest
import trio

from tests.bot_process import cli_environment, run_cli
from tests.fakes.proxies import open_fake_proxy
from tests.fakes.telegram_server import open_fake_telegram
from tests.fakes.tls import make_fake_tls

if TYPE_CHECKING:
    from pathlib import Path

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
CEILING = 60


def config(folder: Path, telegram_url: str) -> Path:
    (folder / "work").mkdir(exist_ok=True)
    path = folder / "conf.toml"
    path.write_text(
        f"state_dir = {json.dumps(str(folder / 'state'))}\n"
        f"[telegram]\nallowed_users = [42]\napi_base_url = {json.dumps(telegram_url)}\n"
        '[codex]\ncommand = ["/nonexistent/codex", "mcp-server"]\npool_size = 1\n'
        f"[profiles.default]\nworking_directory = {json.dumps(str(folder / 'work'))}\n"
    )
    return path


def row(output: str, check: str) -> str:
    rows = [line for line in output.splitlines() if line.startswith(f"{check} ")]
    assert len(rows) == 1, output
    return rows[0]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_doctor_fails_when_telegram_is_unreachable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    path = config(tmp_path, url)
    code, output = await run_cli(
        ["doctor", "--config", str(path)],
        cwd=tmp_path,
        env=cli_environment(TELEGRAM_BOT_TOKEN=TOKEN),
    )
    assert code == 1
    telegram = row(output, "telegram")
    assert " FAIL " in telegram
    assert f"cannot reach {url}" in telegram
    assert "check the network" in telegram
    assert "All checks passed" not in output
    assert TOKEN not in output


async def test_doctor_fails_when_telegram_rejects_the_token(tmp_path: Path) -> None:
    wrong = "987654321:ZZHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    with trio.fail_after(CEILING):
        async with open_fake_telegram(TOKEN) as tg:
            path = config(tmp_path, tg.base_url)
            code, output = await run_cli(
                ["doctor", "--config", str(path)],
                cwd=tmp_path,
                env=cli_environment(TELEGRAM_BOT_TOKEN=wrong),
            )
    assert code == 1
    telegram = row(output, "telegram")
    assert "Telegram rejected the token (401 Unauthorized)" in telegram
    assert "@BotFather" in telegram
    assert wrong not in output


async def test_doctor_reports_the_bot_when_telegram_accepts(tmp_path: Path) -> None:
    with trio.fail_after(CEILING):
        async with open_fake_telegram(TOKEN) as tg:
            path = config(tmp_path, tg.base_url)
            code, output = await run_cli(
                ["doctor", "--config", str(path)],
                cwd=tmp_path,
                env=cli_environment(TELEGRAM_BOT_TOKEN=TOKEN),
            )
            assert tg.calls_of("getMe")
    telegram = row(output, "telegram")
    assert " ok " in telegram
    assert "@TestBot" in telegram
    assert code == 1  # codex.command does not exist
    assert " FAIL " in row(output, "codex command")


async def test_doctor_warns_when_the_bot_reads_every_group_message(tmp_path: Path) -> None:
    """Privacy mode off (``getMe``): with the default ``group_requests = "all"`` every word of
    an allowed member in a group would run, so doctor says how to run only what is for the
    bot; with ``"addressed"`` it has nothing to say."""
    with trio.fail_after(CEILING):
        async with open_fake_telegram(TOKEN) as tg:
            tg.reads_all_group_messages = True
            path = config(tmp_path, tg.base_url)
            _, output = await run_cli(
                ["doctor", "--config", str(path)],
                cwd=tmp_path,
                env=cli_environment(TELEGRAM_BOT_TOKEN=TOKEN),
            )
            addressed = path.read_text().replace(
                "[telegram]\n", '[telegram]\ngroup_requests = "addressed"\n'
            )
            path.write_text(addressed)
            _, quiet = await run_cli(
                ["doctor", "--config", str(path)],
                cwd=tmp_path,
                env=cli_environment(TELEGRAM_BOT_TOKEN=TOKEN),
            )
    groups = row(output, "groups")
    assert " warn " in groups
    assert "@TestBot reads every message of its groups" in groups
    assert 'telegram.group_requests = "addressed"' in output
    assert not [line for line in quiet.splitlines() if line.startswith("groups ")]


async def test_doctor_reaches_telegram_through_the_proxy_and_says_which(tmp_path: Path) -> None:
    """Over HTTPS through the tunnel of ``HTTPS_PROXY``, as ``start`` does, also through a
    proxy spoken to over TLS; the row names the proxy without its credentials, and a proxy
    that refuses is named beside the failure."""
    tls = make_fake_tls(tmp_path / "tls")
    with trio.fail_after(CEILING):
        async with (
            open_fake_telegram(TOKEN, tls=tls.server) as tg,
            open_fake_proxy("me:hunter2") as proxy,
            open_fake_proxy("me:hunter2", tls=tls.server) as over_tls,
            open_fake_proxy("me:other") as refusing,
        ):
            path = config(tmp_path, tg.base_url)
            rows = []
            for used in (proxy, over_tls, refusing):
                url = used.url("me:hunter2")
                env = cli_environment(
                    TELEGRAM_BOT_TOKEN=TOKEN,
                    SSL_CERT_FILE=str(tls.authority),
                    **{name: url for name in ("HTTPS_PROXY", "https_proxy")},
                    **{name: "" for name in ("NO_PROXY", "no_proxy")},
                )
                code, output = await run_cli(
                    ["doctor", "--config", str(path)], cwd=tmp_path, env=env
                )
                assert code == 1, output  # codex.command does not exist, whatever the proxy
                assert "hunter2" not in output
                rows.append(row(output, "telegram"))
    ok, ok_over_tls, refused = rows
    assert " ok " in ok
    assert f"@TestBot, through the proxy http://127.0.0.1:{proxy.port}" in ok
    assert "the Codex workers reach it through the bot's relay, which keeps its password" in ok
    assert " ok " in ok_over_tls
    assert f"@TestBot, through the proxy https://127.0.0.1:{over_tls.port}" in ok_over_tls
    assert " FAIL " in refused
    assert "the proxy refused the tunnel: 407" in refused
    assert f"through the proxy http://127.0.0.1:{refusing.port}" in refused
    assert [r.method for r in proxy.requests] == ["CONNECT"]
    assert [r.method for r in over_tls.requests] == ["CONNECT"]


@pytest.mark.parametrize(
    ("proxy", "said"),
    [
        (
            "socks4://me:hunter2@127.0.0.1:1080",
            "socks4:// is not a proxy the bot speaks to "
            "(it speaks http://, https://, socks5:// and socks5h://)",
        ),
        ("http://me:hunter2", "the proxy URL's port is not a number from 1 to 65535"),
        ("http://me:hunter2@[::1", "the proxy URL's host is not a valid IPv6 address in [ ]"),
    ],
    ids=["socks4", "password-for-a-port", "broken-ipv6"],
)
async def test_a_proxy_the_bot_cannot_use_is_a_config_error_for_start_and_doctor(
    tmp_path: Path, proxy: str, said: str
) -> None:
    """A proxy URL httpx would crash on at start, with a traceback (and, for a password
    where the port goes, the password in it): `start` exits 2 with one line that names the
    variable and the fix, and doctor's Telegram row says the same; the URL is never shown."""
    path = config(tmp_path, "https://api.telegram.org")
    env = cli_environment(
        TELEGRAM_BOT_TOKEN=TOKEN,
        ALL_PROXY=proxy,
        **{name: "" for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy")},
    )
    code, output = await run_cli(["start", "--config", str(path)], cwd=tmp_path, env=env)
    assert code == 2, output
    assert output.strip() == (
        f"codex-orchestrator: ALL_PROXY: {said}. "
        "Fix: correct it, or unset it to reach Telegram directly"
    )
    code, report = await run_cli(["doctor", "--config", str(path)], cwd=tmp_path, env=env)
    assert code == 1, report
    telegram = row(report, "telegram")
    assert " FAIL " in telegram
    assert f"ALL_PROXY: {said}" in telegram
    for shown in (output, report):
        assert "hunter2" not in shown
        assert "Traceback" not in shown
