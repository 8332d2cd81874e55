"""The bot token against the agent, on the real Codex 0.153.4 and the mock model, with the bot
as a process behind the fake Telegram: what a command prints reaches neither the chat nor the
session file with the token in it."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

import trio

from tests.bot_process import polling, write_config
from tests.fakes.mock_model import (
    Shell,
    Text,
    Turn,
    codex_env,
    last_item_type,
    last_user_text,
    open_mock_model,
    write_codex_home,
)
from tests.fakes.telegram_server import open_fake_telegram
from tests.integration.test_bot_real_codex import tool_output

if TYPE_CHECKING:
    from pathlib import Path

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
ALICE = 4242
CEILING = 150


def leaking_turns(body: dict[str, Any]) -> Turn:
    """Runs the command the prompt names, then quotes its whole output back."""
    if last_item_type(body) == "function_call_output":
        return [Text(f"Command finished. Output: {tool_output(body)}")]
    prompt = last_user_text(body)
    if "grep for it" in prompt:
        return [Shell("grep -r TELEGRAM_BOT_TOKEN .")]
    if "cat it" in prompt:
        return [Shell("cat notes/leak.txt")]
    return [Text(f"MOCK-REPLY: {prompt[-60:]}")]


async def test_a_command_that_prints_the_token_shows_it_redacted(
    codex_binary: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    (work / "notes").mkdir(parents=True)
    (work / "notes" / "leak.txt").write_text(f"TELEGRAM_BOT_TOKEN={TOKEN}\n")
    with trio.fail_after(CEILING):
        async with open_mock_model() as model, open_fake_telegram(TOKEN) as tg:
            model.responder = leaking_turns
            home = write_codex_home(tmp_path / "home", model.base_url)
            config = write_config(
                tmp_path,
                telegram_url=tg.base_url,
                user=ALICE,
                codex_command=[str(codex_binary), "mcp-server"],
                codex_env=codex_env(home),
                batch_window=0.1,
                profile={"sandbox": "read-only", "approval_policy": "on-request"},
            )
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="grep for it please")
                await tg.wait_for(
                    lambda t: any("Command finished" in text for text in t.sent_texts(ALICE))
                )
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="now cat it please")
                await tg.wait_for(
                    lambda t: sum("Command finished" in x for x in t.sent_texts(ALICE)) == 2
                )
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    outputs = [tool_output(body) for body in model.requests if tool_output(body)]
    assert outputs
    assert all(TOKEN in output for output in outputs), outputs  # the commands did print it
    finished = [text for text in tg.sent_texts(ALICE) if "Command finished" in text]
    assert all("TELEGRAM_BOT_TOKEN=[REDACTED]" in text for text in finished), finished
    every_call = repr([call.params for call in tg.calls])
    assert TOKEN not in every_call
    sessions = list((tmp_path / "state" / "sessions").iterdir())
    assert sessions
    for path in sessions:
        assert TOKEN not in path.read_text(), path
