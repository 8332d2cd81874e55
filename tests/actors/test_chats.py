"""Router + chat actors + the real worker pool on in-memory Codex processes, in virtual time.

The sender is replaced by a collector of `SenderMsg`; everything else is the real thing.
"""

from __future__ import annotations

import itertools
import random
import re
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import msgspec
import pytest
import trio
import trio.testing

from actors import chat_files, chat_settle, chat_texts, router
from actors.chat_commands import NOTHING_OF_YOURS
from actors.worker_pool import WORKER_COOLDOWN, open_worker_pool
from orchestrator.codex_runs import ApprovalAsk, CodexProgress, CommandStarted, PatchApplied
from orchestrator.config import Config, Profile, RolePrompts, SessionsConfig, TelegramConfig
from orchestrator.messages import (
    AnswerCallback,
    Button,
    CloseLive,
    InboundCallback,
    InboundMessage,
    RepliedTo,
    RouterMsg,
    SenderMsg,
    SendReply,
    SessionKey,
    TraceRecord,
    UpdateLive,
)
from orchestrator.rendering import render_reply
from orchestrator.session_store import SessionState, SessionStore
from orchestrator.words import plural
from tests.fakes.codex_process import FakeProcesses

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from actors.chat import Chat
    from actors.telegram_outbox import Outbox
    from orchestrator.ports import GitWorktrees, TelegramFiles

ALICE, BOB, STRANGER = 1, 2, 666
CEILING = 7200


_UPDATE_IDS = itertools.count(1)
"""Update (and message) ids of every bot in the session: a chat skips an id it has on record
(a redelivery after a kill), so a restarted bot must not see its predecessor's ids again."""


class Bot:
    def __init__(self, tmp_path: Path, fakes: FakeProcesses, config: Config) -> None:
        self.tmp_path = tmp_path
        self.fakes = fakes
        self.config = config
        self.store = SessionStore(tmp_path / "sessions")
        self.sent: list[SenderMsg] = []
        self.on_sent: Callable[[SenderMsg], None] | None = None
        """Called with each message the sender receives, as it arrives (a user's reflex)."""
        self.traces: list[TraceRecord] = []
        self.stats = router.RouterStatistics()
        self._changed = trio.Event()
        self._ids = _UPDATE_IDS  # Telegram's update ids only grow, across restarts too
        self.inbox: trio.MemorySendChannel[RouterMsg] | None = None

    # -------------------------------------------------------------- driving

    async def say(self, user: int, text: str | None, *, chat: int | None = None, **kw) -> int:
        """Send `text` as `user` (in `chat`, a group when negative); its message id."""
        command = None
        args = ""
        if text is not None and text.startswith("/"):
            head, _, args = text[1:].partition(" ")
            command = head.lower()
        assert self.inbox is not None
        await self.inbox.send(
            InboundMessage(
                update_id=next(self._ids),
                chat_id=chat if chat is not None else user,
                chat_type="private" if (chat is None or chat > 0) else "supergroup",
                message_id=(message_id := next(self._ids)),
                user_id=user,
                text=text,
                command=command,
                command_args=args.strip(),
                **kw,
            )
        )
        return message_id

    async def press(
        self, user: int, data: str, *, chat: int | None = None, keyboard: tuple[str, ...] = ()
    ) -> str:
        """Press `data` on message 1, which shows the buttons of `keyboard` (() as if
        Telegram gave no buttons with it)."""
        query_id = f"q{next(self._ids)}"
        assert self.inbox is not None
        await self.inbox.send(
            InboundCallback(
                update_id=next(self._ids),
                callback_query_id=query_id,
                chat_id=chat if chat is not None else user,
                chat_type="private",
                user_id=user,
                message_id=1,
                data=data,
                keyboard=keyboard,
            )
        )
        return query_id

    # -------------------------------------------------------------- observing

    def replies(self, chat: int) -> list[str]:
        return [m.markdown for m in self.sent if isinstance(m, SendReply) and m.chat_id == chat]

    def closed(self, chat: int) -> list[str]:
        """The final texts progress and approval messages were given."""
        return [
            m.final_text
            for m in self.sent
            if isinstance(m, CloseLive) and m.chat_id == chat and m.final_text
        ]

    async def wait_told(self, chat: int, fragment: str, count: int = 1) -> None:
        """Wait for `fragment` in a message or in a progress message's final text."""
        await self.wait(
            lambda: sum(fragment in t for t in self.replies(chat) + self.closed(chat)) >= count
        )

    def callback_answer(self, query_id: str) -> str | None:
        for m in self.sent:
            if isinstance(m, AnswerCallback) and m.callback_query_id == query_id:
                return m.text
        return None

    def buttons(self, chat: int, prefix: str) -> list[Button]:
        found: list[Button] = []
        for m in self.sent:
            if isinstance(m, UpdateLive) and m.chat_id == chat:
                found.extend(
                    b for row in m.keyboard for b in row if b.callback_data.startswith(prefix)
                )
        return found

    async def wait(self, predicate: Callable[[], bool]) -> None:
        with trio.fail_after(CEILING):
            while not predicate():
                # Most conditions follow a message to the sender; the rest (counters) are
                # re-checked once the system is idle or a virtual second has passed.
                with trio.move_on_after(1):
                    await self._changed.wait()

    async def wait_reply(self, chat: int, fragment: str, count: int = 1) -> None:
        await self.wait(lambda: sum(fragment in r for r in self.replies(chat)) >= count)

    async def collect(self, receive: trio.MemoryReceiveChannel[SenderMsg]) -> None:
        async for message in receive:
            self.sent.append(message)
            if self.on_sent is not None:
                self.on_sent(message)
            self._changed.set()
            self._changed = trio.Event()


def make_config(tmp_path: Path, **sessions) -> Config:
    work = tmp_path / "work"
    other = tmp_path / "other"
    work.mkdir(exist_ok=True)
    other.mkdir(exist_ok=True)
    return Config(
        state_dir=str(tmp_path),
        telegram=TelegramConfig(allowed_users=(ALICE, BOB)),
        sessions=msgspec.structs.replace(SessionsConfig(), **sessions),
        profiles={
            "default": Profile(working_directory=str(work), default_mode="single"),
            "other": Profile(
                working_directory=str(other), default_mode="plan", sandbox="read-only"
            ),
        },
    )


@asynccontextmanager
async def running_bot(
    tmp_path: Path,
    fakes: FakeProcesses | None = None,
    config: Config | None = None,
    files: TelegramFiles | None = None,
    git: GitWorktrees | None = None,
    outbox: Outbox | None = None,
    secrets: tuple[str, ...] = (),
    **sessions,
) -> AsyncIterator[Bot]:
    fakes = fakes or FakeProcesses()
    bot = Bot(tmp_path, fakes, config or make_config(tmp_path, **sessions))
    sender_send, sender_receive = trio.open_memory_channel[SenderMsg](1000)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(bot.collect, sender_receive)
        async with open_worker_pool(
            fakes.factory,
            size=2,
            affinity_wait=30,
            stall_timeout=300,
            request_timeout=1800,
            ping_interval=30,
            recycle_rss_mb=0,
            recycle_threads=100,
            rng=random.Random(0),
            trace=bot.traces.append,
        ) as pool:
            inbox_send, inbox_receive = trio.open_memory_channel[RouterMsg](16)
            bot.inbox = inbox_send
            async with trio.open_nursery() as front:
                await front.start(
                    lambda task_status: router.run(
                        inbox_receive,
                        sender=sender_send,
                        pool=pool,
                        store=bot.store,
                        config=bot.config,
                        trace=bot.traces.append,
                        drain_grace=60,
                        statistics=bot.stats,
                        files=files,
                        git=git,
                        outbox=outbox,
                        secrets=secrets,
                        task_status=task_status,
                    )
                )
                try:
                    yield bot
                finally:
                    inbox_send.close()
        nursery.cancel_scope.cancel()


async def test_two_users_run_in_parallel_with_separate_sessions(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fakes = FakeProcesses()
    fakes.rule("alice", reply="for alice", delay=10)
    fakes.rule("bob", reply="for bob", delay=10)
    async with running_bot(tmp_path, fakes) as bot:
        await bot.say(ALICE, "hello from alice")
        await bot.say(BOB, "hello from bob")
        await bot.wait_reply(ALICE, "for alice")
        await bot.wait_reply(BOB, "for bob")
        assert trio.current_time() < 15  # both ran at once (10 s each)
    alice = (await bot.store.load(SessionKey(ALICE, ALICE))).state
    bob = (await bot.store.load(SessionKey(BOB, BOB))).state
    assert alice is not None
    assert bob is not None
    assert alice.developer_thread_id != bob.developer_thread_id
    assert alice.counters.runs == 1


async def test_the_bots_own_token_in_a_prompt_never_reaches_codex(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Pasted by mistake: Codex gets [REDACTED] and the user is told to revoke it. Another
    bot's token may be the work itself, and goes through."""
    ours = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    theirs = "987654321:Qw3rTy-Uiop_AsdfGhjkLzxcVbnm1234567"
    async with running_bot(tmp_path, secrets=(ours,)) as bot:
        await bot.say(ALICE, f"set TOKEN={ours} and call getMe with {theirs}")
        await bot.wait_reply(ALICE, "Your message held this bot's token")
        await bot.wait_reply(ALICE, "FAKE: ")
        await bot.say(ALICE, f"only the second half: {ours.split(':')[1]}")
        await bot.wait_reply(ALICE, "Your message held this bot's token", count=2)
    prompts = [job.prompt for p in bot.fakes.started for job in p.calls]
    assert prompts[0] == f"set TOKEN=[REDACTED] and call getMe with {theirs}"
    assert prompts[1] == "only the second half: [REDACTED]"
    assert not any(ours.split(":")[1][:10] in prompt for prompt in prompts)


async def test_conversation_continues_on_its_thread_until_new(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_bot(tmp_path) as bot:
        await bot.say(ALICE, "first")
        await bot.wait_reply(ALICE, "FAKE: first")
        await bot.say(ALICE, "second")
        await bot.wait_reply(ALICE, "FAKE: second")
        calls = [job for p in bot.fakes.started for job in p.calls]
        assert calls[1].thread_id is not None
        await bot.say(ALICE, "/cancel")  # nothing runs: what the thread left running stops
        await bot.wait_reply(ALICE, "Nothing is running")
        await bot.say(ALICE, "/new")
        await bot.wait_reply(ALICE, "new conversation")
        # What the forgotten thread left running is stopped (app-server background commands).
        released = [thread for p in bot.fakes.started for thread in p.released]
        assert released == [calls[1].thread_id] * 2
        await bot.say(ALICE, "third")
        await bot.wait_reply(ALICE, "FAKE: third")
        calls = [job for p in bot.fakes.started for job in p.calls]
        assert calls[-1].thread_id is None


async def test_a_command_sent_the_moment_the_answer_arrives_is_not_told_a_request_runs(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user sends /new as soon as the answer is in Telegram, before the chat recorded the
    request's end (a slow disk keeps that moment open): for them nothing runs, so /new is
    carried out, not refused."""
    real_save = SessionStore.save

    async def slow_save(
        store: SessionStore, key: SessionKey, state: SessionState, *, durable: bool = True
    ) -> None:
        await trio.sleep(0.5)
        await real_save(store, key, state, durable=durable)

    monkeypatch.setattr(SessionStore, "save", slow_save)
    async with running_bot(tmp_path) as bot:

        def reflex(message: SenderMsg) -> None:
            if isinstance(message, SendReply) and "FAKE: first" in message.markdown:
                assert bot.inbox is not None
                new = InboundMessage(
                    update_id=900,
                    chat_id=ALICE,
                    chat_type="private",
                    message_id=900,
                    user_id=ALICE,
                    text="/new",
                    command="new",
                )
                bot.inbox.send_nowait(new)

        bot.on_sent = reflex
        await bot.say(ALICE, "first")
        await bot.wait_reply(ALICE, "new conversation")
    assert not any("is running" in reply for reply in bot.replies(ALICE))


async def test_a_lone_message_starts_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_bot(tmp_path) as bot:
        await bot.wait(lambda: len(bot.fakes.started) == 2)
        sent_at = trio.current_time()
        await bot.say(ALICE, "short question")
        await bot.wait(lambda: any(p.calls for p in bot.fakes.started))
        assert trio.current_time() - sent_at < 0.01  # no batching window before Codex


async def test_an_answer_that_ends_inside_a_code_block_keeps_the_bot_s_lines_out_of_it(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Codex's answer ends in a fence it never closed: the result closes it, so the
    ``codex resume`` line under it is not shown as code."""
    fakes = FakeProcesses()
    fakes.rule("show", reply="Run this:\n```sh\nmake test\n")
    async with running_bot(tmp_path, fakes) as bot:
        await bot.say(ALICE, "/mode single")
        await bot.say(ALICE, "show me")
        await bot.wait_reply(ALICE, "Run this:")
    (result,) = [m.markdown for m in bot.sent if isinstance(m, SendReply) and "make" in m.markdown]
    assert result.startswith("Run this:\n```sh\nmake test\n```\n\n🧵 `codex resume ")
    html = render_reply(result, max_chunks=5).chunks[-1]
    assert html.split("</pre>")[-1].startswith("\n\n🧵 <code>codex resume ")


async def test_a_reply_to_a_long_answer_starts_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """What a reply quotes is not the user's paste: a short reply under a 4,096-character
    answer does not wait for a rest that never comes."""
    async with running_bot(tmp_path, batch_window=1.0) as bot:
        await bot.wait(lambda: len(bot.fakes.started) == 2)
        sent_at = trio.current_time()
        await bot.say(ALICE, "make it shorter", replied_to=RepliedTo(text="a" * 4096, by="bot"))
        await bot.wait(lambda: any(p.calls for p in bot.fakes.started))
        assert trio.current_time() - sent_at < 0.01
        [job] = [job for p in bot.fakes.started for job in p.calls]
        assert job.prompt.endswith("a" * 4096 + "\n```\n\nmake it shorter")


async def test_a_reply_with_no_words_of_its_own_asks_for_them(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A bare "@bot" under someone's message in a group: the quoted message is never taken
    for the user's request, and "no text" would be false."""
    async with running_bot(tmp_path) as bot:
        await bot.wait(lambda: len(bot.fakes.started) == 2)
        replied = RepliedTo(text="rm -rf / please", by="other", author="Bob")
        await bot.say(ALICE, "", chat=-100, replied_to=replied)
        await bot.wait_reply(-100, "Say what Codex should do with that message")
    assert not any(p.calls for p in bot.fakes.started)
    assert bot.replies(-100) == [chat_texts.REPLY_WITHOUT_WORDS]


async def test_a_bare_mention_asks_for_the_request(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A lone "@bot" in a group reaches the chat as an empty text (the mention is taken
    out): it asks for the words instead of saying the message had no text."""
    async with running_bot(tmp_path) as bot:
        await bot.wait(lambda: len(bot.fakes.started) == 2)
        await bot.say(ALICE, "", chat=-100)
        await bot.wait_reply(-100, "Say what Codex should do in the same message")
    assert not any(p.calls for p in bot.fakes.started)
    assert bot.replies(-100) == [chat_texts.MENTION_WITHOUT_WORDS]


@pytest.mark.parametrize(
    "text",
    ["\u200b", " \u200b\u200d ", "\u3164", "\u2800\u2800", "\u202e\u2066", "\ufeff"],
)
async def test_a_text_drawn_as_nothing_is_answered_and_never_run(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, text: str
) -> None:
    """A zero-width space, a Hangul filler or a blank Braille pattern (what people type to
    send an "empty" message) is not a prompt Codex runs; a private chat is not told about
    mentions, and a reply there is asked for words without one."""
    async with running_bot(tmp_path) as bot:
        await bot.wait(lambda: len(bot.fakes.started) == 2)
        await bot.say(ALICE, text)
        await bot.wait_reply(ALICE, "shows no text")
        await bot.say(ALICE, text, replied_to=RepliedTo(text="an earlier answer", by="bot"))
        await bot.wait_reply(ALICE, "Say what Codex should do with that message")
        await bot.say(ALICE, f"{text}fix it{text}")  # visible words around it run
        await bot.wait_reply(ALICE, "fix it")
    assert bot.replies(ALICE)[:2] == [
        chat_texts.NO_VISIBLE_WORDS,
        chat_texts.REPLY_WITHOUT_WORDS_PRIVATE,
    ]
    assert [job.prompt for p in bot.fakes.started for job in p.calls] == [f"{text}fix it{text}"]


async def test_the_parts_of_a_long_paste_run_as_one_prompt(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    part = "x" * 4090
    async with running_bot(tmp_path, batch_window=1.0) as bot:
        await bot.say(ALICE, part)
        await trio.sleep(0.8)
        await bot.say(ALICE, "y" * 4096)  # a second part at the limit waits again
        await trio.sleep(0.8)
        assert not any(p.calls for p in bot.fakes.started)
        await bot.say(ALICE, "the end of the paste")  # shorter: the last part, run at once
        await bot.wait(lambda: any(p.calls for p in bot.fakes.started))
        prompts = [job.prompt for p in bot.fakes.started for job in p.calls]
        assert prompts == [f"{part}\n\n{'y' * 4096}\n\nthe end of the paste"]
        # A lone part whose rest never comes runs after the window.
        await bot.wait_reply(ALICE, "FAKE: ")
        await bot.say(ALICE, "z" * 4096)
        await trio.sleep(0.9)
        assert len([job for p in bot.fakes.started for job in p.calls]) == 1
        await bot.wait(lambda: len([job for p in bot.fakes.started for job in p.calls]) == 2)


async def test_messages_sent_while_a_request_runs_run_together_next(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fakes = FakeProcesses()
    fakes.rule("long", delay=60)
    async with running_bot(tmp_path, fakes) as bot:
        await bot.say(ALICE, "a long task")
        await bot.wait(lambda: any(p.calls for p in bot.fakes.started))
        await bot.say(ALICE, "next please")
        await bot.say(ALICE, "and another")
        await bot.wait_reply(ALICE, "FAKE: next please\n\nand another")
        queued = [r for r in bot.replies(ALICE) if r.startswith("Queued")]
        assert queued == [chat_texts.queued(1)]
        assert "runs together" in queued[0]
        prompts = [job.prompt for p in bot.fakes.started for job in p.calls]
        assert prompts == ["a long task", "next please\n\nand another"]
        assert any(t.event == "queued" for t in bot.traces)


async def test_queue_limit(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    fakes = FakeProcesses()
    fakes.rule("block", hang=True)
    async with running_bot(tmp_path, fakes, queue_limit=2) as bot:
        await bot.say(ALICE, "block")
        await bot.wait(lambda: any(p.calls for p in bot.fakes.started))
        for n in range(6):
            await bot.say(ALICE, f"more {n}")
        await bot.wait_reply(ALICE, chat_texts.queue_full(2))
        await bot.say(ALICE, "/cancel")
        await bot.wait_told(ALICE, "Cancelled")
        await bot.wait_reply(ALICE, "FAKE: more 0\n\nmore 1")
        # four refused, one notice: its words cover the rest
        assert bot.replies(ALICE).count(chat_texts.queue_full(2)) == 1
        # a new queued prompt gets its own notice when it fills up
        await bot.say(ALICE, "block")
        await bot.wait(lambda: sum(len(p.calls) for p in bot.fakes.started) == 3)
        for n in range(3):
            await bot.say(ALICE, f"again {n}")
        await bot.wait(lambda: bot.replies(ALICE).count(chat_texts.queue_full(2)) == 2)


async def test_stranger_gets_one_refusal_per_hour_and_nothing_else(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_bot(tmp_path) as bot:
        for text in ("hi", "/start", "please"):
            await bot.say(STRANGER, text)
        await bot.wait(lambda: bot.stats.refused == 3)
        assert bot.replies(STRANGER) == [
            f"This bot is private. Your Telegram user id is {STRANGER}: send it to the bot's "
            "owner if you should have access."
        ]
        await trio.sleep(router.REFUSAL_INTERVAL)
        await bot.say(STRANGER, "again")
        await bot.wait_reply(STRANGER, "private", count=2)
        query = await bot.press(STRANGER, "ap:forged:a")
        await bot.wait(lambda: bot.callback_answer(query) is not None)
    assert not any(p.calls for p in bot.fakes.started)
    assert not (tmp_path / "sessions").exists() or not list((tmp_path / "sessions").iterdir())
    refusals = [t for t in bot.traces if t.event == "refusal"]
    assert len(refusals) == 5
    assert [t.detail for t in refusals][:3] == [
        "refusal sent",
        "refusal suppressed",
        "refusal suppressed",
    ]


async def test_bots_and_anonymous_senders_are_ignored(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_bot(tmp_path) as bot:
        assert bot.inbox is not None
        await bot.inbox.send(
            InboundMessage(
                update_id=1,
                chat_id=-5,
                chat_type="supergroup",
                message_id=1,
                user_id=None,
                text="anon",
            )
        )
        await bot.inbox.send(
            InboundMessage(
                update_id=2,
                chat_id=5,
                chat_type="private",
                message_id=2,
                user_id=ALICE,
                user_is_bot=True,
                text="bot",
            )
        )
        await bot.wait(lambda: bot.stats.ignored == 2)
    assert bot.sent == []


async def test_an_anonymous_admins_command_is_told_how_to_be_seen(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """No one to check against the allow-list: nothing runs, and the command (not the
    group's talk) is answered once per refusal interval with what to change."""

    def anonymous(update_id: int, text: str, command: str | None) -> InboundMessage:
        return InboundMessage(
            update_id=update_id,
            chat_id=-5,
            chat_type="supergroup",
            message_id=update_id,
            user_id=None,
            text=text,
            command=command,
        )

    async with running_bot(tmp_path) as bot:
        assert bot.inbox is not None
        await bot.inbox.send(anonymous(1, "fix the build", None))
        await bot.inbox.send(anonymous(2, "/status", "status"))
        await bot.inbox.send(anonymous(3, "/new", "new"))
        await bot.wait(lambda: bot.stats.ignored == 3)
        await trio.sleep(router.REFUSAL_INTERVAL)
        await bot.inbox.send(anonymous(4, "/status", "status"))
        await bot.wait(lambda: len(bot.sent) == 2)
    answers = [m for m in bot.sent if isinstance(m, SendReply)]
    assert [(m.chat_id, m.reply_to_message_id) for m in answers] == [(-5, 2), (-5, 4)]
    assert answers[0].markdown == chat_texts.ANONYMOUS_SENDER
    assert "Turn off “Remain anonymous”" in chat_texts.ANONYMOUS_SENDER
    assert not any(p.calls for p in bot.fakes.started)


def test_the_help_promises_app_server_features_only_on_app_server() -> None:
    mcp = chat_texts.help_text(app_server=False)
    assert "Codex sees the pictures" not in mcp
    assert "Photos can't be passed to Codex on this bot's backend (MCP)" in mcp
    assert "“Queued” notice" not in mcp
    assert "rate limits" not in mcp
    assert "this chat (needs the app-server backend)" in mcp  # /model and /effort
    app_server = chat_texts.help_text(app_server=True)
    assert "Codex sees the pictures" in app_server
    assert "“Queued” notice adds them to the running request" in app_server
    assert "rate limits" in app_server
    assert "needs the app-server backend" not in app_server
    for name, _ in chat_texts.BOT_COMMANDS:
        assert f"/{name}" in mcp
        assert f"/{name}" in app_server
    # The menu marks the same commands on MCP, and only those.
    menu = dict(chat_texts.menu_commands(app_server=False))
    marked = {name for name, about in menu.items() if "app-server backend only" in about}
    assert marked == {"model", "effort"}
    assert chat_texts.menu_commands(app_server=True) == chat_texts.BOT_COMMANDS
    assert all(len(about) <= 256 for about in menu.values())  # Telegram's limit


async def test_every_command(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with running_bot(tmp_path) as bot:
        await bot.say(ALICE, "/start")
        await bot.wait_reply(ALICE, "/profile list|NAME")
        help_text = bot.replies(ALICE)[-1]
        for name, _ in chat_texts.BOT_COMMANDS:
            assert f"/{name}" in help_text
        await bot.say(ALICE, "/mode")
        await bot.wait_reply(ALICE, "Mode is single")
        await bot.say(ALICE, "/mode plan")
        await bot.wait_reply(ALICE, "Mode set to plan")
        await bot.say(ALICE, "/mode sideways")
        await bot.wait_reply(
            ALICE,
            "“sideways” is not a mode. Use /mode single (one developer run) or /mode plan "
            "(plan, develop, review). Mode is still plan.",
        )
        assert plural(1, "queued message") == "1 queued message"
        assert plural(2, "queued message") == "2 queued messages"
        await bot.say(ALICE, "/status")
        await bot.wait_reply(ALICE, "State: idle")
        status = bot.replies(ALICE)[-1]
        assert "Mode: plan" in status
        assert "Profile: default" in status
        assert str(tmp_path / "work") in status
        assert "Queue: 0" in status
        assert "Codex session: none, the next request starts one" in status
        assert "Codex workers: 2 idle" in status
        await bot.say(ALICE, "/profile list")
        await bot.wait_reply(ALICE, "Profiles:")
        assert "default" in bot.replies(ALICE)[-1]
        assert "(active)" in bot.replies(ALICE)[-1]
        await bot.say(ALICE, "/profile other")
        await bot.wait_reply(ALICE, "Switched to profile other")
        await bot.say(ALICE, "/profile nope")
        await bot.wait_reply(ALICE, "No profile named “nope”")
        # What the user typed comes back on one line, cut, as typed, never reversing the rest.
        await bot.say(ALICE, "/profile \u202eevil " + "y" * 4000)
        await bot.wait_reply(ALICE, f"No profile named “evil {'y' * 54}…”. Profiles: default")
        await bot.say(ALICE, "/mode Single extra\n/status")
        await bot.wait_reply(ALICE, "“Single extra /status” is not a mode.")
        await bot.say(ALICE, "/cancel")
        await bot.wait_reply(ALICE, "Nothing is running")
        await bot.say(ALICE, "/new")
        await bot.wait_reply(ALICE, "new conversation")
        await bot.say(ALICE, "/frobnicate")
        await bot.wait_reply(ALICE, "Unknown command /frobnicate")
        await bot.say(ALICE, "/")
        await bot.wait_reply(ALICE, "A “/” alone is not a command. Commands: /start")
        await bot.say(ALICE, "edited", edited=True)
        await bot.wait_reply(ALICE, "Edits don't change")
        await bot.say(ALICE, "/status", edited=True)
        await bot.wait_reply(
            ALICE,
            "Edits are not read, so the edited command was not run: send /status again as a "
            "new message.",
        )
        assert bot.inbox is not None
        await bot.inbox.send(
            InboundMessage(
                update_id=next(_UPDATE_IDS),  # ids only grow: a fixed one may be seen already
                chat_id=ALICE,
                chat_type="private",
                message_id=9,
                user_id=ALICE,
                text=None,
                content_kind="sticker",
            )
        )
        await bot.wait_reply(ALICE, "You sent a sticker, but I can only read text, photos and")
    state = (await bot.store.load(SessionKey(ALICE, ALICE))).state
    assert state is not None
    assert (state.profile, state.mode) == ("other", "plan")
    commands = [t.command for t in bot.traces if t.event == "command"]
    assert {"start", "mode", "status", "profile", "cancel", "new"} <= set(commands)


async def test_status_says_a_request_waits_for_a_free_worker(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Both workers busy with Alice's requests (her private chat and a group): Bob's has not
    started on Codex yet, and /status says so instead of "Working on your request" alone."""
    fakes = FakeProcesses()
    fakes.rule("slow", delay=100)
    async with running_bot(tmp_path, fakes) as bot:
        await bot.say(ALICE, "slow thing")
        await bot.say(ALICE, "slow thing", chat=-100)
        await bot.wait(lambda: sum(len(p.calls) for p in bot.fakes.started) == 2)
        await bot.say(BOB, "slow too")
        await trio.sleep(5)
        await bot.say(BOB, "/status")
        await bot.wait_reply(BOB, "State: Working on your request, waiting for a free Codex worker")
        await bot.say(ALICE, "/status")
        await bot.wait_reply(ALICE, "State: Working on your request, running for")
    assert "Codex workers: 2 busy; 1 request waiting" in bot.replies(BOB)[-1]
    assert "waiting for a free Codex worker" not in bot.replies(ALICE)[-1]


async def test_cancel_in_a_group_with_only_anothers_request_running_says_whose_it_is(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Bob sees Alice's request run in the group: "Nothing is running." would read as a
    fault; he is told it is hers to cancel, and it runs on."""
    fakes = FakeProcesses()
    fakes.rule("slow", reply="done slowly", delay=100)
    async with running_bot(tmp_path, fakes) as bot:
        await bot.say(ALICE, "slow thing", chat=-100)
        await bot.wait(lambda: sum(len(p.calls) for p in bot.fakes.started) == 1)
        await bot.say(BOB, "/cancel", chat=-100)
        await bot.wait_reply(-100, "Nothing of yours is running.")
        await bot.wait_reply(-100, "done slowly")
        await bot.say(ALICE, "/cancel")
        await bot.wait_reply(ALICE, "Nothing is running.")  # a private chat: plainly so
    assert NOTHING_OF_YOURS in bot.replies(-100)


async def test_status_while_running_and_profile_switch_refused(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fakes = FakeProcesses()
    fakes.rule("slow", delay=100)
    async with running_bot(tmp_path, fakes) as bot:
        await bot.say(ALICE, "slow thing")
        await bot.wait(lambda: any(p.calls for p in bot.fakes.started))
        await trio.sleep(42)
        await bot.say(ALICE, "/status")
        await bot.wait_reply(ALICE, "State: Working on your request, running for 0:42")
        assert "Codex workers: 1 idle, 1 busy" in bot.replies(ALICE)[-1]
        assert "Codex session: none, the running request starts one" in bot.replies(ALICE)[-1]
        await bot.say(ALICE, "/profile other")
        await bot.wait_reply(ALICE, "Can't switch profiles while a request runs")
        await bot.wait_reply(ALICE, "FAKE: slow thing")
        await bot.say(ALICE, "/status")
        await bot.wait_reply(ALICE, "Last run tokens", count=1)
        # The session to continue at the desk, as the result's last line names it.
        [thread] = re.findall(r"codex resume (\S+)`", bot.replies(ALICE)[-2])
        assert f"Codex session: codex resume {thread}\n" in bot.replies(ALICE)[-1]


async def test_cancel_by_command_and_button(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fakes = FakeProcesses()
    fakes.rule("forever", hang=True)
    async with running_bot(tmp_path, fakes) as bot:
        await bot.say(ALICE, "forever job")
        await bot.wait(lambda: bool(bot.buttons(ALICE, "cx:")))
        started = trio.current_time()
        await bot.say(ALICE, "/cancel")
        await bot.wait_told(ALICE, "Cancelled")
        assert trio.current_time() - started < 5
        await bot.say(ALICE, "forever again")
        await bot.wait(lambda: len({b.callback_data for b in bot.buttons(ALICE, "cx:")}) == 2)
        button = bot.buttons(ALICE, "cx:")[-1]
        query = await bot.press(ALICE, button.callback_data)
        await bot.wait_told(ALICE, "Cancelled", count=2)
        assert bot.callback_answer(query) == "Cancelling…"
        stale = await bot.press(ALICE, button.callback_data)
        await bot.wait(lambda: bot.callback_answer(stale) is not None)
        assert "no longer running" in (bot.callback_answer(stale) or "")
    assert sum(p.killed for p in bot.fakes.started) == 2
    assert [t.detail for t in bot.traces if t.event == "cancel"] == ["/cancel", "button"]
    # The cancelled request is in the next one's recap: "go on" has something to go on.
    _first, second = [job for p in bot.fakes.started for job in p.calls]
    assert "User asked: forever job" in second.context_preamble
    assert chat_settle.CANCELLED_SUMMARY in second.context_preamble


@pytest.mark.parametrize(
    ("phase", "rule"),
    [
        ("Deciding how to handle your request", "Decide how to handle"),
        ("Writing a plan", "Write the numbered plan"),
        ("Carrying out the plan (round 1 of 3)", "Carry out this request"),
        ("Reviewing the work (round 1 of 3)", "Review the developer"),
    ],
)
async def test_cancel_in_each_plan_phase(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, phase: str, rule: str
) -> None:
    fakes = plan_fakes()
    fakes.rule(rule, hang=True)
    async with running_bot(tmp_path, fakes) as bot:
        await bot.say(ALICE, "/mode plan")
        await bot.say(ALICE, "build the feature")
        await bot.wait(
            lambda: any(rule in job.prompt for p in bot.fakes.started for job in p.calls)
        )
        await trio.sleep(1)
        started = trio.current_time()
        await bot.say(ALICE, "/cancel")
        await bot.wait_told(ALICE, "Cancelled")
        assert trio.current_time() - started < 5
    phases = [
        m.text for m in bot.sent if isinstance(m, UpdateLive) and m.slot.startswith("request-")
    ]
    assert any(phase in text for text in phases)
    ends = [t for t in bot.traces if t.event == "run_end"]
    assert ends[-1].outcome == "cancelled"


def plan_fakes() -> FakeProcesses:
    fakes = FakeProcesses()
    fakes.rule("Decide how to handle", reply='{"route": "plan", "reason": "several steps"}')
    fakes.rule("Write the numbered plan", reply="1. Write code\n2. Test it")
    fakes.rule("Carry out this request", reply="Implemented.\n\nFiles changed:\n- app.py")
    fakes.rule("worked on your feedback", reply='{"verdict": "approved", "feedback": "good"}')
    fakes.rule("Review the developer", reply='{"verdict": "changes", "feedback": "add tests"}')
    fakes.rule("reviewer asked for changes", reply="Added tests.\n\nFiles changed:\n- test_app.py")
    return fakes


async def test_plan_mode_end_to_end(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with running_bot(tmp_path, plan_fakes()) as bot:
        await bot.say(ALICE, "/mode plan")
        await bot.say(ALICE, "build the feature")
        await bot.wait_reply(ALICE, "approved by the reviewer in round 2")
        replies = bot.replies(ALICE)
        assert any(r.startswith("**Plan**") and "1. Write code" in r for r in replies)
        final = replies[-1]
        # The last report lists test_app.py itself; app.py came from round 1 (listed once).
        assert final.startswith(
            "Plan mode: approved by the reviewer in round 2 of 3.\n\nReviewer: good\n\n"
            "Changed too, not in the report below: app.py\n\n"
            "Developer's report (round 2):\nAdded tests.\n\nFiles changed:\n- test_app.py"
            "\n\n🧵 `codex resume "
        )
    roles = [(t.role, t.round) for t in bot.traces if t.event == "role"]
    assert roles == [
        ("selector", None),
        ("planner", None),
        ("developer", 1),
        ("reviewer", 1),
        ("developer", 2),
        ("reviewer", 2),
    ]
    read_only = [
        job.sandbox for p in bot.fakes.started for job in p.calls if "Decide" in job.prompt
    ]
    assert read_only == ["read-only"]


def deploy_needs_approval(*, started_first: bool = False) -> FakeProcesses:
    """Fakes where "deploy" asks to run ``make deploy`` and answers with the decision;
    `started_first`: the command is reported started before the question, as ``codex
    app-server`` does."""
    fakes = FakeProcesses()
    ask = ApprovalAsk(
        kind="exec",
        message="run?",
        command="make deploy",
        cwd="/w",
        reported_started=started_first,
    )
    events: list[CodexProgress] = [CommandStarted(command="make deploy")] if started_first else []
    fakes.rule("deploy", approval=ask, events=events)
    return fakes


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("a", "[approved]"), ("s", "[approved_for_session]"), ("d", "[denied]")],
)
async def test_approvals_by_button(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, choice: str, expected: str
) -> None:
    async with running_bot(tmp_path, deploy_needs_approval()) as bot:
        await bot.say(ALICE, "deploy it")
        await bot.wait(lambda: bool(bot.buttons(ALICE, "ap:")))
        prompt = next(
            m for m in bot.sent if isinstance(m, UpdateLive) and m.slot.startswith("approval-")
        )
        assert "make deploy" in prompt.text
        approve = next(
            b for b in bot.buttons(ALICE, "ap:") if b.callback_data.endswith(f":{choice}")
        )
        assert len(approve.callback_data.encode()) <= 64
        # Someone else in the chat, a forged token: both rejected, the request still waits.
        forged = await bot.press(ALICE, "ap:forged-token:a")
        other = await bot.press(BOB, approve.callback_data, chat=ALICE)
        await bot.wait(
            lambda: (
                bot.callback_answer(forged) is not None and bot.callback_answer(other) is not None
            )
        )
        assert "closed" in (bot.callback_answer(forged) or "")
        assert "closed" in (bot.callback_answer(other) or "")
        query = await bot.press(ALICE, approve.callback_data)
        await bot.wait_reply(ALICE, expected)
        assert bot.callback_answer(query) in ("Approved", "Denied")
        again = await bot.press(ALICE, approve.callback_data)
        await bot.wait(lambda: bot.callback_answer(again) is not None)
        assert "closed" in (bot.callback_answer(again) or "")
    closes = [m for m in bot.sent if isinstance(m, CloseLive) and m.slot.startswith("approval-")]
    assert closes
    assert "make deploy" in (closes[0].final_text or "")
    decisions = [t.outcome for t in bot.traces if t.event == "approval"]
    assert decisions == [{"a": "approved", "s": "approved_for_session", "d": "denied"}[choice]]


@pytest.mark.parametrize("started_first", [False, True], ids=["mcp", "app-server"])
@pytest.mark.parametrize("asked_after", [0, 30])
async def test_a_stop_does_not_wait_for_an_answer_no_one_can_give(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, asked_after: float, started_first: bool
) -> None:
    """Once the bot is stopping, no button press can reach a chat: a request that waits for
    an approval (asked before the stop, or during the drain) is interrupted at once, not at
    the end of the drain grace (60 s here), and keeps its prompt for after the restart. The
    command waiting for its answer never ran, also where Codex reported it started before it
    asked (app-server): the prompt runs again by itself."""
    fakes = deploy_needs_approval(started_first=started_first)
    fakes.rules[0].approval_after = asked_after
    async with running_bot(tmp_path, fakes) as bot:
        await bot.say(ALICE, "/mode single")
        await bot.say(ALICE, "deploy it")
        await bot.wait(lambda: any(p.calls for p in fakes.started))
        stopping = trio.current_time()
    assert trio.current_time() - stopping < asked_after + 5  # not the grace
    told = [*bot.closed(ALICE), *bot.replies(ALICE)]  # in the progress message once shown
    assert sum(text.startswith("⏹ Interrupted: the bot is stopping.") for text in told) == 1
    assert any("Not answered" in text and "make deploy" in text for text in bot.closed(ALICE))
    assert not any(t.event == "approval" and t.outcome == "approved" for t in bot.traces)
    state = (await bot.store.load(SessionKey(ALICE, ALICE))).state
    assert state is not None
    assert state.queue == ("deploy it",)  # Codex had not acted: it runs again after a restart
    assert state.counters.failures == 0


@pytest.mark.parametrize(("choice", "ran"), [("a", True), ("d", False)])
async def test_a_command_reported_before_its_question_ran_only_if_approved(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, choice: str, ran: bool
) -> None:
    """``codex app-server`` reports a command started, then asks: approved, it ran, and a
    stop later in the turn offers "Run again" rather than running it twice; denied, it never
    ran, and the prompt runs again by itself after the restart."""
    fakes = deploy_needs_approval(started_first=True)
    fakes.rules[0].delay = 600  # the turn goes on after the answer
    async with running_bot(tmp_path, fakes) as bot:
        await bot.say(ALICE, "/mode single")
        await bot.say(ALICE, "deploy it")
        await bot.wait(lambda: bool(bot.buttons(ALICE, "ap:")))
        button = next(b for b in bot.buttons(ALICE, "ap:") if b.callback_data.endswith(choice))
        await bot.press(ALICE, button.callback_data)
        await bot.wait(lambda: any(t.event == "approval" for t in bot.traces))
    state = (await bot.store.load(SessionKey(ALICE, ALICE))).state
    assert state is not None
    if ran:
        assert state.running is not None
        assert state.running.prompt == "deploy it"
        assert state.queue == ()
    else:
        assert state.running is None
        assert state.queue == ("deploy it",)


async def test_the_progress_message_says_when_codex_waits_for_the_user(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """While an approval question is open the request is not working but waiting for the
    user, and its progress message says so; once answered, it says it works again."""
    fakes = FakeProcesses()
    ask = ApprovalAsk(kind="exec", message="run?", command="make deploy", cwd="/w")
    fakes.rule("deploy", approval=ask, delay=60, reply="deployed")

    def live() -> list[str]:
        return [
            m.text
            for m in bot.sent
            if isinstance(m, UpdateLive) and not m.slot.startswith("approval-")
        ]

    async with running_bot(tmp_path, fakes) as bot:
        await bot.say(ALICE, "deploy it")
        await bot.wait(lambda: bool(bot.buttons(ALICE, "ap:")))
        await bot.wait(lambda: bool(live()))
        assert live()[-1].startswith("⏸ Waiting for your answer to Codex's question…")
        await bot.say(ALICE, "/status")
        await bot.wait_reply(ALICE, "State: Waiting for your answer to Codex's question, running")
        approve = next(b for b in bot.buttons(ALICE, "ap:") if b.callback_data.endswith(":a"))
        await bot.press(ALICE, approve.callback_data)
        await bot.wait(lambda: live()[-1].startswith("⏳ Working on your request…"))
        await bot.wait_reply(ALICE, "deployed")


async def test_a_cancel_takes_the_buttons_off_an_open_approval(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_bot(tmp_path, deploy_needs_approval()) as bot:
        await bot.say(ALICE, "deploy it")
        await bot.wait(lambda: bool(bot.buttons(ALICE, "ap:")))
        await bot.say(ALICE, "/cancel")
        await bot.wait_told(ALICE, "Cancelled")
        closes = [
            m for m in bot.sent if isinstance(m, CloseLive) and m.slot.startswith("approval-")
        ]
        assert [m.final_text for m in closes] == [
            "⏹ Not answered before the request ended: $ make deploy"
        ]
        stale = await bot.press(ALICE, bot.buttons(ALICE, "ap:")[0].callback_data)
        await bot.wait(lambda: bot.callback_answer(stale) is not None)
        assert "closed" in (bot.callback_answer(stale) or "")


async def test_unanswered_approval_is_denied(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fakes = FakeProcesses()
    fakes.rule("deploy", approval=ApprovalAsk(kind="patch", message="apply?", changes=("a.py",)))
    async with running_bot(tmp_path, fakes, approval_timeout=600) as bot:
        await bot.say(ALICE, "deploy it")
        await bot.wait_reply(ALICE, "[denied]")
        assert trio.current_time() >= 600
    assert [t.outcome for t in bot.traces if t.event == "approval"] == ["timeout"]


async def test_a_codex_crash_loop_is_explained_to_the_user_and_heals(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fakes = FakeProcesses()
    fakes.rule("boom", die=True)
    async with running_bot(tmp_path, fakes) as bot:
        fakes.fail_starts = 1000  # from now on no worker starts
        await bot.say(ALICE, "boom")
        await bot.wait_reply(ALICE, "❌ Codex failed while working on your request. The Codex")
        for process in fakes.started:
            process.die()  # the other worker goes too
        await trio.sleep(120)  # restarts back off, then each position gives up and rests
        await bot.say(ALICE, "/status")
        await bot.wait_reply(ALICE, "Codex workers: 2 dead")
        await bot.say(ALICE, "hello")
        await bot.wait_reply(ALICE, "❌ Codex could not start working on your request. No Codex")
        assert "scripted start failure" in bot.replies(ALICE)[-1]
        assert "codex-orchestrator doctor" in bot.replies(ALICE)[-1]
        fakes.fail_starts = 0
        await trio.sleep(WORKER_COOLDOWN)
        await bot.say(ALICE, "hello again")
        await bot.wait_reply(ALICE, "FAKE: hello again")


async def test_corrupted_session_file_is_recovered(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    sessions = tmp_path / "sessions"
    sessions.mkdir()
    (sessions / f"{ALICE}-{ALICE}.json").write_text("{broken")
    async with running_bot(tmp_path) as bot:
        await bot.say(ALICE, "hello")
        await bot.wait_reply(ALICE, "FAKE: hello")
        assert any("damaged" in r for r in bot.replies(ALICE))
    assert list(sessions.glob("*.corrupt-*"))
    assert any(t.event == "session_corrupt" for t in bot.traces)
    assert (await bot.store.load(SessionKey(ALICE, ALICE))).state is not None


async def test_restart_keeps_mode_profile_and_queue(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fakes = FakeProcesses()
    fakes.rule("slow", delay=500)
    async with running_bot(tmp_path, fakes) as bot:
        await bot.say(ALICE, "/profile other")
        await bot.say(ALICE, "/mode single")
        await bot.wait_reply(ALICE, "Mode set to single")
        await bot.say(ALICE, "slow one")
        await bot.wait(lambda: any(p.calls for p in bot.fakes.started))
        await bot.say(ALICE, "queued after restart")
        await bot.wait_reply(ALICE, "Queued")
    # The drain grace (60 s) ran out before the 500 s job: it is put back in the queue.
    assert any("Interrupted" in r for r in bot.closed(ALICE))
    state = (await SessionStore(tmp_path / "sessions").load(SessionKey(ALICE, ALICE))).state
    assert state is not None
    assert (state.profile, state.mode) == ("other", "single")
    assert state.queue == ("slow one", "queued after restart")
    # A new process: the queue resumes without a new message.
    fresh = FakeProcesses()
    async with running_bot(tmp_path, fresh) as bot:
        await bot.wait_reply(ALICE, "FAKE: queued after restart")
        assert bot.replies(ALICE)[0].startswith("FAKE: slow one\n\n🧵 `codex resume ")
        prompts = [job for p in fresh.started for job in p.calls]
        assert prompts[0].cwd == str(tmp_path / "other")


async def test_a_stop_after_codex_acted_offers_the_request_instead_of_running_it_again(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Past the drain grace, a request on which Codex already changed a file is not queued to
    run again by itself (it could do the same things twice): the next start offers it with
    "Run again", and it is counted once. A request Codex only read for (a plan-mode planner's
    commands run read-only) still runs again by itself."""
    fakes = FakeProcesses()
    patched = PatchApplied(files=(str(tmp_path / "work" / "app.py"),))
    fakes.rule("slow edit", delay=500, events=[CommandStarted(command="make"), patched])
    async with running_bot(tmp_path, fakes) as bot:
        await bot.say(ALICE, "/mode single")
        await bot.wait_reply(ALICE, "Mode set to single")
        await bot.say(ALICE, "slow edit")
        await bot.wait(lambda: any(p.calls for p in bot.fakes.started))
        await bot.say(ALICE, "queued after restart")
        await bot.wait_reply(ALICE, "Queued")
    assert bot.closed(ALICE) == [
        "⏹ Interrupted: the bot is stopping. Codex had already begun to work on it (it "
        "changed app.py), so it does not run again by itself: when the bot is back, a button "
        "offers to run it again."
    ]
    store = SessionStore(tmp_path / "sessions")
    state = (await store.load(SessionKey(ALICE, ALICE))).state
    assert state is not None
    assert state.queue == ("queued after restart",)
    assert state.running is not None
    assert (state.running.prompt, state.running.counted) == ("slow edit", True)
    assert (state.counters.runs, state.counters.cancels, state.counters.failures) == (1, 1, 0)
    fresh = FakeProcesses()
    async with running_bot(tmp_path, fresh) as bot:
        await bot.wait_reply(ALICE, "FAKE: queued after restart")
        [offer] = [m for m in bot.sent if isinstance(m, UpdateLive) and m.slot.startswith("rerun")]
        assert offer.text == chat_texts.interrupted_by_a_stop("slow edit")
        assert not [m for m in bot.sent if isinstance(m, CloseLive)]  # it was closed then
        await trio.sleep(10)
        assert [job.prompt for p in fresh.started for job in p.calls] == ["queued after restart"]
        [button] = [b for row in offer.keyboard for b in row]
        await bot.press(ALICE, button.callback_data)
        await bot.wait_reply(ALICE, "FAKE: slow edit")
    state = (await store.load(SessionKey(ALICE, ALICE))).state
    assert state is not None
    # Counted once, when it stopped (a kill, which tells nobody, counts it at the next start).
    assert (state.counters.runs, state.counters.cancels, state.counters.failures) == (3, 1, 0)
    assert not any(t.event == "run_end" and t.outcome == "failed" for t in bot.traces)


async def test_a_stop_while_codex_only_read_runs_the_request_again_by_itself(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fakes = FakeProcesses()
    fakes.rule("slow plan", delay=500, events=[CommandStarted(command="ls")])
    async with running_bot(tmp_path, fakes) as bot:
        await bot.say(ALICE, "/mode plan")
        await bot.wait_reply(ALICE, "Mode set to plan")
        await bot.say(ALICE, "slow plan")
        await bot.wait(lambda: any(p.calls for p in bot.fakes.started))
    assert bot.closed(ALICE) == [
        "⏹ Interrupted: the bot is stopping. It runs again from the start when the bot is "
        "back (Codex had not changed anything yet)."
    ]
    state = (await SessionStore(tmp_path / "sessions").load(SessionKey(ALICE, ALICE))).state
    assert state is not None
    assert (state.queue, state.running) == (("slow plan",), None)


async def test_a_crashed_chat_is_reset_and_recreated(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from actors import chat

    original = chat.Chat.on_text
    calls = {"n": 0}

    async def exploding(self, text: str, **kwargs: bool) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("bug in the chat")
        await original(self, text, **kwargs)

    monkeypatch.setattr(chat.Chat, "on_text", exploding)
    async with running_bot(tmp_path) as bot:
        await bot.say(ALICE, "first")
        await bot.wait_reply(ALICE, "session was reset")
        await bot.say(BOB, "unaffected")
        await bot.say(ALICE, "second")
        await bot.wait_reply(ALICE, "FAKE: second")
        await bot.wait_reply(BOB, "FAKE: unaffected")
    assert bot.stats.resets == 1
    [reset] = [t for t in bot.traces if t.event == "session_reset"]
    assert reset.detail == "RuntimeError: bug in the chat"  # not the chat's nursery group


async def test_slow_chat_never_blocks_the_router(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from actors import chat

    original = chat.Chat.handle
    gate = trio.Event()

    async def stuck(self, message) -> None:
        if self.key.user_id == ALICE:
            await gate.wait()
        await original(self, message)

    monkeypatch.setattr(chat.Chat, "handle", stuck)
    async with running_bot(tmp_path) as bot:
        for n in range(router.CHAT_INBOX_SIZE + 5):
            await bot.say(ALICE, f"flood {n}")
        await bot.say(BOB, "hello")
        await bot.wait_reply(BOB, "FAKE: hello")
        assert bot.stats.shed >= 3
        assert bot.replies(ALICE).count(chat_texts.BUSY) == 1  # one notice for the burst
        await trio.sleep(router.BUSY_INTERVAL)
        await bot.say(ALICE, "a minute later")
        await bot.wait(lambda: bot.replies(ALICE).count(chat_texts.BUSY) == 2)
        gate.set()


async def test_idle_chat_stops_and_comes_back(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_bot(tmp_path, idle_ttl=100) as bot:
        await bot.say(ALICE, "/mode plan")
        await bot.wait_reply(ALICE, "Mode set to plan")
        await trio.sleep(150)
        await bot.say(ALICE, "/status")
        await bot.wait_reply(ALICE, "Mode: plan")
        assert bot.stats.chats_started == 2


async def test_trace_records_cover_a_run(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_bot(tmp_path) as bot:
        await bot.say(ALICE, "trace me")
        await bot.wait_reply(ALICE, "FAKE: trace me")
    events = [t.event for t in bot.traces]
    assert {"run_start", "role", "run_end"} <= set(events)
    end = next(t for t in bot.traces if t.event == "run_end")
    assert end.outcome == "ok"
    assert end.duration_ms is not None
    start = next(t for t in bot.traces if t.event == "run_start")
    assert start.preview == "trace me"
    assert SessionState.__struct_fields__  # schema stays importable for docs


async def test_an_edited_prompt_file_applies_from_the_next_request(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    system = tmp_path / "system.md"
    developer = tmp_path / "developer.md"
    system.write_text("House rules v1.")
    developer.write_text("Developer rules v1.")
    config = make_config(tmp_path)
    profile = msgspec.structs.replace(
        config.profiles["default"],
        system_prompt_file=str(system),
        role_prompts=RolePrompts(developer=str(developer)),
    )
    config = msgspec.structs.replace(config, profiles={"default": profile})
    async with running_bot(tmp_path, config=config) as bot:
        await bot.say(ALICE, "first")
        await bot.wait_reply(ALICE, "FAKE: first")
        developer.write_text("Developer rules v2, now longer.")
        await bot.say(ALICE, "/new")
        await bot.wait_reply(ALICE, "new conversation")
        await bot.say(ALICE, "second")
        await bot.wait_reply(ALICE, "FAKE: second")
    first, second = [job for p in bot.fakes.started for job in p.calls]
    assert first.developer_instructions.startswith("House rules v1.")
    assert "Developer rules v1." in first.developer_instructions
    assert "Developer rules v2, now longer." in second.developer_instructions
    assert "Developer rules v1." not in second.developer_instructions


async def test_a_request_that_fails_inside_the_bot_is_reported_once_and_not_run_again(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from actors import role_caller

    original = role_caller.PoolRoleCaller.call_role

    async def exploding(self, role, prompt, **kw):
        if "explode" in prompt:
            raise RuntimeError("bug under the request")
        return await original(self, role, prompt, **kw)

    monkeypatch.setattr(role_caller.PoolRoleCaller, "call_role", exploding)
    async with running_bot(tmp_path) as bot:
        await bot.say(ALICE, "explode please")
        await bot.wait_reply(ALICE, "Something went wrong inside the bot")
        await bot.say(ALICE, "after it")
        await bot.wait_reply(ALICE, "FAKE: after it")
        replies = bot.replies(ALICE)
        assert not any("Interrupted" in r or "session was reset" in r for r in replies)
        assert not any("bug under the request" in r or "RuntimeError" in r for r in replies)
        assert sum("Something went wrong" in r for r in replies) == 1
        prompts = [job.prompt for p in bot.fakes.started for job in p.calls]
        assert prompts == ["after it"]
    assert bot.stats.resets == 0
    state = (await bot.store.load(SessionKey(ALICE, ALICE))).state
    assert state is not None
    assert state.queue == ()
    assert state.counters.failures == 1
    [end] = [t for t in bot.traces if t.event == "run_end" and t.outcome == "failed"]
    assert end.detail is not None
    assert "RuntimeError" in end.detail
    # A restart does not run it again.
    async with running_bot(tmp_path) as again:
        await trio.sleep(30)
        assert not [job for p in again.fakes.started for job in p.calls]


async def test_a_working_directory_that_is_gone_is_said_and_nothing_runs(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Codex would start in it anyway, and every command it ran would fail with "No such file
    or directory" (measured on 0.171.0)."""
    async with running_bot(tmp_path) as bot:
        (tmp_path / "work").rmdir()
        await bot.say(ALICE, "hello")
        await bot.wait_reply(ALICE, "nothing was run")
        (tmp_path / "work").mkdir()
        await bot.say(ALICE, "again")
        await bot.wait_reply(ALICE, "FAKE: again")
        prompts = [job.prompt for p in bot.fakes.started for job in p.calls]
    assert prompts == ["again"]
    [gone] = [r for r in bot.replies(ALICE) if "nothing was run" in r]
    assert gone == (
        f"❌ The working directory {tmp_path / 'work'} is gone (or is not a folder), so nothing "
        "was run. Restore it, or the bot's owner can point the profile's working_directory at "
        "another folder; then send the request again."
    )


async def test_after_a_codex_error_the_next_request_starts_a_fresh_thread_with_the_recap(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fakes = FakeProcesses()
    fakes.rule("broken", error="stream disconnected before completion")
    async with running_bot(tmp_path, fakes) as bot:
        await bot.say(ALICE, "first question")
        await bot.wait_reply(ALICE, "FAKE: first question")
        await bot.say(ALICE, "broken turn")
        await bot.wait(lambda: len([j for p in fakes.started for j in p.calls]) >= 2)
        await bot.wait(lambda: _failed_run_ended(bot))
        await bot.say(ALICE, "third question")
        await bot.wait_reply(ALICE, "FAKE: third question")
        calls = [job for p in fakes.started for job in p.calls]
        _first, broken, third = calls
        assert broken.thread_id is not None  # the conversation continued...
        assert third.thread_id is None  # ...but not on the thread that saw the error
        assert "User asked: first question" in third.context_preamble
        assert "User asked: broken turn" in third.context_preamble
    state = (await bot.store.load(SessionKey(ALICE, ALICE))).state
    assert state is not None
    assert state.developer_thread_id is not None
    assert state.developer_thread_id != broken.thread_id


async def test_on_app_server_a_codex_error_keeps_the_thread_and_says_so(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """An app-server thread goes on after a failed turn (no shifted answers there): no recap,
    and the failure says the retry continues the same session."""
    fakes = FakeProcesses(app_server=True)
    fakes.rule("broken", error="stream disconnected before completion")
    async with running_bot(tmp_path, fakes) as bot:
        await bot.say(ALICE, "first question")
        await bot.wait_reply(ALICE, "FAKE: first question")
        await bot.say(ALICE, "broken turn")
        await bot.wait(lambda: _failed_run_ended(bot))
        await bot.say(ALICE, "third question")
        await bot.wait_reply(ALICE, "FAKE: third question")
        first, broken, third = [job for p in fakes.started for job in p.calls]
        assert first.thread_id is None
        assert broken.thread_id is not None
        assert third.thread_id == broken.thread_id  # the same conversation, no fresh thread
        assert third.worker_id == broken.worker_id
        assert not fakes.resumed  # it never left its worker
        [failed] = [text for text in bot.replies(ALICE) if "❌" in text]
        assert "it goes on in the same Codex session" in failed
        assert "fresh Codex session" not in failed
        assert not any("continued in a new one" in text for text in bot.replies(ALICE))


def _failed_run_ended(bot: Bot) -> bool:
    return any(t.event == "run_end" and t.outcome == "failed" for t in bot.traces)


async def test_a_part_waiting_for_the_rest_of_a_paste_is_on_disk_and_runs_after_a_kill(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    part = "p" * 4096
    async with running_bot(tmp_path, batch_window=30.0) as bot:
        await bot.say(ALICE, part)
        await bot.wait(lambda: bool(bot.store.path_for(SessionKey(ALICE, ALICE)).exists()))
        state = (await bot.store.load(SessionKey(ALICE, ALICE))).state
        assert state is not None
        assert state.batch == (part,)  # saved before the next update is taken
    # What a kill leaves behind: the part on record, not started.
    killed = msgspec.structs.replace(state, batch=(part,), queue=())
    await bot.store.save(SessionKey(ALICE, ALICE), killed)
    async with running_bot(tmp_path) as again:
        await again.wait_reply(ALICE, f"FAKE: {part}")
    state = (await again.store.load(SessionKey(ALICE, ALICE))).state
    assert state is not None
    assert (state.batch, state.queue, state.running) == ((), (), None)


async def test_a_request_killed_mid_run_is_offered_again_never_rerun_by_itself(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    from orchestrator.session_store import RequestRecord

    key = SessionKey(ALICE, ALICE)
    store = SessionStore(tmp_path / "sessions")
    killed = SessionState(
        mode="single",
        profile="default",
        running=RequestRecord(prompt="the killed one", live_message_id=77),
        queue=("queued before the kill",),
    )
    await store.save(key, killed)
    async with running_bot(tmp_path) as bot:
        await bot.wait_reply(ALICE, "FAKE: queued before the kill")
        closes = [m for m in bot.sent if isinstance(m, CloseLive) and m.message_id == 77]
        assert [m.final_text for m in closes] == [chat_texts.STALE_PROGRESS]
        [offer] = [m for m in bot.sent if isinstance(m, UpdateLive) and m.slot.startswith("rerun")]
        assert offer.text == chat_texts.interrupted_by_a_stop("the killed one")
        assert not offer.silent
        [button] = [b for row in offer.keyboard for b in row]
        assert button.text == "▶ Run again"
        assert len(button.callback_data) > 12  # carries an unguessable token
        prompts = [job.prompt for p in bot.fakes.started for job in p.calls]
        assert prompts == ["queued before the kill"]
        await bot.say(ALICE, "/status")
        await bot.wait_reply(ALICE, "Offered, not run: a request a restart interrupted")
        wrong = await bot.press(ALICE, "rr:guessed")
        await bot.wait(lambda: bot.callback_answer(wrong) is not None)
        assert bot.callback_answer(wrong) == chat_texts.RUN_AGAIN_GONE
        query = await bot.press(ALICE, button.callback_data)
        await bot.wait_reply(ALICE, "FAKE: the killed one")
        assert bot.callback_answer(query) == chat_texts.RUN_AGAIN_STARTED
        again = await bot.press(ALICE, button.callback_data)
        await bot.wait(lambda: bot.callback_answer(again) is not None)
        assert bot.callback_answer(again) == chat_texts.RUN_AGAIN_GONE
        await trio.sleep(10)
        prompts = [job.prompt for p in bot.fakes.started for job in p.calls]
        assert prompts == ["queued before the kill", "the killed one"]
    state = (await store.load(key)).state
    assert state is not None
    assert (state.running, state.interrupted) == (None, None)


async def test_a_message_that_is_not_text_is_answered_once_and_never_run(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A voice note, a file and a captioned photo each get one answer saying why they are not
    used (here none carries a file to fetch); the caption does not reach Codex without its
    picture (nor does a command in it)."""
    async with running_bot(tmp_path) as bot:
        await bot.wait(lambda: len(bot.fakes.started) == 2)
        await bot.say(ALICE, None, content_kind="voice")
        await bot.wait_reply(ALICE, "I can't pass voice notes to Codex")
        await bot.say(ALICE, None, content_kind="document")
        await bot.wait_reply(ALICE, "You sent a file, but")
        await bot.say(ALICE, "fix the layout shown here", content_kind="photo")
        await bot.wait_reply(ALICE, "So your caption was not run either")
        await bot.say(ALICE, "/new", content_kind="photo")
        await bot.wait_reply(ALICE, "So your caption was not run either", count=2)
        await bot.say(ALICE, None, content_kind="other")
        await bot.wait_reply(
            ALICE,
            "I can't read this kind of message: I can only read text, photos and files. Send "
            "your request as text.",
        )
        await bot.say(ALICE, "what is this?", content_kind="other")
        await bot.wait_reply(ALICE, "Codex would have worked without the attachment. Send")
        await bot.say(ALICE, "now as text")
        await bot.wait_reply(ALICE, "FAKE: now as text")
    calls = [str(c) for p in bot.fakes.started for c in p.calls]
    assert any("now as text" in c for c in calls)
    assert not any("layout" in c or "what is this" in c for c in calls)
    assert len(bot.replies(ALICE)) == 7
    assert bot.replies(ALICE)[2] == (
        "I can only read text, photos and files, not this. So your caption was not run either: "
        "Codex would have worked without the photo. "
        "Send your request as text (describe what the photo shows, or paste its text)."
    )
    kinds = [t.detail for t in bot.traces if t.outcome == "not_text"]
    assert kinds == ["document", "photo", "photo", "other", "other"]
    assert [t.detail for t in bot.traces if t.outcome == "voice_refused"] == ["voice"]


async def test_in_a_group_every_answer_quotes_the_message_it_answers(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Several people share a group: a result, a failure, an answer to a command or a
    stranger's refusal quotes the message it answers, so everyone sees whose it is (a
    stranger is answered only for a command to the bot). A private chat quotes nothing."""
    group = -100
    fakes = FakeProcesses()
    fakes.rule("boom", error="the model is down")
    async with running_bot(tmp_path, fakes) as bot:
        asked = await bot.say(ALICE, "hello", chat=group)
        await bot.wait_reply(group, "FAKE: hello")
        failing = await bot.say(BOB, "boom now", chat=group)
        await bot.wait_reply(group, "Codex failed")
        status = await bot.say(ALICE, "/status", chat=group)
        await bot.wait_reply(group, "Mode:")
        await bot.say(STRANGER, "hi all", chat=group)  # the members' talk: not answered
        stranger = await bot.say(STRANGER, "/start", chat=group)
        await bot.wait_reply(group, "This bot is private")
        await bot.say(ALICE, "in private")
        await bot.wait_reply(ALICE, "FAKE: in private")

    def quoted(fragment: str) -> list[int | None]:
        replies = [m for m in bot.sent if isinstance(m, SendReply) and fragment in m.markdown]
        return [m.reply_to_message_id for m in replies]

    assert quoted("FAKE: hello") == [asked]
    assert quoted("Codex failed") == [failing]
    assert quoted("Mode:") == [status]
    assert quoted("This bot is private") == [stranger]
    assert quoted("FAKE: in private") == [None]


async def test_a_group_can_leave_the_members_talk_alone(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """``telegram.group_requests = "addressed"`` (a bot that reads every message of the
    group): only a message for the bot runs, a mention, a reply to the bot or a command, and
    the other photos of an album whose caption was; the rest runs nothing and gets no answer.
    A private chat is not a group: everything runs there."""
    group = -100
    base = make_config(tmp_path)
    telegram = msgspec.structs.replace(base.telegram, group_requests="addressed")
    config = msgspec.structs.replace(base, telegram=telegram)
    async with running_bot(tmp_path, config=config) as bot:
        await bot.say(ALICE, "lunch at noon?", chat=group, addressed=False)
        await bot.say(ALICE, "fix the tests", chat=group)  # a mention, taken out by the wire
        await bot.wait_reply(group, "FAKE: fix the tests")
        await bot.say(ALICE, "/status", chat=group)
        await bot.wait_reply(group, "Mode:")
        await bot.say(ALICE, "in private, unaddressed")
        await bot.wait_reply(ALICE, "FAKE: in private, unaddressed")
    runs = [m.markdown for m in bot.sent if isinstance(m, SendReply) and "FAKE" in m.markdown]
    assert not any("lunch" in run for run in runs)
    assert [r.event for r in bot.traces if "lunch" in (r.preview or "")] == []
    assert bot.stats.ignored == 1


async def test_addressed_group_requests_let_an_album_through_by_its_caption(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    group = -100
    base = make_config(tmp_path)
    telegram = msgspec.structs.replace(base.telegram, group_requests="addressed")
    router_ = router._Router(
        cast("Any", None),
        cast("Any", SimpleNamespace(config=msgspec.structs.replace(base, telegram=telegram))),
        frozenset({ALICE}),
        router.RouterStatistics(),
    )

    def part(album: str | None, *, addressed: bool) -> InboundMessage:
        return InboundMessage(
            update_id=1,
            chat_id=group,
            chat_type="supergroup",
            message_id=1,
            user_id=ALICE,
            media_group_id=album,
            addressed=addressed,
        )

    assert not router_.for_the_bot(part("a1", addressed=False))  # before its caption: talk
    assert router_.for_the_bot(part("a1", addressed=True))
    assert router_.for_the_bot(part("a1", addressed=False))
    assert not router_.for_the_bot(part("a2", addressed=False))
    assert not router_.for_the_bot(part(None, addressed=False))


async def test_in_a_group_an_approval_prompt_quotes_the_request_it_is_for(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Only the requester can answer it; the quote tells the others whose it is."""
    group = -100
    async with running_bot(tmp_path, deploy_needs_approval()) as bot:
        asked = await bot.say(ALICE, "deploy it", chat=group)
        await bot.wait(lambda: bool(bot.buttons(group, "ap:")))
        await bot.say(ALICE, "deploy it", chat=ALICE)
        await bot.wait(lambda: bool(bot.buttons(ALICE, "ap:")))
    prompts = {
        m.chat_id: m.reply_to_message_id
        for m in bot.sent
        if isinstance(m, UpdateLive) and m.slot.startswith("approval-")
    }
    assert prompts == {group: asked, ALICE: None}


async def test_a_slow_get_runs_behind_the_inbox_one_at_a_time(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/get of a huge folder takes seconds: it runs behind the inbox, one at a time."""

    async def slow_get(chat: Chat, argument: str) -> None:
        await trio.sleep(60)
        await chat.out.say(f"sent {argument}", plain=True)

    monkeypatch.setattr(chat_files, "get_file", slow_get)
    async with running_bot(tmp_path) as bot:
        await bot.say(ALICE, "/get big")
        await bot.say(ALICE, "/status")
        await bot.wait_reply(ALICE, "State: idle")
        assert trio.current_time() < 10
        await bot.say(ALICE, "/get other")
        await bot.wait_reply(ALICE, "Still working on your last /get or /diff")
        await bot.wait_reply(ALICE, "sent big")
        await bot.say(ALICE, "/get other")
        await bot.wait_reply(ALICE, "sent other")


async def test_an_argument_a_command_does_not_take_is_said_unused(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_bot(tmp_path) as bot:
        await bot.say(ALICE, "/new fix the login bug")
        await bot.wait_reply(ALICE, "Started a new conversation")
        await bot.say(ALICE, "/cancel everything")
        await bot.wait_reply(ALICE, "Nothing is running.")
    replies = bot.replies(ALICE)
    assert replies[0] == (
        "/new takes nothing after it, so “fix the login bug” was not used: send it as a "
        "message of its own."
    )
    assert "/cancel takes nothing after it, so “everything” was not used." in replies
    assert not [job for process in bot.fakes.started for job in process.calls]


async def test_after_a_restart_a_kept_part_of_a_paste_waits_for_its_rest(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The rest of a split paste is often already waiting at Telegram when the bot comes
    back: the kept first part waits ``batch_window`` for it again, and the paste runs as one
    request, not two."""
    part = "p" * 4096
    async with running_bot(tmp_path, batch_window=30.0) as bot:
        await bot.say(ALICE, part)
        await bot.wait(lambda: bool(bot.store.path_for(SessionKey(ALICE, ALICE)).exists()))
    state = (await bot.store.load(SessionKey(ALICE, ALICE))).state
    assert state is not None
    assert state.batch == (part,)  # on record through the stop, not queued
    assert state.queue == ()
    assert not [job for process in bot.fakes.started for job in process.calls]
    async with running_bot(tmp_path, batch_window=30.0) as again:
        await trio.sleep(0.5)
        await again.say(ALICE, "and the rest")
        await again.wait_reply(ALICE, f"FAKE: {part}\n\nand the rest")
    assert [job.prompt for process in again.fakes.started for job in process.calls] == [
        f"{part}\n\nand the rest"
    ]
