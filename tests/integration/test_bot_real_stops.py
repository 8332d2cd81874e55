"""The whole bot as a process on the real Codex (0.153.4 and 0.171.0) and the mock model,
when it or a worker is stopped from outside: a bot stopped with Ctrl-Z past the endpoint
limit reads the answer that came meanwhile; a worker killed before the model said a word
hands the request on. Apart from the other real tests so that they run beside them."""

from __future__ import annotations

import os
import signal
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
import trio

from tests.fakes.mock_model import Text, Turn, Wait, last_user_text
from tests.integration.app_server_fixtures import app_server_codex
from tests.integration.test_bot_real_app_server import asking
from tests.integration.test_bot_real_codex import model_turns
from tests.procfs import cmdline, connected_to, tree

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from tests.bot_process import Bot
    from tests.fakes.mock_model import MockModel
    from tests.fakes.telegram_server import FakeTelegram

__all__ = ["app_server_codex"]


ASKED = "answer while I am stopped"
ANSWER = "MOCK-REPLY: answered while you were away"


def answer_while_stopped(body: dict[str, Any]) -> Turn:
    """Answers 4 s after it is asked (within the 10 s limit), without a word meanwhile: time
    to stop the bot, or to kill the worker."""
    if last_user_text(body).rstrip().endswith(ASKED):
        return [Wait(4.0), Text(ANSWER)]
    return model_turns(body)


@asynccontextmanager
async def asking_while_stopped(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> AsyncIterator[tuple[MockModel, FakeTelegram, Bot]]:
    """`asking` with `ASKED`, the block entered once the model has the question: its answer
    must reach the chat, without a failure."""
    async with asking(
        request,
        tmp_path,
        backend=backend,
        responder=answer_while_stopped,
        question=ASKED,
        answer=ANSWER,
    ) as (model, tg, bot):
        await model.wait_for(lambda m: any(ASKED in last_user_text(r) for r in m.requests))
        yield model, tg, bot


@pytest.mark.parametrize("backend", ["mcp", "app-server"])
async def test_a_bot_stopped_with_ctrl_z_reads_the_answer_that_came_meanwhile(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """Seen from outside: the bot stopped (Ctrl-Z) while the model answered, for longer than
    the 10 s ``endpoint_failure_limit``, said "Codex cannot reach its model endpoint" on
    `fg` and lost the answer waiting in its pipe. Time the bot did not run is not Codex's
    silence. (The stop's length is the one wall-clock wait: it is the scenario.)"""
    async with asking_while_stopped(request, tmp_path, backend) as (model, _tg, bot):
        answered, asked_at = model.answered, trio.current_time()
        bot.process.send_signal(signal.SIGSTOP)
        try:  # stopped until the answer is whole and the limit has passed
            await model.wait_for(lambda m: m.answered > answered)
            await trio.sleep_until(asked_at + 11)
        finally:
            bot.process.send_signal(signal.SIGCONT)


@pytest.mark.parametrize("backend", ["mcp", "app-server"])
async def test_a_worker_killed_before_the_model_said_a_word_hands_the_request_on(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    """Seen from outside: a worker killed between the turn's start and the model's first
    word failed a request the model never answered ("The Codex process working on it
    stopped unexpectedly"). Nothing had run: it goes on, on a worker that answers."""
    server = "mcp-server" if backend == "mcp" else "app-server"
    async with asking_while_stopped(request, tmp_path, backend) as (model, _tg, bot):
        servers = {pid for pid in tree(bot.process.pid) if server in cmdline(pid)}
        port = int(model.base_url.rsplit(":", 1)[1].split("/")[0])
        asked = next(i for i, body in enumerate(model.requests) if ASKED in last_user_text(body))
        # The one whose turn waits for the model: the other may hold an idle connection too.
        busy = connected_to(port, servers, from_port=model.peers[asked])
        assert len(busy) == 1, (busy, servers, connected_to(port, servers), model.peers)
        os.kill(busy.pop(), signal.SIGKILL)
    assert len(servers) == 2, [cmdline(pid) for pid in servers]
    asks = [last_user_text(body)[-60:] for body in model.requests]
    assert sum(ASKED in text for text in asks) == 2, asks  # asked again
    # and the model has the question once: the killed turn left no copy in the thread
    again = [body for body in model.requests if ASKED in last_user_text(body)][-1]
    said = [
        part.get("text", "")
        for item in again.get("input", [])
        if item.get("role") == "user"
        for part in item.get("content", [])
    ]
    assert sum(ASKED in text for text in said) == 1, said
