"""The bot's own files against a sandboxed agent, on the real Codex 0.171.0 (``codex
app-server``) and the mock model, with the bot as a process behind the fake Telegram: a
command the agent runs cannot read the token file, the config, state_dir, Codex's login,
transcripts or databases (the permission profile of `orchestrator.agent_fence`), also once
the user approved it out of the sandbox, while the workspace and the commands' HOME stay
readable."""

from __future__ import annotations

import json
import signal
from typing import TYPE_CHECKING, Any

import trio

from tests.bot_process import polling
from tests.fakes.mock_model import Shell, Text, Turn, last_item_type, last_user_text
from tests.integration.app_server_fixtures import app_server_codex
from tests.integration.test_bot_real_app_server import CEILING, app_server_edges
from tests.integration.test_bot_real_codex import (
    ALICE,
    TOKEN,
    answer_approval,
    count_texts,
    tool_output,
)

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["app_server_codex"]


def prying_turns(tmp_path: Path) -> Any:
    """Runs a command that reads the bot's files (escalated when the prompt says so), then
    quotes its whole output back."""
    state = tmp_path / "state"
    pry = (
        f"cat {tmp_path / 'token.txt'}; cat {tmp_path / 'conf.toml'}; "
        f"cat {state / 'session.key'}; ls {state / 'sessions'}; "
        f"cat {tmp_path / 'home' / 'auth.json'}; ls {tmp_path / 'home' / 'sessions'}; "
        f"cat {tmp_path / 'home' / 'state_5.sqlite'} | head -c 16; "
        "cat notes.txt; ls -d ~ && echo home-readable"
    )

    def turns(body: dict[str, Any]) -> Turn:
        if last_item_type(body) == "function_call_output":
            return [Text(f"Command finished. Output: {tool_output(body)}")]
        prompt = last_user_text(body)
        if "pry" in prompt:
            return [Shell(pry)]
        if "escalate" in prompt:
            outside = tmp_path / "outside.txt"
            escape = f"touch {outside}; echo allowed_users = [666] >> {tmp_path / 'conf.toml'}"
            return [Shell(f"{pry}; {escape}", escalated=True, justification="to look")]
        return [Text(f"MOCK-REPLY: {prompt[-60:]}")]

    return turns


async def test_a_sandboxed_agent_cannot_read_the_bots_own_files(
    app_server_codex: Path, tmp_path: Path
) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "notes.txt").write_text("workspace notes\n")
    (tmp_path / "token.txt").write_text(TOKEN + "\n")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "auth.json").write_text('{"OPENAI_API_KEY": "sk-fenced-off"}')
    with trio.fail_after(CEILING):
        edges = app_server_edges(
            app_server_codex,
            tmp_path,
            sandbox="workspace-write",
            responder=prying_turns(tmp_path),
            codex_sandbox="danger-full-access",  # Codex's own config does not weaken it
        )
        async with edges as (model, tg, config):
            token_file = f"token_file = {json.dumps(str(tmp_path / 'token.txt'))}\n"
            config.write_text(
                config.read_text().replace("[telegram]\n", "[telegram]\n" + token_file)
            )
            async with polling(tg, config, None) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="pry please")
                await tg.wait_for(lambda t: count_texts(t, "Command finished") == 1)
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="escalate please")
                await answer_approval(tg, "outside.txt", "✅ Approve")
                await tg.wait_for(lambda t: count_texts(t, "Command finished") == 2)
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    # Each request carries the conversation so far: every command's output once.
    outputs = list(dict.fromkeys(tool_output(body) for body in model.requests if tool_output(body)))
    assert len(outputs) == 2, outputs
    for output in outputs:
        for name in ("token.txt", "conf.toml", "session.key", "auth.json", "state_5.sqlite"):
            assert f"{name}: Permission denied" in output, output
        assert output.count("sessions': Permission denied") == 2, output  # the bot's, Codex's
        assert "sk-fenced-off" not in output
        assert "workspace notes" in output  # the workspace is the agent's
        assert "home-readable" in output  # so is its HOME, which lies in state_dir
        assert TOKEN.split(":")[1] not in output
        assert "allowed_users" not in output
    # The approved command left the sandbox for its write, not for the fenced files.
    assert (tmp_path / "outside.txt").exists()
    assert "666" not in (tmp_path / "conf.toml").read_text()
