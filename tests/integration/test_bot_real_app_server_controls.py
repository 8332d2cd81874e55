"""The chat's controls on the whole bot as a process, the real Codex 0.171.0 app-server and the
mock model, through the fake Telegram Bot API: a queued message added to the running turn
with the button reaches the model within that turn (``turn/steer``); /model and /effort reach
the model's request body, and ``default`` brings the thread's own back; /usage shows the
tokens; the Stop button under a result stops the command the turn left running (gone from
/proc), the result's note says so, and a second press is answered plainly; in plan mode,
what the selector, the planner and the reviewer leave running is stopped as their calls end
(gone from /proc, no note)."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

import trio

from actors.chat_background import NOTHING_LEFT, STOP_BUTTON
from actors.chat_steer import ADD_BUTTON, ADDED
from tests.bot_process import polling
from tests.fakes.mock_model import Shell, Text, Turn, last_item_type, last_user_text
from tests.integration.app_server_fixtures import app_server_codex
from tests.integration.test_bot_real_app_server import MODEL, app_server_edges
from tests.integration.test_bot_real_codex import ALICE, TOKEN, buttons, count_texts, has_text
from tests.procfs import cmdline, tree, wait_until_gone

if TYPE_CHECKING:
    from pathlib import Path

    from tests.fakes.telegram_server import FakeTelegram, StoredMessage

__all__ = ["app_server_codex"]

CEILING = 150


def respond(body: dict[str, Any]) -> Turn:
    """A command for "wait a bit" (6 s: long enough to steer) and "start a server" (40 s: it
    outlives the turn), then a line saying whether the steered message reached this turn."""
    items = body.get("input", [])
    if any(item.get("type") == "function_call_output" for item in items):
        return [Text(f"MOCK-DONE steered={'steer me in' in str(items)}")]
    prompt = last_user_text(body)
    if "wait a bit" in prompt:
        return [Shell("sleep 6")]
    if "start a server" in prompt:
        return [Shell("sleep 40")]
    return [Text(f"MOCK-REPLY: {prompt[-60:]}")]


async def running_command(root: int, command: str) -> int:
    while True:
        for pid in tree(root):
            if cmdline(pid).startswith(command):
                return pid
        await trio.sleep(0.05)


def with_button(tg: FakeTelegram, label: str) -> StoredMessage | None:
    for message in tg.messages(ALICE):
        if label in buttons(message):
            return message
    return None


async def press(tg: FakeTelegram, label: str) -> StoredMessage:
    await tg.wait_for(lambda t: with_button(t, label) is not None)
    message = with_button(tg, label)
    assert message is not None
    data = buttons(message)[label]
    tg.push_callback(chat_id=ALICE, user_id=ALICE, message_id=message.message_id, data=data)
    return message


async def test_a_queued_message_is_added_to_the_running_turn(
    app_server_codex: Path, tmp_path: Path
) -> None:
    with trio.fail_after(CEILING):
        async with app_server_edges(
            app_server_codex, tmp_path, sandbox="danger-full-access", responder=respond
        ) as edges:
            model, tg, config = edges
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="please wait a bit")
                await running_command(bot.process.pid, "sleep 6")
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="steer me in")
                offer = await press(tg, ADD_BUTTON)
                await tg.wait_for(lambda t: has_text(t, ADDED))
                assert not buttons(offer)  # the offer's button is gone
                await tg.wait_for(lambda t: has_text(t, "MOCK-DONE"))
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="/status")
                await tg.wait_for(lambda t: has_text(t, "State: idle"))
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    assert has_text(tg, "MOCK-DONE steered=True")  # within the turn that ran the command
    assert "Queue: 0" in next(t for t in tg.sent_texts(ALICE) if "State: idle" in t)
    # It never ran as a request of its own.
    assert not [body for body in model.requests if last_user_text(body) == "steer me in"][1:]
    assert count_texts(tg, "MOCK-REPLY: steer me in") == 0


async def test_model_and_effort_reach_the_model_and_default_brings_them_back(
    app_server_codex: Path, tmp_path: Path
) -> None:
    with trio.fail_after(CEILING):
        async with app_server_edges(
            app_server_codex, tmp_path, sandbox="read-only", responder=respond
        ) as edges:
            model, tg, config = edges
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="/model")
                menu = await press(tg, "gpt-6-sol")
                assert "Models Codex offers" in menu.text
                assert MODEL in buttons(menu)
                # Codex's configured model (config/read) is the default, not the catalogue's.
                assert f"• {MODEL} (GPT-5.5) (Codex's default)" in menu.text
                await tg.wait_for(lambda t: has_text(t, "Model set to gpt-6-sol for this chat."))
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="/effort high")
                await tg.wait_for(lambda t: has_text(t, "Reasoning effort set to high."))
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="hello one")
                await tg.wait_for(lambda t: has_text(t, "MOCK-REPLY: hello one"))
                chosen = model.requests[-1]
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="/model default")
                back_text = "Model: back to Codex's configured default, as the profile names none"
                await tg.wait_for(lambda t: has_text(t, back_text))
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="hello two")
                await tg.wait_for(lambda t: has_text(t, "MOCK-REPLY: hello two"))
                back = model.requests[-1]
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="/usage")
                await tg.wait_for(lambda t: has_text(t, "In this chat, all told:"))
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    assert chosen["model"] == "gpt-6-sol"
    assert chosen["reasoning"]["effort"] == "high"
    assert back["model"] == MODEL  # the thread's own model again (an override persists)
    assert back["reasoning"]["effort"] == "medium"  # gpt-5.5's default, by name
    assert chosen["prompt_cache_key"] == back["prompt_cache_key"]  # one thread throughout
    usage = next(t for t in tg.sent_texts(ALICE) if "In this chat, all told:" in t)
    assert "Last run: 0 tokens" not in usage
    assert "over 2 runs" in usage
    assert "Context: 18 of the model's 258,400 tokens (under 1%) in this" in usage
    assert "Rate limits: Codex reports none for this login." in usage


async def test_the_stop_button_stops_a_command_the_turn_left_running(
    app_server_codex: Path, tmp_path: Path
) -> None:
    with trio.fail_after(CEILING):
        async with app_server_edges(
            app_server_codex, tmp_path, sandbox="danger-full-access", responder=respond
        ) as edges:
            _model, tg, config = edges
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="please start a server")
                sleeper = await running_command(bot.process.pid, "sleep 40")
                result = await press(tg, STOP_BUTTON)
                data = buttons(result)[STOP_BUTTON]
                assert "Still running in the background: sleep 40" in result.text
                await tg.wait_for(lambda t: has_text(t, "⏹ Stopped:\n$ sleep 40"))
                assert await wait_until_gone({sleeper}) == set()
                # The button goes from the result, whose note now says the command stopped.
                answer = result.text.partition("⏳")[0]
                await tg.wait_for(lambda t: STOP_BUTTON not in buttons(result))
                assert result.text.startswith(answer)
                assert "Still running" not in result.text
                assert "⏹ Left running in the background, and stopped since: sleep 40." in (
                    result.text
                )
                # A press that raced the edit: nothing is left.
                tg.push_callback(
                    chat_id=ALICE, user_id=ALICE, message_id=result.message_id, data=data
                )
                await tg.wait_for(lambda t: has_text(t, NOTHING_LEFT))
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()


ROLE_COMMANDS = {
    "Decide how to handle": ("selector", "sleep 41", '{"route": "plan", "reason": "steps"}'),
    "Write the numbered plan": ("planner", "sleep 42", "1. Do it."),
    "Review the developer": ("reviewer", "sleep 43", '{"verdict": "approved", "feedback": "ok"}'),
}
"""Plan mode's read-only roles, by their prompt: the role, the command it starts (handed back
to the model after 0.3 s, so it outlives the turn), and its answer once it has the command's
output."""


def plan_respond(body: dict[str, Any]) -> Turn:
    prompt = last_user_text(body)
    for role_prompt, (_role, command, answer) in ROLE_COMMANDS.items():
        if role_prompt in prompt:
            if last_item_type(body) == "function_call_output":
                return [Text(answer)]
            return [Shell(command, yield_ms=300)]
    return [Text("Done: the developer's report.")]


async def test_plan_mode_stops_what_the_read_only_roles_left_running(
    app_server_codex: Path, tmp_path: Path
) -> None:
    with trio.fail_after(CEILING):
        async with app_server_edges(
            app_server_codex, tmp_path, sandbox="read-only", responder=plan_respond
        ) as edges:
            _model, tg, config = edges
            config.write_text(config.read_text().replace('default_mode = "single"', ""))
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="build the feature")
                seen: set[int] = set()

                async def watch() -> None:
                    while True:
                        seen.update(p for p in tree(bot.process.pid) if "sleep 4" in cmdline(p))
                        await trio.sleep(0.05)

                async with trio.open_nursery() as watching:
                    watching.start_soon(watch)
                    await tg.wait_for(lambda t: has_text(t, "approved by the reviewer"))
                    watching.cancel_scope.cancel()
                assert await wait_until_gone(seen) == set()
                left = [p for p in tree(bot.process.pid) if "sleep 4" in cmdline(p)]
                bot.process.send_signal(signal.SIGTERM)
    assert left == []
    assert len(seen) >= 3  # each role's command ran
    (result,) = [m for m in tg.messages(ALICE) if "approved by the reviewer" in m.text]
    assert "Still running" not in result.text
    assert STOP_BUTTON not in buttons(result)
    for role, command, _answer in ROLE_COMMANDS.values():
        assert f"stopped 1 command the {role} left running: {command}" in bot.text()
