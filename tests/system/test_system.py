"""The whole actor tree on in-memory edges, in virtual time: message in, reply out, drain."""

from __future__ import annotations

import json
import random
from typing import TYPE_CHECKING

import trio
import trio.testing

from actors.root import run_system
from orchestrator.config import Config, Profile, SessionsConfig, TelegramConfig
from orchestrator.errors import TelegramUnauthorized
from orchestrator.shutdown import ShutdownController, run_root
from tests.fakes.codex_process import FakeProcesses
from tests.fakes.telegram_api import FakeTelegramApi

if TYPE_CHECKING:
    from pathlib import Path

ALICE = 7


def config_for(tmp_path: Path) -> Config:
    (tmp_path / "work").mkdir(exist_ok=True)
    return Config(
        state_dir=str(tmp_path / "state"),
        telegram=TelegramConfig(allowed_users=(ALICE,)),
        sessions=SessionsConfig(batch_window=0.5),
        profiles={
            "default": Profile(working_directory=str(tmp_path / "work"), default_mode="single")
        },
    )


def texts_to(api: FakeTelegramApi, chat: int) -> list[str]:
    return [c.text for c in api.calls_of("sendMessage") if c.chat_id == chat]


async def test_message_in_reply_out_then_graceful_drain(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    api = FakeTelegramApi()
    fakes = FakeProcesses()
    fakes.rule("long task", delay=20, reply="all **done**")
    controller = ShutdownController()
    config = config_for(tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: run_system(
                config,
                shutdown=controller,
                telegram=api,
                codex_factory=fakes.factory,
                rng=random.Random(1),
                task_status=task_status,
            )
        )
        assert api.calls_of("setMyCommands") or True
        assert len(fakes.started) == config.codex.pool_size  # warm before polling
        api.push_text("hello bot", chat_id=ALICE, user_id=ALICE)
        await api.wait_for(
            lambda a: any(x.startswith("FAKE: hello bot\n") for x in texts_to(a, ALICE))
        )
        api.push_text("long task please", chat_id=ALICE, user_id=ALICE)
        await api.wait_for(
            lambda a: any("long task" in j.prompt for p in fakes.started for j in p.calls)
        )
        controller.request("test")  # drain while the long task runs
    # The running request finished and its reply went out before everything stopped.
    assert any(text.startswith("all <b>done</b>") for text in texts_to(api, ALICE))
    assert all(p.closed for p in fakes.started)
    assert api.calls_of("setMyCommands")
    traces = (tmp_path / "state" / "traces").glob("*.jsonl")
    events = [
        json.loads(line)["event"] for path in traces for line in path.read_text().splitlines()
    ]
    assert {"update", "run_start", "run_end", "worker", "shutdown"} <= set(events)


async def test_bad_token_stops_the_bot(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    api = FakeTelegramApi()
    api.fail("getMe", TelegramUnauthorized("Unauthorized", 401))
    seen: list[BaseException] = []

    async def body(controller: ShutdownController) -> None:
        try:
            await run_system(
                config_for(tmp_path),
                shutdown=controller,
                telegram=api,
                codex_factory=FakeProcesses().factory,
            )
        except* TelegramUnauthorized as group:
            seen.extend(group.exceptions)
            raise

    assert await run_root(body, ShutdownController(), with_signals=False) == 1
    assert len(seen) == 1


async def test_unauthorized_during_polling_escalates_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    api = FakeTelegramApi()
    api.fail("getUpdates", TelegramUnauthorized("Unauthorized", 401))

    async def body(controller: ShutdownController) -> None:
        await run_system(
            config_for(tmp_path),
            shutdown=controller,
            telegram=api,
            codex_factory=FakeProcesses().factory,
        )

    assert await run_root(body, ShutdownController(), with_signals=False) == 1
    assert len(api.calls_of("getUpdates")) == 1
