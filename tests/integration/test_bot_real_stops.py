"""The whole bot as a process on the real Codex (0.153.4 and 0.171.0) and the mock model,
when it or a worker is stopped from outside: a bot stopped with Ctrl-Z past the endpoint
limit reads the answer that came meanwhile; a worker killed before the model said a word
hands the request on. Apart from the other real tests so that they run beside them."""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any

import pytest
import trio

from tests.bot_process import polling
from tests.fakes.mock_model import Text, Turn, Wait, last_user_text
from tests.integration.app_server_fixtures import app_server_codex
from tests.integration.test_bot_real_app_server import CEILING, app_server_edges
from tests.integration.test_bot_real_codex import ALICE, TOKEN, has_text, model_turns
from tests.procfs import cmdline, connected_to, tree

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["app_server_codex"]


def answer_while_stopped(body: dict[str, Any]) -> Turn:
    """Answers 4 s after it is asked (within the 10 s limit), without a word meanwhile."""
    if last_user_text(body).rstrip().endswith("answer while I am stopped"):
        return [Wait(4.0), Text("MOCK-REPLY: answered while you were away")]
    return model_turns(body)


@pytest.mark.parametrize("backend", ["mcp", "app-server"])
async def test_a_bot_stopped_with_ctrl_z_reads_the_answer_that_came_meanwhile(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """Seen from outside: the bot stopped (Ctrl-Z) while the model answered, for longer than
    the 10 s ``endpoint_failure_limit``, said "Codex cannot reach its model endpoint" on
    `fg` and lost the answer waiting in its pipe. Time the bot did not run is not Codex's
    silence. (The stop's length is the one wall-clock wait: it is the scenario.)"""
    binary = request.getfixturevalue("codex_binary" if backend == "mcp" else "app_server_codex")
    asked = "answer while I am stopped"
    with trio.fail_after(CEILING):
        async with app_server_edges(
            binary, tmp_path, sandbox="read-only", responder=answer_while_stopped, backend=backend
        ) as edges:
            model, tg, config = edges
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text=asked)
                await model.wait_for(lambda m: any(asked in last_user_text(r) for r in m.requests))
                answered, asked_at = model.answered, trio.current_time()
                bot.process.send_signal(signal.SIGSTOP)
                try:  # stopped until the answer is whole and the limit has passed
                    await model.wait_for(lambda m: m.answered > answered)
                    await trio.sleep_until(asked_at + 11)
                finally:
                    bot.process.send_signal(signal.SIGCONT)
                await tg.wait_for(lambda t: has_text(t, "while you were away") or has_text(t, "❌"))
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    assert has_text(tg, "MOCK-REPLY: answered while you were away"), tg.sent_texts(ALICE)
    assert not has_text(tg, "❌"), tg.sent_texts(ALICE)


@pytest.mark.parametrize("backend", ["mcp", "app-server"])
async def test_a_worker_killed_before_the_model_said_a_word_hands_the_request_on(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """Seen from outside: a worker killed between the turn's start and the model's first
    word failed a request the model never answered ("The Codex process working on it
    stopped unexpectedly"). Nothing had run: it goes on, on a worker that answers."""
    binary = request.getfixturevalue("codex_binary" if backend == "mcp" else "app_server_codex")
    asked = "answer while I am stopped"  # the model takes 4 s: time to kill its worker
    server = "mcp-server" if backend == "mcp" else "app-server"
    with trio.fail_after(CEILING):
        async with app_server_edges(
            binary, tmp_path, sandbox="read-only", responder=answer_while_stopped, backend=backend
        ) as edges:
            model, tg, config = edges
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text=asked)
                await model.wait_for(lambda m: any(asked in last_user_text(r) for r in m.requests))
                servers = {pid for pid in tree(bot.process.pid) if server in cmdline(pid)}
                port = int(model.base_url.rsplit(":", 1)[1].split("/")[0])
                (busy,) = connected_to(port, servers)  # the one whose turn waits for the model
                os.kill(busy, signal.SIGKILL)
                await tg.wait_for(lambda t: has_text(t, "while you were away") or has_text(t, "❌"))
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    assert len(servers) == 2
    assert has_text(tg, "MOCK-REPLY: answered while you were away"), tg.sent_texts(ALICE)
    assert not has_text(tg, "❌"), tg.sent_texts(ALICE)
    assert sum(asked in last_user_text(r) for r in model.requests) == 2  # asked again
