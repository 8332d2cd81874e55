"""The chat's controls on the real pool over in-memory workers, in virtual time: a queued
message added to the running request (steer), or left queued when the turn ended; /model and
/effort reach the next turns' jobs; /usage; the Stop button under a result whose turn left
commands running; on the MCP backend no steer button and plain "needs app-server" answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
import pytest
import trio
import trio.testing

from actors.button_data import steer_data
from actors.chat_background import (
    NOTHING_LEFT,
    STOP_BUTTON,
    WORKER_GONE,
    background_note,
    stopped_note,
)
from actors.chat_commands import CANCEL_NOTICE_DELAY, CANCELLING
from actors.chat_model import NEEDS_APP_SERVER
from actors.chat_steer import ADD_BUTTON, ADDED, ENDED_BEFORE, WITHDRAWN
from orchestrator.config import Config, Profile
from orchestrator.messages import (
    Button,
    CloseLive,
    Keyboard,
    SendReply,
    SessionKey,
    UpdateLive,
)
from orchestrator.ports import RateLimits, RateLimitWindow
from tests.actors.test_chats import ALICE, BOB, Bot, make_config, plan_fakes, running_bot
from tests.fakes.codex_process import FakeProcesses

if TYPE_CHECKING:
    from pathlib import Path


def app_server(tmp_path: Path, **profile: str) -> Config:
    config = make_config(tmp_path)
    codex = msgspec.structs.replace(config.codex, backend="app-server")
    default = msgspec.structs.replace(config.profiles["default"], **profile)
    return msgspec.structs.replace(
        config, codex=codex, profiles={**config.profiles, "default": default}
    )


def reply_buttons(bot: Bot, fragment: str) -> list[Button]:
    """The buttons under the replies that contain `fragment`."""
    return [
        button
        for m in bot.sent
        if isinstance(m, SendReply) and fragment in m.markdown
        for row in m.keyboard
        for button in row
    ]


def button_changes(bot: Bot) -> list[tuple[str, Keyboard]]:
    """The replies whose buttons the chat changed (their slot), and to what."""
    return [(m.slot, m.keyboard) for m in bot.sent if isinstance(m, CloseLive) and m.keep_text]


def note_rewrites(bot: Bot) -> list[tuple[str, str]]:
    """What the chat asked the sender to rewrite in the replies whose buttons it changed."""
    return [(m.text_from, m.text_to) for m in bot.sent if isinstance(m, CloseLive) and m.keep_text]


def result_slot(bot: Bot, fragment: str) -> str:
    """The `keyboard_slot` of the reply that contains `fragment`."""
    (slot,) = [
        m.keyboard_slot for m in bot.sent if isinstance(m, SendReply) and fragment in m.markdown
    ]
    assert slot
    return slot


def shown(bot: Bot) -> list[str]:
    """The texts of the live messages the chat showed (lists, progress)."""
    return [m.text for m in bot.sent if isinstance(m, UpdateLive)]


def jobs(bot: Bot):
    return [job for process in bot.fakes.started for job in process.calls]


async def queue_behind_a_long_run(bot: Bot) -> Button:
    """Start a long request, queue a message behind it, return the offer's button."""
    await bot.say(ALICE, "long task")
    await bot.wait(lambda: bot.fakes.in_flight == 1)
    await bot.say(ALICE, "also this")
    await bot.wait(lambda: bool(bot.buttons(ALICE, "st:")))
    (button,) = bot.buttons(ALICE, "st:")
    assert button.text == ADD_BUTTON
    return button


async def test_a_queued_message_joins_the_running_turn(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fakes = FakeProcesses(app_server=True)
    fakes.rule("long task", delay=100)
    async with running_bot(tmp_path, fakes, app_server(tmp_path)) as bot:
        button = await queue_behind_a_long_run(bot)
        query = await bot.press(ALICE, button.callback_data)
        await bot.wait_told(ALICE, ADDED)
        assert bot.callback_answer(query) == "Added."
        await bot.wait_reply(ALICE, "FAKE: long task [steered: also this]")
        assert fakes.steers == [(fakes.steers[0][0], "1-1", "also this")]
        again = await bot.press(ALICE, button.callback_data)  # a second press: stale
        await bot.wait(lambda: bot.callback_answer(again) is not None)
        assert (
            bot.callback_answer(again)
            == "That message is no longer waiting: it was added, or runs on its own."
        )
        await bot.say(ALICE, "/status")
        await bot.wait_reply(ALICE, "State: idle")
    assert len(jobs(bot)) == 1  # the steered message did not run again on its own
    state = (await bot.store.load(SessionKey(ALICE, ALICE))).state
    assert state is not None
    assert state.queue == ()


async def test_the_bots_own_token_in_a_message_added_to_the_turn_never_reaches_codex(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    ours = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    fakes = FakeProcesses(app_server=True)
    fakes.rule("long task", delay=100)
    async with running_bot(tmp_path, fakes, app_server(tmp_path), secrets=(ours,)) as bot:
        await bot.say(ALICE, "long task")
        await bot.wait(lambda: bot.fakes.in_flight == 1)
        await bot.say(ALICE, f"use {ours}")
        await bot.wait(lambda: bool(bot.buttons(ALICE, "st:")))
        (button,) = bot.buttons(ALICE, "st:")
        await bot.press(ALICE, button.callback_data)
        await bot.wait_told(ALICE, ADDED)
        await bot.wait_reply(ALICE, "Your message held this bot's token")
    assert [text for _, _, text in fakes.steers] == ["use [REDACTED]"]


async def test_a_turn_that_moved_on_leaves_the_message_queued(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fakes = FakeProcesses(app_server=True)
    fakes.rule("long task", delay=100)
    fakes.steer_refused = True
    async with running_bot(tmp_path, fakes, app_server(tmp_path)) as bot:
        button = await queue_behind_a_long_run(bot)
        query = await bot.press(ALICE, button.callback_data)
        await bot.wait_told(ALICE, ENDED_BEFORE)
        assert bot.callback_answer(query) == "Not added."
        await bot.say(ALICE, "and more")  # still joins the queued prompt
        await bot.wait_reply(ALICE, "FAKE: also this\n\nand more")
    assert [job.prompt for job in jobs(bot)] == ["long task", "also this\n\nand more"]


async def test_a_press_after_the_request_ended_runs_nothing_twice(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fakes = FakeProcesses(app_server=True)
    fakes.rule("long task", delay=100)
    async with running_bot(tmp_path, fakes, app_server(tmp_path)) as bot:
        button = await queue_behind_a_long_run(bot)
        await bot.wait_reply(ALICE, "FAKE: also this")  # it ran next, as queued
        await bot.wait_told(ALICE, WITHDRAWN)  # and the offer's button went
        query = await bot.press(ALICE, button.callback_data)
        await bot.wait(lambda: bot.callback_answer(query) is not None)
        assert (
            bot.callback_answer(query)
            == "That message is no longer waiting: it was added, or runs on its own."
        )
    assert fakes.steers == []
    assert [job.prompt for job in jobs(bot)] == ["long task", "also this"]


async def test_an_offer_from_before_a_restart_loses_its_button_when_pressed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """After a restart the chat knows no offer, but the old "Queued" note still shows its
    button: the press is answered, and the button goes, as it would have without the stop."""
    fakes = FakeProcesses(app_server=True)
    async with running_bot(tmp_path, fakes, app_server(tmp_path)) as bot:
        data = steer_data("fromlastrun")
        query = await bot.press(ALICE, data, keyboard=(data,))
        await bot.wait(lambda: bot.callback_answer(query) is not None)
        await bot.wait_told(ALICE, WITHDRAWN)
    (closed,) = [m for m in bot.sent if isinstance(m, CloseLive)]
    assert (closed.message_id, closed.final_text) == (1, WITHDRAWN)
    assert fakes.steers == []
    assert jobs(bot) == []


async def test_no_steer_button_on_mcp_or_in_plan_mode(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fakes = FakeProcesses()
    fakes.rule("long task", delay=100)
    async with running_bot(tmp_path, fakes) as bot:
        await bot.say(ALICE, "long task")
        await bot.wait(lambda: fakes.in_flight == 1)
        await bot.say(ALICE, "also this")
        await bot.wait_reply(ALICE, "Queued: this runs when the current request ends")
        assert bot.buttons(ALICE, "st:") == []
        assert reply_buttons(bot, "Queued") == []
        # A forged press on MCP is answered, never steered.
        query = await bot.press(ALICE, "st:forged")
        await bot.wait(lambda: bot.callback_answer(query) is not None)
        assert fakes.steers == []
    plan = FakeProcesses(app_server=True)
    plan.rule("long task", delay=100)
    (tmp_path / "plan").mkdir()
    async with running_bot(tmp_path / "plan", plan, app_server(tmp_path / "plan")) as bot:
        await bot.say(ALICE, "/mode plan")
        await bot.say(ALICE, "long task")
        await bot.wait(lambda: plan.in_flight == 1)
        await bot.say(ALICE, "also this")
        await bot.wait_reply(ALICE, "Queued")
        assert bot.buttons(ALICE, "st:") == []


async def test_model_and_effort_go_with_the_next_turns(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fakes = FakeProcesses(app_server=True)
    async with running_bot(tmp_path, fakes, app_server(tmp_path, model="gpt-a")) as bot:
        await bot.say(ALICE, "/model")
        await bot.wait_reply(ALICE, "Models Codex offers")
        (menu,) = [r for r in bot.replies(ALICE) if "Models Codex offers" in r]
        assert "Model: the profile's, gpt-a." in menu
        keys = {b.text: b.callback_data for b in reply_buttons(bot, "Models Codex offers")}
        assert keys == {"gpt-a": "md:gpt-a", "gpt-b": "md:gpt-b", "↩ Profile's default": "md:"}
        await bot.press(ALICE, keys["gpt-b"])
        await bot.wait_reply(ALICE, "Model set to gpt-b for this chat.")
        await bot.say(ALICE, "/effort high")
        await bot.wait_reply(ALICE, "gpt-b has no reasoning effort “high”. It has: low.")
        await bot.say(ALICE, "/effort")
        await bot.wait_reply(ALICE, "Reasoning effort of gpt-b")
        assert [b.callback_data for b in reply_buttons(bot, "Reasoning effort of")] == [
            "ef:low",
            "ef:",
        ]
        await bot.press(ALICE, "ef:low")
        await bot.wait_reply(ALICE, "Reasoning effort set to low.")
        await bot.say(ALICE, "first")
        await bot.wait_reply(ALICE, "FAKE: first")
        await bot.say(ALICE, "/model nonsense")
        await bot.wait_reply(ALICE, "Codex offers no model named “nonsense”. Models: gpt-a, gpt-b.")
        await bot.say(ALICE, "/model default")
        await bot.wait_reply(ALICE, "Model: back to the profile's, gpt-a.")
        await bot.say(ALICE, "second")
        await bot.wait_reply(ALICE, "FAKE: second")
        saved = (await bot.store.load(SessionKey(ALICE, ALICE))).state
        await bot.say(ALICE, "/model gpt-a")
        await bot.wait_reply(ALICE, "Model set to gpt-a")
    first, second = jobs(bot)
    assert (first.model, first.model_choice, first.effort) == ("gpt-a", "gpt-b", "low")
    assert (second.model, second.model_choice, second.effort) == ("gpt-a", "", "")
    assert saved is not None
    assert (saved.model, saved.effort) == ("", "")
    state = (await bot.store.load(SessionKey(ALICE, ALICE))).state
    assert state is not None
    assert state.model == "gpt-a"  # kept in the session file: it survives a restart


async def test_on_mcp_model_effort_and_rate_limits_say_they_need_app_server(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    config = make_config(tmp_path)
    default = Profile(working_directory=str(tmp_path / "work"), model="gpt-x")
    config = msgspec.structs.replace(config, profiles={**config.profiles, "default": default})
    async with running_bot(tmp_path, FakeProcesses(), config) as bot:
        await bot.say(ALICE, "/model gpt-b")
        await bot.wait_reply(ALICE, f"{NEEDS_APP_SERVER} This profile uses gpt-x.")
        await bot.say(ALICE, "/effort low")
        await bot.wait_reply(ALICE, NEEDS_APP_SERVER, count=2)
        await bot.say(ALICE, "/usage")
        await bot.wait_reply(ALICE, f"Rate limits: {NEEDS_APP_SERVER}")
    state = (await bot.store.load(SessionKey(ALICE, ALICE))).state
    assert state is None or (state.model, state.effort) == ("", "")


async def test_usage_shows_tokens_and_rate_limits_with_their_reset(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fakes = FakeProcesses(app_server=True)
    async with running_bot(tmp_path, fakes, app_server(tmp_path)) as bot:
        await bot.say(ALICE, "/usage")
        await bot.wait_reply(ALICE, "Rate limits: Codex reports none for this login.")
        (first,) = [r for r in bot.replies(ALICE) if "Rate limits" in r]
        assert "Last run: no tokens counted yet." in first
        fakes.limits = RateLimits(
            name="codex",
            primary=RateLimitWindow(used_percent=42, window_minutes=300, resets_at=1_800_000_000),
            secondary=RateLimitWindow(used_percent=7, window_minutes=10080),
        )
        await bot.say(ALICE, "hello")
        await bot.wait_reply(ALICE, "FAKE: hello")
        await bot.say(ALICE, "/usage")
        await bot.wait_reply(ALICE, "Rate limits (codex):")
    (text,) = [r for r in bot.replies(ALICE) if "Rate limits (codex)" in r]
    assert "Last run: 0 tokens in (0 cached), 0 out, 0 in all." in text
    assert "In this chat, all told: 0 tokens in, 0 out, over 1 run." in text
    assert "• 42% used of the 5-hour window, resets 2027-01-15 08:00 UTC" in text
    assert "• 7% used of the 7-day window" in text


@pytest.mark.parametrize("backend", ["mcp", "app-server"])
async def test_status_and_usage_say_how_full_the_conversations_context_is(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, backend: str
) -> None:
    """A conversation that goes on fills the model's window (and a full one cannot go on):
    the user sees how full it is, until the conversation starts a fresh Codex session."""
    fakes = FakeProcesses(app_server=backend == "app-server")
    fakes.rule("long", context_tokens=64_600)
    config = app_server(tmp_path) if backend == "app-server" else None
    async with running_bot(tmp_path, fakes, config) as bot:
        await bot.say(ALICE, "a long question")
        await bot.wait_reply(ALICE, "FAKE: a long question")
        await bot.say(ALICE, "/status")
        await bot.wait_reply(ALICE, "Codex workers:")
        status = bot.replies(ALICE)[-1]
        await bot.say(ALICE, "/usage")
        await bot.wait_reply(ALICE, "In this chat, all told:")
        usage = bot.replies(ALICE)[-1]
        await bot.say(ALICE, "/new")
        await bot.wait_reply(ALICE, "new conversation")
        await bot.say(ALICE, "/status")
        await bot.wait_reply(ALICE, "Codex workers:", count=2)
        after_new = bot.replies(ALICE)[-1]
    assert "\nContext: 64,600 of the model's 258,400 tokens (25%)\n" in status
    assert (
        "Context: 64,600 of the model's 258,400 tokens (25%) in this conversation's Codex "
        "session; /new starts a fresh one." in usage
    )
    assert "Context:" not in after_new


async def test_the_stop_button_stops_what_a_turn_left_running(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fakes = FakeProcesses(app_server=True)
    fakes.rule("serve", background=("python -m http.server",))
    async with running_bot(tmp_path, fakes, app_server(tmp_path)) as bot:
        await bot.say(ALICE, "serve it")
        await bot.wait_reply(ALICE, "FAKE: serve it")
        (stop,) = reply_buttons(bot, "FAKE: serve it")
        assert stop.text == STOP_BUTTON
        query = await bot.press(ALICE, stop.callback_data)
        await bot.wait_reply(ALICE, "⏹ Stopped:\n$ python -m http.server")
        assert bot.callback_answer(query) == "Stopping…"
        await bot.wait(lambda: bool(button_changes(bot)))
        assert button_changes(bot) == [(result_slot(bot, "FAKE: serve it"), ())]  # it goes
        ((said, now),) = note_rewrites(bot)  # and its note no longer says it runs
        assert said == background_note(["python -m http.server"])
        assert any(said in reply and "FAKE: serve it" in reply for reply in bot.replies(ALICE))
        assert (
            now
            == "\n\n⏹ Left running in the background, and stopped since: `python -m http.server`."
        )
        await bot.press(ALICE, stop.callback_data)  # already stopped (a press racing the edit)
        await bot.wait_reply(ALICE, NOTHING_LEFT)
        assert len(button_changes(bot)) == 1  # nothing left to take away

        await bot.say(ALICE, "serve again")
        await bot.wait_reply(ALICE, "FAKE: serve again")
        (worker,) = {job_worker for job_worker, _thread in fakes.stops}
        fakes.current(worker).die()  # the worker goes, and its commands with it
        await bot.wait(lambda: len(fakes.started) == 3)
        await bot.press(ALICE, stop.callback_data)
        await bot.wait_reply(ALICE, WORKER_GONE)

        await bot.say(ALICE, "plain")
        await bot.wait_reply(ALICE, "FAKE: plain")
        assert reply_buttons(bot, "FAKE: plain") == []  # nothing left running: no button


def test_background_note_names_three_commands_and_counts_the_rest() -> None:
    note = background_note([f"sleep {n}" for n in range(5)])
    assert "`sleep 0`, `sleep 1`, `sleep 2` and 2 more" in note
    assert "The Stop button or /cancel stops them; so do /new, a switch of profile" in note
    one = background_note(["sleep 0"])
    assert "Still running in the background: `sleep 0`. The Stop button or /cancel stops it;" in one


async def test_plan_mode_stops_what_the_other_roles_left_running_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The selector's, planner's and reviewer's threads are never continued: what their turns
    left running is stopped as each call ends, and the result neither names it nor offers a
    Stop button for it. The developer's stays, named, with its button."""
    fakes = plan_fakes()
    for role_prompt in ("Decide how to handle", "Write the numbered plan", "Review the developer"):
        rule = next(r for r in fakes.rules if r.match == role_prompt)
        rule.background = (f"tail -f {role_prompt.split()[0].lower()}.log",)
    fakes.app_server = True
    config = app_server(tmp_path, default_mode="plan")
    async with running_bot(tmp_path, fakes, config) as bot:
        await bot.say(ALICE, "build the feature")
        await bot.wait_reply(ALICE, "approved by the reviewer in round 2")
        final = bot.replies(ALICE)[-1]
        assert "Still running" not in final
        assert reply_buttons(bot, "approved by the reviewer") == []
        stopped = {thread for process in fakes.started for thread in process.released}
        assert len(stopped) == 3  # the selector's, the planner's and the reviewer's thread
        assert fakes.background == {}  # nothing of theirs left running
        developer_threads = {
            job.thread_id for p in fakes.started for job in p.calls if "Carry out" in job.prompt
        }
        assert not stopped & developer_threads

        fakes.rule("Carry out", reply="Serving.", background=("python -m http.server",))
        fakes.rule("Review the developer", reply='{"verdict": "approved", "feedback": "ok"}')
        await bot.say(ALICE, "serve the feature")
        await bot.wait_reply(ALICE, "Still running in the background: `python -m http.server`")
        (stop,) = reply_buttons(bot, "Still running in the background")
        assert stop.text == STOP_BUTTON
        released = [thread for process in fakes.started for thread in process.released]
        assert len(released) == 5  # this request's selector and planner, not the developer
        assert list(fakes.background.values()) == [("python -m http.server",)]


async def test_cancel_and_new_say_which_background_commands_they_stopped(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fakes = FakeProcesses(app_server=True)
    fakes.rule("serve", background=("python -m http.server",))
    async with running_bot(tmp_path, fakes, app_server(tmp_path)) as bot:
        await bot.say(ALICE, "serve it")
        await bot.wait_reply(ALICE, "FAKE: serve it")
        await bot.say(ALICE, "/cancel")
        stopped = "⏹ Stopped what the last request left running in the background:\n$ python"
        await bot.wait_reply(ALICE, stopped)
        await bot.wait(lambda: bool(button_changes(bot)))
        assert button_changes(bot) == [(result_slot(bot, "FAKE: serve it"), ())]
        assert not any("Nothing is running" in r for r in bot.replies(ALICE))
        await bot.say(ALICE, "/cancel")  # nothing left: said plainly
        await bot.wait_reply(ALICE, "Nothing is running.")
        await bot.say(ALICE, "serve once more")
        await bot.wait_reply(ALICE, "FAKE: serve once more")
        await bot.say(ALICE, "/new")
        await bot.wait_reply(ALICE, "Started a new conversation")
        await bot.wait_reply(ALICE, stopped, count=2)
        await bot.wait(lambda: len(button_changes(bot)) == 2)
        assert button_changes(bot)[1] == (result_slot(bot, "FAKE: serve once more"), ())
        assert [now for _said, now in note_rewrites(bot)] == [
            stopped_note(["python -m http.server"])
        ] * 2


async def test_status_shows_the_running_mode_and_the_chat_s_model_choice(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fakes = FakeProcesses(app_server=True)
    fakes.rule("long task", delay=100)
    async with running_bot(tmp_path, fakes, app_server(tmp_path)) as bot:
        await bot.say(ALICE, "/effort high")
        await bot.wait(lambda: len(bot.replies(ALICE)) == 1)
        await bot.say(ALICE, "long task")
        await bot.wait(lambda: bool(jobs(bot)))
        await bot.say(ALICE, "/mode plan")
        await bot.wait_reply(ALICE, "Mode set to plan (from the next request).")
        await bot.say(ALICE, "/status")
        await bot.wait_reply(ALICE, "State:")
        status = bot.replies(ALICE)[-1]
        await bot.say(ALICE, "/model default")  # one pair of parentheses, not two in a row
        await bot.wait_reply(
            ALICE,
            "Model: back to Codex's configured default, as the profile names none (from the "
            "next request). Reasoning effort: the model's default.",
        )
    assert "Mode: single (this request), plan from the next" in status
    assert "Chosen for this chat: effort high" in status


async def test_a_cancelled_first_request_leaves_its_app_server_thread_to_go_on(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """An interrupted app-server turn leaves its thread fit to continue, a first request's
    too: "go on" after a cancel reaches the thread that saw the work, not a recap of it."""
    fakes = FakeProcesses(app_server=True)
    fakes.rule("forever", hang=True)
    async with running_bot(tmp_path, fakes, app_server(tmp_path)) as bot:
        await bot.say(ALICE, "forever job")
        await bot.wait(lambda: bool(bot.buttons(ALICE, "cx:")))
        await bot.say(ALICE, "/cancel")
        await bot.wait_told(ALICE, "Cancelled")
        await bot.say(ALICE, "/sessions")  # listed already, as /status shows it
        await bot.wait(lambda: any("1. " in text and "forever job" in text for text in shown(bot)))
        await bot.say(ALICE, "go on")
        await bot.wait_reply(ALICE, "FAKE: go on")
    first, second = jobs(bot)
    assert first.thread_id is None
    assert second.thread_id is not None
    assert second.thread_id in {t for p in fakes.started for t in p.thread_ids}
    assert second.worker_id == fakes.started[0].worker_id
    assert sum(p.killed for p in fakes.started) == 0  # interrupted, not killed
    state = (await bot.store.load(SessionKey(ALICE, ALICE))).state
    assert state is not None
    assert [record.thread_id for record in state.threads] == [second.thread_id]


async def test_after_a_cancel_its_server_did_not_answer_the_chat_goes_on_in_its_thread(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Seen from outside (a SIGSTOPped app-server): the cancel waits for the interrupt's
    grace (5 s) while the progress message sat unchanged, Cancel button and all; then it
    stops the worker, whose process holds the thread for the seconds it takes to die. "go on"
    went to the other worker at once, its resume was refused, and it went on in a fresh
    session with a summary. The cancel now says it is under way, and "go on" waits for that
    process, says so, and goes on in the thread that saw the work."""
    fakes = FakeProcesses(app_server=True)
    fakes.rule("forever", hang=True, deaf_to_interrupt=True)
    fakes.interrupt_grace = 5
    fakes.stop_delay = 8
    async with running_bot(tmp_path, fakes, app_server(tmp_path)) as bot:
        await bot.say(ALICE, "forever job")
        await bot.wait(lambda: bool(bot.buttons(ALICE, "cx:")))
        await bot.say(ALICE, "/cancel")
        asked = trio.current_time()
        await bot.wait(lambda: any(CANCELLING in text for text in live_texts(bot)))
        assert trio.current_time() - asked == pytest.approx(CANCEL_NOTICE_DELAY, abs=0.1)
        await bot.wait_told(ALICE, "Cancelled")
        await bot.say(ALICE, "go on")
        await trio.sleep(4)
        await bot.say(ALICE, "/status")
        await bot.wait_reply(
            ALICE,
            "State: Working on your request, waiting for Codex to stop the process that held "
            "this conversation, running for",
        )
        await bot.wait_reply(ALICE, "FAKE: go on")
    _first, second = jobs(bot)
    assert second.thread_id is not None
    assert fakes.resumed == [(second.worker_id, second.thread_id)]
    assert fakes.started[0].killed
    assert not any("continued in a new one" in text for text in shown(bot))
    [cancelling] = [m for m in bot.sent if isinstance(m, UpdateLive) and CANCELLING in m.text]
    assert cancelling.keyboard == ()  # no Cancel button to press again
    assert cancelling.text.split("\n")[0] == CANCELLING  # in place of "⏳ Working…"


async def test_on_app_server_a_thread_its_busy_worker_holds_goes_on_anew_and_says_why(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The worker holding Alice's thread stays busy past ``affinity_wait`` (30 s): her next
    message goes to the other worker, whose resume the holder refuses, so it goes on in a
    fresh thread. That shows only at the turn's end, and the note still says why: it said
    "your earlier Codex session was no longer available"."""
    fakes = FakeProcesses(app_server=True)
    fakes.rule("medium", delay=10)
    fakes.rule("slow", delay=100)
    async with running_bot(tmp_path, fakes, app_server(tmp_path)) as bot:
        await bot.say(ALICE, "hello")
        await bot.wait_reply(ALICE, "FAKE: hello")
        await bot.say(BOB, "medium work")  # the other worker (fewer threads)
        await bot.wait(lambda: sum(len(p.calls) for p in fakes.started) == 2)
        await bot.say(ALICE, "slow work", chat=-100)  # Alice's thread's worker
        await bot.wait(lambda: sum(len(p.calls) for p in fakes.started) == 3)
        await bot.say(ALICE, "go on")
        await bot.wait_reply(ALICE, "FAKE: go on")
    assert (
        "Note: the Codex process holding your earlier session stayed busy with other requests, "
        "so this continued in a new one with a summary of the conversation."
    ) in bot.replies(ALICE)[-1]


def live_texts(bot: Bot) -> list[str]:
    return [m.text for m in bot.sent if isinstance(m, UpdateLive)]
