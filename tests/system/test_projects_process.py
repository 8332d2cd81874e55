"""Projects in parallel with the bot as a process behind the fake Telegram and the fake Codex
MCP server: sessions to pick up (``/sessions`` buttons, the ``codex resume`` line), a forum
topic bound to a profile (``/bind``), and branch worktrees of a real git repository
(``/branch``)."""

from __future__ import annotations

import json
import signal
from typing import TYPE_CHECKING, Any

import trio

from tests.bot_process import polling
from tests.edges.test_git import make_repository
from tests.fakes.codex_script import FakeCodex
from tests.fakes.telegram_server import FakeTelegram, open_fake_telegram
from tests.system.test_process import ALICE, CEILING, TOKEN, write_config
from tests.system.test_profiles_process import BOB

if TYPE_CHECKING:
    from pathlib import Path

GROUP = -1001234
TOPIC = 42


def _buttons(tg: FakeTelegram, chat: int, prefix: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for message in tg.messages(chat):
        markup = message.reply_markup or {}
        if isinstance(markup, str):
            markup = json.loads(markup)
        for row in markup.get("inline_keyboard", []):
            found.extend(b for b in row if b.get("callback_data", "").startswith(prefix))
    return found


def _message_of(tg: FakeTelegram, chat: int, data: str) -> int:
    for message in tg.messages(chat):
        markup = message.reply_markup or {}
        if isinstance(markup, str):
            markup = json.loads(markup)
        for row in markup.get("inline_keyboard", []):
            if any(b.get("callback_data") == data for b in row):
                return message.message_id
    raise AssertionError(f"no button {data}")


def _codex_calls(fake: FakeCodex) -> list[dict[str, Any]]:
    """The arguments of every ``codex`` / ``codex-reply`` call, in order."""
    calls = []
    for entry in fake.recorded():
        message = entry.get("received") or {}
        if message.get("method") == "tools/call":
            params = message["params"]
            calls.append({"tool": params["name"], **params.get("arguments", {})})
    return calls


def _has(tg: FakeTelegram, chat: int, fragment: str) -> bool:
    return any(fragment in text for text in tg.sent_texts(chat))


async def test_sessions_are_listed_as_buttons_and_a_pick_continues_one(tmp_path: Path) -> None:
    fake = FakeCodex(tmp_path / "codex")
    with trio.fail_after(CEILING):
        async with open_fake_telegram(TOKEN) as tg:
            config = write_config(tmp_path, tg.base_url, fake)
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="the first project")
                await tg.wait_for(lambda t: _has(t, ALICE, "FAKE-REPLY: the first project"))
                first = tg.sent_texts(ALICE)[-1]
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="/new")
                await tg.wait_for(lambda t: _has(t, ALICE, "Started a new conversation"))
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="another thing")
                await tg.wait_for(lambda t: _has(t, ALICE, "FAKE-REPLY: another thing"))
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="/sessions")
                await tg.wait_for(lambda t: len(_buttons(t, ALICE, "ss:")) == 2)
                older = _buttons(tg, ALICE, "ss:")[1]["callback_data"]
                tg.push_callback(
                    chat_id=ALICE,
                    user_id=ALICE,
                    message_id=_message_of(tg, ALICE, older),
                    data=older,
                )
                await tg.wait_for(lambda t: _has(t, ALICE, "Continuing the session of"))
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="more on the first")
                await tg.wait_for(lambda t: _has(t, ALICE, "FAKE-REPLY: more on the first"))
                last = tg.sent_texts(ALICE)[-1]
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    thread = older.removeprefix("ss:")
    assert first.endswith(f"🧵 codex resume {thread}")
    assert last.endswith(f"🧵 codex resume {thread}")
    calls = _codex_calls(fake)
    assert [call["tool"] for call in calls] == ["codex", "codex", "codex-reply"]
    assert calls[-1].get("threadId") or calls[-1].get("conversationId") == thread


async def test_a_forum_topic_bound_to_a_profile_runs_there_for_allowed_users(
    tmp_path: Path,
) -> None:
    fake = FakeCodex(tmp_path / "codex")
    with trio.fail_after(CEILING):
        async with open_fake_telegram(TOKEN) as tg:
            config = write_config(tmp_path, tg.base_url, fake)
            (tmp_path / "web").mkdir()
            text = config.read_text().replace(
                f"allowed_users = [{ALICE}]", f"allowed_users = [{ALICE}, {BOB}]"
            )
            config.write_text(
                f"{text}\n[profiles.web]\nworking_directory = 'web'\ndefault_mode = 'single'\n"
                f"users = [{ALICE}]\n"
            )
            async with polling(tg, config, TOKEN) as bot:

                def say(user: int, words: str) -> None:
                    tg.push_message(
                        chat_id=GROUP, user_id=user, text=words, message_thread_id=TOPIC
                    )

                say(ALICE, "/bind web")
                await tg.wait_for(lambda t: _has(t, GROUP, "now bound to profile web (web)"))
                say(ALICE, "build the page")
                await tg.wait_for(lambda t: _has(t, GROUP, "FAKE-REPLY: build the page"))
                say(BOB, "let me in")
                await tg.wait_for(lambda t: _has(t, GROUP, "which you may not use"))
                say(ALICE, "/status")
                await tg.wait_for(lambda t: _has(t, GROUP, "Bound topic: profile web"))
                # The General topic has no topic id: it is a place of its own, not the chat.
                tg.push_message(chat_id=GROUP, user_id=ALICE, text="/bind")
                await tg.wait_for(lambda t: _has(t, GROUP, "This General topic is not bound"))
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    calls = _codex_calls(fake)
    assert [call["prompt"] for call in calls] == ["build the page"]
    assert calls[0]["cwd"] == str(tmp_path / "web")
    sends = [c.params for c in tg.calls_of("sendMessage") if c.params.get("chat_id") == GROUP]
    general = [params for params in sends if "General topic" in params["text"]]
    assert [params.get("message_thread_id") for params in general] == [None]
    assert sends[:-1]
    assert all(params.get("message_thread_id") == TOPIC for params in sends[:-1])
    bindings = json.loads((tmp_path / "state" / "topics.json").read_text())
    assert bindings["bindings"][f"{GROUP}-t{TOPIC}"]["profile"] == "web"


async def test_a_branch_worktree_is_made_used_listed_and_removed(tmp_path: Path) -> None:
    fake = FakeCodex(tmp_path / "codex")
    with trio.fail_after(CEILING):
        async with open_fake_telegram(TOKEN) as tg:
            config = write_config(tmp_path, tg.base_url, fake)
            make_repository(tmp_path / "work")
            trees = tmp_path / "trees"
            config.write_text(config.read_text() + f"worktrees_dir = {json.dumps(str(trees))}\n")
            async with polling(tg, config, TOKEN) as bot:

                def say(words: str) -> None:
                    tg.push_message(chat_id=ALICE, user_id=ALICE, text=words)

                say("/branch bad..name")
                await tg.wait_for(lambda t: _has(t, ALICE, "is not a valid branch name"))
                say("/branch main")
                await tg.wait_for(lambda t: _has(t, ALICE, "/branch off works there"))
                say("/branch " + "b" * 300)  # git cannot make a ref file of that name
                await tg.wait_for(lambda t: _has(t, ALICE, "Git said:"))
                refusals = tg.sent_texts(ALICE)[-2:]
                say("/branch feature")
                await tg.wait_for(lambda t: _has(t, ALICE, "now works on branch feature"))
                say("work on the branch")
                await tg.wait_for(lambda t: _has(t, ALICE, "FAKE-REPLY: work on the branch"))
                (trees / "feature" / "draft.txt").write_text("not committed")
                say("/branch")
                await tg.wait_for(lambda t: _has(t, ALICE, "Branches of profile default"))
                listing = tg.sent_texts(ALICE)[-1]
                say("/branch rm feature")
                await tg.wait_for(lambda t: _has(t, ALICE, "has uncommitted changes"))
                (trees / "feature" / "draft.txt").unlink()
                say("/branch rm feature")
                await tg.wait_for(lambda t: len(_buttons(t, ALICE, "br:")) == 2)
                remove = _buttons(tg, ALICE, "br:")[0]["callback_data"]
                assert remove.endswith(":yes")
                tg.push_callback(
                    chat_id=ALICE,
                    user_id=ALICE,
                    message_id=_message_of(tg, ALICE, remove),
                    data=remove,
                )
                await tg.wait_for(lambda t: _has(t, ALICE, "Removed the worktree of feature"))
                say("back in the repository")
                await tg.wait_for(lambda t: _has(t, ALICE, "FAKE-REPLY: back in the repository"))
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    assert refusals[0] == (
        "“main” is the branch the repository itself (work) has checked out, so it needs no "
        "worktree: /branch off works there."
    )
    assert str(tmp_path) not in refusals[1]  # git's paths, shortened to their last part
    assert len(refusals[1]) <= len("Git said: ") + 300
    assert "• feature: dirty (here)" in listing
    assert "◦ main (the repository itself): clean" in listing
    assert str(tmp_path) not in listing
    calls = _codex_calls(fake)
    assert [call["cwd"] for call in calls] == [str(trees / "feature"), str(tmp_path / "work")]
    assert not (trees / "feature").exists()


async def test_a_button_of_someone_elses_request_says_whose_it_is(tmp_path: Path) -> None:
    """In a group, Bob's press on the Cancel of Alice's request is answered with whose it is,
    and stops nothing; Alice's own press cancels it. (Each user's session knows only its own
    buttons: before, Bob was told "That request is no longer running.")"""
    fake = FakeCodex(tmp_path / "codex")
    fake.rule("sleepy", delay=60)
    with trio.fail_after(CEILING):
        async with open_fake_telegram(TOKEN) as tg:
            config = write_config(tmp_path, tg.base_url, fake)
            text = config.read_text().replace(
                f"allowed_users = [{ALICE}]", f"allowed_users = [{ALICE}, {BOB}]"
            )
            config.write_text(text)
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=GROUP, user_id=ALICE, text="sleepy job")
                await tg.wait_for(lambda t: len(_buttons(t, GROUP, "")) == 1)
                [cancel] = _buttons(tg, GROUP, "")
                live = _message_of(tg, GROUP, cancel["callback_data"])
                tg.push_callback(
                    chat_id=GROUP, user_id=BOB, message_id=live, data=cancel["callback_data"]
                )
                await tg.wait_for(lambda t: bool(t.calls_of("answerCallbackQuery")))
                [answer] = tg.calls_of("answerCallbackQuery")
                assert answer.params["text"] == (
                    f"That button is for user{ALICE}; only they can use it."
                )
                tg.push_callback(
                    chat_id=GROUP, user_id=ALICE, message_id=live, data=cancel["callback_data"]
                )
                await tg.wait_for(lambda t: _has(t, GROUP, "Cancelled"))
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
