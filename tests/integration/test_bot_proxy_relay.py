"""Behind a proxy that wants a password, the real Codex workers reach the model through the
bot's relay (`orchestrator.edges.proxy_relay`), which adds the password on the way, and what
the agent runs never sees it: the real Codex (0.171.0's app-server, 0.153.4's mcp-server) on
the mock model, the bot as a process, the model reached through a fake HTTP proxy."""

from __future__ import annotations

import json
import re
import signal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
import trio

from tests.bot_process import polling
from tests.fakes.mock_model import Shell, Text, last_item_type, last_user_text
from tests.fakes.proxies import open_fake_proxy
from tests.integration.app_server_fixtures import app_server_codex  # noqa: F401
from tests.integration.test_bot_real_app_server import app_server_edges
from tests.integration.test_bot_real_codex import ALICE, TOKEN, tool_output

if TYPE_CHECKING:
    from pathlib import Path

PASSWORD = "s3cret pass"
VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def env_turns(body: dict[str, Any]) -> list[Any]:
    """Runs ``env`` when asked, and says what it printed."""
    if last_item_type(body) == "function_call_output":
        return [Text("ENV:\n" + tool_output(body))]
    if last_user_text(body).rstrip().endswith("show the environment"):
        return [Shell("env")]
    return [Text("MOCK-REPLY")]


@pytest.mark.parametrize("backend", ["app-server", "mcp"])
async def test_the_workers_reach_the_model_through_the_relay_and_the_agent_sees_no_password(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    binary = request.getfixturevalue(
        "app_server_codex" if backend == "app-server" else "codex_binary"
    )
    with trio.fail_after(120):
        async with (
            app_server_edges(
                binary, tmp_path, sandbox="workspace-write", responder=env_turns, backend=backend
            ) as (model, tg, config),
            open_fake_proxy(f"bot:{PASSWORD}") as proxy,
        ):
            environment = {  # NO_PROXY empty: the mock model on 127.0.0.1 goes through it too
                **dict.fromkeys(VARIABLES, proxy.url(f"bot:{PASSWORD}")),
                **dict.fromkeys(("NO_PROXY", "no_proxy"), ""),
            }
            async with polling(tg, config, TOKEN, environment=environment) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="show the environment")
                await tg.wait_for(lambda t: any("ENV:" in m.text for m in t.messages(ALICE)))
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    [answer] = [m.text for m in tg.messages(ALICE) if "ENV:" in m.text]
    # every proxy variable the agent's command saw is the relay, with its own secret
    shown = dict(re.findall(r"^(\w+)=(.*)$", answer, flags=re.MULTILINE))
    relay = shown["HTTPS_PROXY"]
    assert re.fullmatch(r"http://codex:[\w-]+@127\.0\.0\.1:\d+", relay), relay
    assert {name: shown.get(name) for name in VARIABLES} == dict.fromkeys(VARIABLES, relay)
    # the model's requests went through the relay to the proxy, with the proxy's password
    to_model = [r for r in proxy.requests if r.target.startswith(model.base_url)]
    assert len(to_model) == len(model.requests) == 2  # the command, then its output
    assert {(r.method, r.credentials) for r in to_model} == {("POST", f"bot:{PASSWORD}")}
    # and the password is nowhere the agent or the chat could read it, nor in the log
    seen = [answer, json.dumps(model.requests), bot.text()]
    for secret in (PASSWORD, quote(PASSWORD), quote(PASSWORD, safe="")):
        assert not any(secret in text for text in seen), secret
    assert "through a relay on 127.0.0.1:" in bot.text()
