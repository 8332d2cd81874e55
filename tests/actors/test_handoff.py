"""The two SIGKILL windows of the message path (issue 13), in virtual time.

Inbound: a message is marked handled (the poller may confirm it to Telegram) only once its
chat has it in the session file, and an update Telegram sends again after a kill that fell
between the chat's save and the ledger's is recognised by the chat and not run twice.
Outbound: a reply is in the outbox before it is handed to the sender, and the sender does not
write it a second time. The process-level proofs are in tests/system/test_process_handoff.py.
"""

from __future__ import annotations

import functools
import itertools
import json
from typing import TYPE_CHECKING

import msgspec
import trio
import trio.testing

from actors import chat_texts, router
from actors.chat_output import ChatOutput
from actors.chat_sync import SyncBehind
from actors.telegram_outbox import Outbox
from orchestrator.messages import (
    AnswerCallback,
    InboundCallback,
    InboundMessage,
    SenderMsg,
    SendReply,
    SessionKey,
)
from orchestrator.session_store import RequestRecord, SessionState
from tests.actors.test_chats import ALICE, STRANGER, running_bot
from tests.actors.test_telegram_outbox import entries, running_sender, sent
from tests.fakes.codex_process import FakeProcesses
from tests.fakes.telegram_api import FakeTelegramApi

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    import pytest

    from tests.actors.test_chats import Bot

KEY = SessionKey(ALICE, ALICE)
_IDS = itertools.count(1000)


def text(user: int, words: str, *, update_id: int | None = None) -> InboundMessage:
    return InboundMessage(
        update_id=next(_IDS) if update_id is None else update_id,
        chat_id=user,
        chat_type="private",
        message_id=next(_IDS),
        user_id=user,
        text=words,
        handled=trio.Event(),
    )


async def on_disk_when_handled(
    bot: Bot, message: InboundMessage | InboundCallback
) -> dict[str, object]:
    """Hand `message` to the router; the session file as it was when it was marked handled."""
    assert bot.inbox is not None
    assert message.handled is not None
    await bot.inbox.send(message)
    await message.handled.wait()
    return json.loads(bot.store.path_for(KEY).read_bytes())  # type: ignore[no-any-return]


async def test_a_message_is_handled_only_once_its_session_file_holds_it(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fakes = FakeProcesses()
    fakes.rule("slow", delay=100)
    async with running_bot(tmp_path, fakes, batch_window=30.0) as bot:
        first = text(ALICE, "slow first")
        saved = await on_disk_when_handled(bot, first)
        assert saved["running"] == {
            "prompt": "slow first",
            "live_message_id": None,
            "token": "",
            "images": [],
            "counted": False,
            "questions": [],
        }
        assert saved["updates"] == [first.update_id]
        second = text(ALICE, "while it runs")
        saved = await on_disk_when_handled(bot, second)
        assert saved["queue"] == ["while it runs"]
        assert saved["updates"] == [first.update_id, second.update_id]
        await bot.wait_reply(ALICE, "FAKE: while it runs")
        part = text(ALICE, "p" * 4096)
        saved = await on_disk_when_handled(bot, part)
        assert saved["batch"] == ["p" * 4096]


async def test_an_update_sent_again_after_a_kill_is_not_run_twice(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The kill fell after the chat's save and before the update ledger's: Telegram sends
    the update again and the ledger does not know it, but the session file does."""
    async with running_bot(tmp_path) as bot:
        await bot.store.save(
            KEY,
            SessionState(
                mode="single",
                profile="default",
                queue=("queued before the kill",),
                running=RequestRecord(prompt="running at the kill"),
                updates=(41, 42),
            ),
        )
    async with running_bot(tmp_path) as bot:
        again = [
            text(ALICE, "running at the kill", update_id=41),
            text(ALICE, "queued before the kill", update_id=42),
        ]
        assert bot.inbox is not None
        for message in again:
            await bot.inbox.send(message)
        for message in again:
            assert message.handled is not None
            await message.handled.wait()
        await bot.wait_reply(ALICE, "FAKE: queued before the kill")
        await bot.say(ALICE, "new one")
        await bot.wait_reply(ALICE, "FAKE: new one")
        prompts = [job.prompt for p in bot.fakes.started for job in p.calls]
        assert prompts == ["queued before the kill", "new one"]
        duplicates = [t.update_id for t in bot.traces if t.outcome == "duplicate"]
        assert duplicates == [41, 42]


async def test_a_command_and_a_press_are_on_record_when_handled_and_not_done_twice(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A command or a button press changes nothing the chat would save, yet a second /cancel
    would stop what a later request left running: its update id is on disk before the
    poller may confirm it, and Telegram's second delivery is skipped."""
    async with running_bot(tmp_path) as bot:
        await bot.say(ALICE, "hello")
        await bot.wait_reply(ALICE, "FAKE: hello")
        cancel = msgspec.structs.replace(
            text(ALICE, "/cancel"), command="cancel", handled=trio.Event()
        )
        saved = await on_disk_when_handled(bot, cancel)
        assert cancel.update_id in saved["updates"]  # type: ignore[operator]
        press = InboundCallback(
            update_id=next(_IDS),
            callback_query_id="q1",
            chat_id=ALICE,
            chat_type="private",
            user_id=ALICE,
            message_id=1,
            data="cx:stale",
            handled=trio.Event(),
        )
        saved = await on_disk_when_handled(bot, press)
        assert press.update_id in saved["updates"]  # type: ignore[operator]
        told = len(bot.replies(ALICE))
        answered = len([m for m in bot.sent if isinstance(m, AnswerCallback)])
        for again in (cancel, press):
            await on_disk_when_handled(bot, msgspec.structs.replace(again, handled=trio.Event()))
        assert len(bot.replies(ALICE)) == told  # no second "Nothing is running"
        assert len([m for m in bot.sent if isinstance(m, AnswerCallback)]) == answered
        duplicates = [t.update_id for t in bot.traces if t.outcome == "duplicate"]
        assert duplicates == [cancel.update_id, press.update_id]


async def test_what_no_chat_takes_is_handled_by_the_router_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_bot(tmp_path) as bot:
        assert bot.inbox is not None
        stranger = text(STRANGER, "let me in")
        bot_user = msgspec.structs.replace(text(ALICE, "from a bot"), user_is_bot=True)
        for message in (stranger, bot_user):
            await bot.inbox.send(message)
            assert message.handled is not None
            await message.handled.wait()
        assert bot.stats.refused == 1
        assert bot.stats.ignored == 1


async def test_a_message_shed_or_lost_with_a_crashed_chat_does_not_hold_the_poller(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from actors import chat

    gate = trio.Event()
    original = chat.Chat.handle

    async def stuck_then_crash(self: chat.Chat, message: object) -> None:
        await gate.wait()
        raise RuntimeError("bug in the chat")

    monkeypatch.setattr(chat.Chat, "handle", stuck_then_crash)
    folder = tmp_path / "outbox"
    outbox, _ = await Outbox.open(folder)
    async with running_bot(tmp_path, outbox=outbox) as bot:
        assert bot.inbox is not None
        flood = [text(ALICE, f"flood {n}") for n in range(router.CHAT_INBOX_SIZE + 2)]
        for message in flood:
            await bot.inbox.send(message)
        await bot.wait_reply(ALICE, chat_texts.BUSY)
        assert flood[-1].handled is not None
        assert flood[-1].handled.is_set()  # shed: the user was told, nothing to keep
        assert flood[1].handled is not None
        assert not flood[1].handled.is_set()  # waiting in the chat's inbox
        gate.set()
        for message in flood:
            assert message.handled is not None
            await message.handled.wait()
        await bot.wait_reply(ALICE, "session was reset")
        monkeypatch.setattr(chat.Chat, "handle", original)
    # The router's own notices went through the outbox too: a kill loses neither.
    notices = [m for m in bot.sent if isinstance(m, SendReply)]
    assert [m.markdown for m in notices] == [chat_texts.BUSY, chat_texts.SESSION_RESET]
    assert all(m.outbox_entry is not None for m in notices)
    assert len(entries(folder)) == 2  # nobody delivered them here: both still on disk


async def test_a_reply_is_in_the_outbox_before_the_sender_has_it(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    folder = tmp_path / "outbox"
    outbox, _ = await Outbox.open(folder, secrets=["123:SECRET-TOKEN-VALUE-1234567890abcdef"])
    send, receive = trio.open_memory_channel[SenderMsg](0)
    out = ChatOutput(KEY, send, lambda record: None, outbox=outbox)
    handed: list[SenderMsg] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(out.say, "the result (123:SECRET-TOKEN-VALUE-1234567890abcdef)")
        await trio.testing.wait_all_tasks_blocked()
        # Nobody took it from the sender's inbox yet: a SIGKILL now loses nothing.
        [name] = entries(folder)
        stored = (folder / name).read_text()
        assert "the result" in stored
        assert "SECRET-TOKEN" not in stored
        handed.append(await receive.receive())
        nursery.cancel_scope.cancel()
    [reply] = handed
    assert isinstance(reply, SendReply)
    assert reply.outbox_entry == int(name.removesuffix(".json"))


async def test_the_sender_delivers_a_reply_written_by_its_chat_once_and_forgets_it(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    folder = tmp_path / "outbox"
    api = FakeTelegramApi()
    async with running_sender(api, folder) as send:
        # The sender's own Outbox continues after the entry the chat wrote (a second one
        # writing the same folder stands in for the shared object here).
        chats, _ = await Outbox.open(folder)
        number = await chats.put(SendReply(chat_id=5, markdown="said by the chat"))
        assert number is not None
        await send.send(SendReply(chat_id=5, markdown="said by the chat", outbox_entry=number))
        await api.wait_for(lambda a: bool(sent(a, 5)))
        await trio.testing.wait_all_tasks_blocked()
    assert sent(api, 5) == ["said by the chat"]
    assert entries(folder) == []


async def test_a_reply_goes_out_while_its_entry_is_written_and_is_forgotten_after_both(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chat's reply reaches the sender (and Telegram) without waiting for its outbox entry;
    the sender's deletion of the delivered entry waits for the write, so the entry is not left
    behind to be sent again at the next start, and the chat's syncs wait for it too."""
    from orchestrator import disk

    release = trio.Event()
    run_sync, synced = disk.run_sync, list[str]()

    async def held_outbox_writes(function: Callable[..., object], *args: object) -> object:
        if getattr(function, "func", None) is disk.write_atomically:
            await release.wait()
        return await run_sync(function, *args)

    def recording_sync(paths: Sequence[Path]) -> None:
        synced.extend(path.parent.name for path in paths)

    monkeypatch.setattr(disk, "run_sync", held_outbox_writes)
    monkeypatch.setattr(disk, "sync", recording_sync)
    folder, api = tmp_path / "outbox", FakeTelegramApi()
    outbox, _ = await Outbox.open(folder)
    behind = SyncBehind(tmp_path / "session.json", disk.SyncBatches())
    synced_at: list[bool] = []

    async def sync_then_note() -> None:
        await behind.sync()
        synced_at.append(release.is_set())

    async with running_sender(api, folder, outbox=outbox) as sender, trio.open_nursery() as chat:
        out = ChatOutput(
            KEY,
            sender,
            lambda record: None,
            outbox=outbox,
            write_behind=functools.partial(behind.write_reply, chat),
        )
        try:
            with trio.fail_after(1):
                await out.say("the result")
                await api.wait_for(lambda a: sent(a, ALICE) == ["the result"])
            chat.start_soon(sync_then_note)
            await trio.testing.wait_all_tasks_blocked()
            assert entries(folder) == []  # delivered before its entry was written
            assert behind.holds_replies()
            assert synced_at == []  # a sync (and so the chat's next save) waits for the entry
        finally:
            release.set()  # a failed check must not leave the (shielded) write held forever
        await trio.testing.wait_all_tasks_blocked()
    assert entries(folder) == []  # written, then deleted: not sent again at the next start
    assert synced_at == [True]
    assert synced == ["outbox"]
    assert not behind.holds_replies()


async def test_a_message_left_in_the_inbox_of_a_chat_that_went_idle_goes_to_a_fresh_one(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from actors import chat

    gate = trio.Event()
    runs: list[list[str | None]] = []

    async def one_message_then_idle(
        key: SessionKey, inbox: trio.MemoryReceiveChannel[object], deps: object
    ) -> str:
        runs.append([])
        message = await inbox.receive()
        assert isinstance(message, InboundMessage)
        runs[-1].append(message.text)
        chat.mark_handled(message)
        if len(runs) == 1:
            await gate.wait()  # the next message arrives while this chat is deciding to stop
        return "idle"

    monkeypatch.setattr(chat, "run", one_message_then_idle)
    async with running_bot(tmp_path) as bot:
        assert bot.inbox is not None
        first, second = text(ALICE, "first"), text(ALICE, "second")
        await bot.inbox.send(first)
        await bot.inbox.send(second)
        await trio.testing.wait_all_tasks_blocked()
        assert second.handled is not None
        assert not second.handled.is_set()
        gate.set()
        with trio.fail_after(60):
            await second.handled.wait()
    assert runs == [["first"], ["second"]]


async def test_the_fsyncs_follow_behind_yet_come_before_the_confirmation_and_the_next_save(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session save before Codex sees the prompt and the reply's outbox entry are
    written without waiting for their fsync (on disk against a kill already); the poller may
    confirm the update only once the session file is synced, and the chat's next save comes
    after the reply's fsync, so a power loss never leaves a session file that says the
    request is over beside an outbox that lost its result."""
    from orchestrator import disk

    events: list[tuple[str, ...]] = []
    write, sync = disk.write_atomically, disk.sync

    def recording_write(
        path: Path, data: bytes, *, durable: bool = True, swap: bool = False
    ) -> None:
        write(path, data, durable=durable, swap=swap)
        events.append(("write", path.parent.name, "durable" if durable else "behind"))

    def recording_sync(paths: Sequence[Path]) -> None:
        sync(paths)
        events.append(("sync", *(path.parent.name for path in paths)))

    monkeypatch.setattr(disk, "write_atomically", recording_write)
    monkeypatch.setattr(disk, "sync", recording_sync)
    outbox, _ = await Outbox.open(tmp_path / "outbox")
    async with running_bot(tmp_path, outbox=outbox) as bot:
        message = text(ALICE, "hello")
        assert bot.inbox is not None
        assert message.handled is not None
        await bot.inbox.send(message)
        await message.handled.wait()
        events.append(("handled",))
        await bot.wait_reply(ALICE, "FAKE: hello")
        await trio.testing.wait_all_tasks_blocked()
    assert events[:3] == [
        ("write", "sessions", "behind"),  # the prompt, before Codex sees it
        ("sync", "sessions"),
        ("handled",),
    ]
    reply = events.index(("write", "outbox", "behind"))
    next_save = events.index(("write", "sessions", "behind"), reply)
    assert ("sync", "outbox") in events[reply:next_save]
    assert events[-1] == ("sync", "sessions")  # the request's end is durable too
    assert ("write", "sessions", "durable") not in events
