"""The router: access control and one chat actor per session key.

- **Access.** Only ``from.id`` in ``telegram.allowed_users`` gets in (empty: nobody). Bots,
  anonymous admins and channel posts are ignored (an anonymous admin's command is told how
  to be seen, at most once per `REFUSAL_INTERVAL`). A stranger gets at most one fixed refusal
  per `REFUSAL_INTERVAL` and nothing else: no session file, no Codex call. Every refusal
  is traced.
- **Chats.** A chat actor per `SessionKey` (chat, user, forum topic) is started on its first
  message in the router's nursery and stops itself after ``sessions.idle_ttl``. A chat that
  crashes is logged, traced, reported to the user ("session reset") and started afresh on the
  next message; a crash never reaches the router. At start, chats with queued prompts saved
  before a restart are started so their queue resumes.
- **Never blocked by a chat.** Each chat inbox is bounded (`CHAT_INBOX_SIZE`: a whole
  getUpdates batch fits, so a burst the chat takes in milliseconds is never shed); when one is
  full (the chat hangs) the router sheds the message and tells the user the bot is busy, once
  per `BUSY_INTERVAL`, not once per message.
- **Groups.** With ``telegram.group_requests = "addressed"``, an allowed user's group message
  runs only when it is for the bot: a mention, a reply to the bot, a command (and the other
  photos of an album whose caption was); the rest is the members' talk, ignored.
- **Buttons.** A press goes to the chat actor of the presser's own session key, so a press on
  someone else's approval prompt cannot decide it (that chat does not know the token).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, TypeAlias, assert_never

import trio

from actors import chat, chat_texts
from actors.chat import mark_handled
from actors.chat_output import send_durably
from orchestrator.channels import ShedCounter, open_mailbox, try_send
from orchestrator.errors import describe
from orchestrator.messages import (
    AnswerCallback,
    BotMembershipChanged,
    ChatReactivated,
    InboundCallback,
    InboundMessage,
    SendReply,
    SessionKey,
    TraceRecord,
)
from orchestrator.recent import Recent
from orchestrator.throttle import OncePer
from orchestrator.topic_bindings import TopicBindings

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors.telegram_outbox import Outbox
    from orchestrator.config import Config
    from orchestrator.messages import RouterMsg, SenderMsg
    from orchestrator.ports import CodexPool, GitWorktrees, TelegramFiles, TraceEmit
    from orchestrator.session_store import SessionStore

__all__ = ["BUSY_INTERVAL", "CHAT_INBOX_SIZE", "REFUSAL_INTERVAL", "RouterStatistics", "run"]

logger: Final = logging.getLogger(__name__)

CHAT_INBOX_SIZE: Final = 100
"""Messages waiting per chat before the router sheds. Telegram hands out at most 100 updates
per getUpdates, and the poller takes the next batch only once the chats took this one (or
after `actors.telegram_poller.HANDLED_WAIT`): forty messages forwarded at once while a
request runs all reach the chat, which queues them in milliseconds. Only a chat that hangs
fills it. The bound costs nothing until used (a deque, not a preallocated buffer)."""

BUSY_INTERVAL: Final = 60.0
"""Seconds after a "busy" notice in which more messages shed in that chat are not told again
(each is traced): one notice for a burst, not one per message."""

REFUSAL_INTERVAL: Final = 3600.0
"""Seconds between two refusals to the same stranger: one answer, never a conversation."""

ALBUMS_REMEMBERED: Final = 256
"""Albums addressed to the bot whose later parts are let through (`_Router.for_the_bot`)."""

RESET_NOTICE_GRACE: Final = 5.0
"""Seconds to tell a user their session was reset, even while the router is being cancelled."""

ACTIVE_STATUSES: Final = frozenset({"member", "administrator", "creator"})


ChatInboxMsg: TypeAlias = InboundMessage | InboundCallback
"""What the router hands a chat actor."""


@dataclass
class RouterStatistics:
    """Counters for tests and `/status`-like diagnostics."""

    routed: int = 0
    refused: int = 0
    ignored: int = 0
    resets: int = 0
    chats_started: int = 0
    chat_inbox_full: ShedCounter[ChatInboxMsg] = field(default_factory=ShedCounter)
    """Messages shed because their chat's inbox was full."""

    @property
    def shed(self) -> int:
        """Messages shed because their chat's inbox was full."""
        return self.chat_inbox_full.shed


@dataclass
class _ChatEntry:
    inbox: trio.MemorySendChannel[ChatInboxMsg]
    generation: int


class _Router:
    def __init__(
        self,
        nursery: trio.Nursery,
        deps: chat.ChatDeps,
        allowed: frozenset[int],
        stats: RouterStatistics,
    ) -> None:
        self.nursery = nursery
        self.deps = deps
        self.allowed = allowed
        self.stats = stats
        self.chats: dict[SessionKey, _ChatEntry] = {}
        self.refusals = OncePer[int](REFUSAL_INTERVAL)
        self.busy_told = OncePer[SessionKey](BUSY_INTERVAL)
        self.generations = 0
        self.albums = Recent[str, None](ALBUMS_REMEMBERED)
        """Albums whose captioned part was addressed to the bot (the newest
        `ALBUMS_REMEMBERED`): their other parts are too (`for_the_bot`)."""

    async def route(self, message: RouterMsg) -> None:
        """Hand `message` to its chat, or answer it here; either way its ``handled`` event
        is set once nothing more needs to happen for the poller (`_RouterBase`)."""
        match message:
            case InboundMessage():
                if not await self.on_message(message):
                    mark_handled(message)
            case InboundCallback():
                if not await self.on_callback(message):
                    mark_handled(message)
            case BotMembershipChanged():
                if message.status in ACTIVE_STATUSES:
                    await self.deps.sender.send(ChatReactivated(chat_id=message.chat_id))
                self.deps.trace(
                    TraceRecord(
                        event="update",
                        update_id=message.update_id,
                        chat_id=message.chat_id,
                        outcome=f"membership {message.status}",
                    )
                )
                mark_handled(message)
            case _:
                assert_never(message)

    async def on_message(self, message: InboundMessage) -> bool:
        """Whether a chat took `message` (it then marks it handled)."""
        if message.user_id is None or message.user_is_bot or message.chat_type == "channel":
            self.stats.ignored += 1
            if message.user_id is None and message.command and message.chat_type != "channel":
                await self.answer_anonymous(message)
            return False
        if message.user_id not in self.allowed:
            group = message.chat_type != "private"
            await self.refuse(
                message.chat_id,
                message.user_id,
                message.thread_id,
                # In a group, only a command to this bot is answered: the members' own
                # talk is not for the bot (anyone can add it to a group of theirs).
                silent=group and message.command is None,
                quoting=message.message_id if group else None,
            )
            return False
        if not self.for_the_bot(message):
            self.stats.ignored += 1  # the members' talk, not a request (telegram.group_requests)
            return False
        key = SessionKey(
            chat_id=message.chat_id, user_id=message.user_id, thread_id=message.thread_id
        )
        return await self.deliver(key, message)

    def for_the_bot(self, message: InboundMessage) -> bool:
        """Whether an allowed user's group message is a request: with ``group_requests =
        "addressed"``, only one addressed to the bot, or another part of an album whose
        captioned part was (Telegram sends each photo of an album as a message, the caption
        on the first)."""
        if self.deps.config.telegram.group_requests == "all":
            return True
        album = message.media_group_id
        if not message.addressed:
            return album is not None and album in self.albums
        if album is not None:
            self.albums.remember(album, None)
        return True

    async def on_callback(self, press: InboundCallback) -> bool:
        """Whether a chat took `press` (it then marks it handled)."""
        if press.user_id not in self.allowed:
            await self.deps.sender.send(
                AnswerCallback(
                    callback_query_id=press.callback_query_id, text="Not for you.", stranger=True
                )
            )
            await self.refuse(press.chat_id, press.user_id, press.thread_id, silent=True)
            return False
        if press.owner_id is not None and press.owner_id != press.user_id:
            # Someone else's button: their session, not this user's, knows what it is for.
            await self.deps.sender.send(
                AnswerCallback(
                    callback_query_id=press.callback_query_id,
                    text=chat_texts.someone_elses_button(press.owner_name),
                )
            )
            return False
        key = SessionKey(chat_id=press.chat_id, user_id=press.user_id, thread_id=press.thread_id)
        return await self.deliver(key, press)

    async def refuse(
        self,
        chat_id: int,
        user_id: int,
        thread_id: int | None,
        *,
        silent: bool = False,
        quoting: int | None = None,
    ) -> None:
        """Tell a stranger the bot is not theirs (at most once per `REFUSAL_INTERVAL`); in a
        group the answer `quoting` their message, so the others see whom it is for."""
        self.stats.refused += 1
        answered = not silent and self.refusals.due(user_id)
        if answered:
            await self._tell(chat_id, thread_id, chat_texts.refusal(user_id), quoting)
        self.deps.trace(
            TraceRecord(
                event="refusal",
                chat_id=chat_id,
                user_id=user_id,
                detail="refusal sent" if answered else "refusal suppressed",
            )
        )

    async def answer_anonymous(self, message: InboundMessage) -> None:
        """A command sent as the group or a channel (an anonymous admin): no one to check
        against the allow-list, so nothing runs, and it says how to be seen (at most once per
        `REFUSAL_INTERVAL` in a chat; group ids are negative, so they share the user ids'
        limiter without meeting one)."""
        answered = self.refusals.due(message.chat_id)
        if answered:
            await self._tell(
                message.chat_id, message.thread_id, chat_texts.ANONYMOUS_SENDER, message.message_id
            )
        self.deps.trace(
            TraceRecord(
                event="refusal",
                chat_id=message.chat_id,
                detail="anonymous sender told" if answered else "anonymous sender",
            )
        )

    async def _tell(
        self, chat_id: int, thread_id: int | None, text: str, quoting: int | None
    ) -> None:
        """Say `text` to someone who may not use the bot: plain, and marked a stranger's
        (lowest priority, capped, never kept in the outbox)."""
        await self.deps.sender.send(
            SendReply(
                chat_id=chat_id,
                thread_id=thread_id,
                markdown=text,
                plain=True,
                stranger=True,
                reply_to_message_id=quoting,
            )
        )

    async def deliver(self, key: SessionKey, message: ChatInboxMsg) -> bool:
        """Whether the chat's inbox took `message` (else it was shed, with a "busy" answer)."""
        entry = self.chats.get(key) or self.start_chat(key)
        if not try_send(entry.inbox, message, self.stats.chat_inbox_full):
            logger.warning("chat %s is busy; shed a message", key.file_stem())
            self.deps.trace(
                TraceRecord(
                    event="queued",
                    chat_id=key.chat_id,
                    user_id=key.user_id,
                    outcome="shed",
                    detail="chat inbox full",
                )
            )
            if isinstance(message, InboundCallback):
                await self.deps.sender.send(
                    AnswerCallback(
                        callback_query_id=message.callback_query_id, text="Busy, try again."
                    )
                )
            elif self.busy_told.due(key):
                await self.notice(key, chat_texts.BUSY)
            return False
        self.stats.routed += 1
        return True

    async def notice(self, key: SessionKey, text: str) -> None:
        """Tell the chat `key` what happened to its message or session, through the outbox
        like every chat reply (a kill while it waits for the sender loses nothing)."""
        reply = SendReply(chat_id=key.chat_id, thread_id=key.thread_id, markdown=text, plain=True)
        await send_durably(self.deps.sender, self.deps.outbox, reply)

    def start_chat(self, key: SessionKey) -> _ChatEntry:
        self.generations += 1
        send, receive = open_mailbox[ChatInboxMsg](CHAT_INBOX_SIZE)
        entry = _ChatEntry(inbox=send, generation=self.generations)
        self.chats[key] = entry
        self.stats.chats_started += 1
        self.nursery.start_soon(self.supervise_chat, key, receive, entry)
        return entry

    async def supervise_chat(
        self,
        key: SessionKey,
        inbox: trio.MemoryReceiveChannel[ChatInboxMsg],
        entry: _ChatEntry,
    ) -> None:
        """Run one chat; a crash is contained here (temporary child: not restarted).

        A chat that stopped while a message reached its inbox (idle at that very moment)
        leaves it behind: it goes to a fresh chat actor, not lost and never left unhandled."""
        left_over: list[ChatInboxMsg] = []
        try:
            with inbox:
                try:
                    await chat.run(key, inbox, self.deps)
                except Exception:
                    # What waited in its inbox is gone with it (the user is told below):
                    # nothing to wait for, for the poller.
                    for left in _drain(inbox):
                        mark_handled(left)
                    raise
                left_over = _drain(inbox)
                self.forget(key, entry)  # no checkpoint since the drain: later ones start anew
            for message in left_over:
                await self.deliver(key, message)
        except Exception as error:
            self.stats.resets += 1
            logger.exception("chat %s crashed; its session is reset", key.file_stem())
            self.deps.trace(
                TraceRecord(
                    event="session_reset",
                    chat_id=key.chat_id,
                    user_id=key.user_id,
                    thread_id=key.thread_id,
                    detail=describe(error)[:300],
                )
            )
            with trio.move_on_after(RESET_NOTICE_GRACE) as notice:
                notice.shield = True
                await self.notice(key, chat_texts.SESSION_RESET)
        finally:
            self.forget(key, entry)

    def forget(self, key: SessionKey, entry: _ChatEntry) -> None:
        """Drop `entry` (if it is still `key`'s) and close its inbox: no more messages."""
        if self.chats.get(key) is entry:
            del self.chats[key]
            self.busy_told.forget(key)
        entry.inbox.close()

    def close_all(self) -> None:
        for entry in self.chats.values():
            entry.inbox.close()


def _drain(inbox: trio.MemoryReceiveChannel[ChatInboxMsg]) -> list[ChatInboxMsg]:
    left: list[ChatInboxMsg] = []
    while True:
        try:
            left.append(inbox.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return left


async def run(
    inbox: trio.MemoryReceiveChannel[RouterMsg],
    *,
    sender: trio.MemorySendChannel[SenderMsg],
    pool: CodexPool,
    store: SessionStore,
    config: Config,
    trace: TraceEmit,
    drain_grace: float,
    statistics: RouterStatistics | None = None,
    files: TelegramFiles | None = None,
    git: GitWorktrees | None = None,
    outbox: Outbox | None = None,
    secrets: tuple[str, ...] = (),
    own_files: tuple[str, ...] = (),
    forced: Callable[[], bool] = lambda: False,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Route updates to chat actors until the inbox ends, then drain the chats
    (`files`: the chats' downloads of what users send; `secrets`: what no file the chats
    send may hold, `ChatDeps.secrets`; `own_files`: `ChatDeps.own_files`; `forced`: whether
    the stop was forced, `ChatDeps.forced`).

    Inbox: `RouterMsg` from the poller.
    Emits: chat inbox messages (never blocking: shed with a "busy" answer when full); with
        `outbox`, the chats write their replies there before the sender takes them;
        refusals, callback answers and reactivations to the sender.
    Backpressure: the poller blocks when this inbox is full (nothing is confirmed).
    Shutdown: on end-of-channel, closes every chat inbox; chats finish their request within
        `drain_grace` seconds, after which they are cancelled (each says so and keeps its
        prompt queued). Closes its sender clone on return.
    """
    topics = TopicBindings(store.root.parent / "topics.json")  # shared by every chat
    await topics.load()
    deps = chat.ChatDeps(
        sender=sender,
        pool=pool,
        store=store,
        config=config,
        trace=trace,
        files=files,
        topics=topics,
        git=git,
        outbox=outbox,
        secrets=secrets,
        own_files=own_files,
        forced=forced,
    )
    with sender:
        async with trio.open_nursery() as nursery:
            router = _Router(
                nursery,
                deps,
                frozenset(config.telegram.allowed_users),
                statistics or RouterStatistics(),
            )
            for key in await store.keys_with_queue():
                if key.user_id in router.allowed:
                    logger.info("resuming the queue of chat %s", key.file_stem())
                    router.start_chat(key)
            task_status.started()
            with inbox:
                async for message in inbox:
                    await router.route(message)
            router.close_all()
            nursery.cancel_scope.deadline = trio.current_time() + drain_grace
