"""The chat actor: one per session key (chat, user[, forum topic]).

It owns the conversation: mode, profile, the Codex thread binding, the queue of prompts, the
request being served and its cancel scope, and the session file. The inbox loop never waits
for Codex: a request is served in a child task (`actors.chat_request`), so commands, queueing,
button presses and ``/cancel`` are answered while it runs.

- Text while idle starts a request at once; only a part of a long paste the client split
  waits ``batch_window`` for the rest. Texts arriving while a request runs join one queued
  prompt, which runs next; queued prompts survive restarts (`actors.chat_batch`).
- A request's life (progress message, typing, the result) is `actors.chat_request`; it returns
  a `RequestOutcome` that `actors.chat_running` applies to the session (counters, thread,
  summary); that module also starts requests and keeps the running one on record. A
  request that fails under the bot is reported once and never queued again; only a shutdown
  (`Interrupted`) puts its prompt back in the queue, and only while Codex had not acted on it
  (else it is offered with "Run again" at the next start: `actors.chat_settle`).
- The session file records the running request (and its progress message) and the parts of a
  paste not started yet. A start that finds a running request there (the bot was killed)
  closes its progress message and offers it with a "Run again" button, never running it by
  itself.
- A prompt sent while the bot was offline that waited at Telegram longer than
  ``sessions.stale_after`` is offered with a "Run now" button, not run (`actors.chat_late`).
- Text runs; photos, files and voice notes are served by `actors.chat_files` (a photo runs
  with its caption as an image input, a file is saved in the working directory's inbox). Any
  other message that is not text (a sticker, a poll...) is answered once with what it was
  and that it is not used; a caption is not run without its picture or file
  (`chat_texts.not_text`). Edits are answered, never applied.
- Approvals relayed by the pool are shown and decided by `actors.chat_approvals`; this actor
  routes the button presses to them.
- Commands (/mode, /profile, /status, /new, /cancel, /help) are carried out by
  `actors.chat_commands` on this actor's state; /model, /effort and /usage by
  `actors.chat_model`. The buttons of the "Queued" notice (steer) and of a result that left
  commands running (Stop) are `actors.chat_steer` and `actors.chat_background`; /sessions,
  /bind and /branch (and their buttons) by `actors.chat_sessions`, `actors.chat_topics` and
  `actors.chat_branches`. A request follows the chat's or topic's binding when it starts,
  and holds its branch worktree while it runs.
- The session file is written on every change (`SessionStore`, atomic). A message from the
  router is marked handled (the poller may then confirm it to Telegram) only after the chat
  dealt with it, so a prompt is on disk first; the save that keeps a prompt keeps its update
  id too, and an update id the session already holds is skipped (Telegram sent it again
  after a kill that came before the poller recorded it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, assert_never

import msgspec
import trio

from actors import (
    chat_batch,
    chat_branches,
    chat_buttons,
    chat_commands,
    chat_files,
    chat_late,
    chat_recovery,
    chat_running,
    chat_texts,
)
from actors.chat_approvals import Approvals
from actors.chat_output import ChatOutput
from actors.chat_request import FINISH_GRACE, Request, RequestOutcome, serve_request
from actors.chat_sync import SyncBehind
from orchestrator import disk, words
from orchestrator.messages import DiskRefused, InboundCallback, InboundMessage, TraceRecord
from orchestrator.redaction import redact_secrets
from orchestrator.session_store import SessionState

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors.telegram_outbox import Outbox
    from orchestrator.config import Config, Profile
    from orchestrator.messages import RouterMsg, SenderMsg, SendReply, SessionKey
    from orchestrator.ports import CodexPool, GitWorktrees, TelegramFiles, TraceEmit
    from orchestrator.session_store import SessionStore
    from orchestrator.topic_bindings import TopicBindings

__all__ = ["ChatDeps", "mark_handled", "run"]

UPDATES_KEPT: Final = 16
"""Update ids of prompts a session file remembers: Telegram redelivers at most the batch the
poller had not confirmed when the bot died, and a chat gets few of those."""

UNSAVED_INTERVAL: Final = 3600.0
"""Seconds between two `DiskRefused` a chat hands the sender (which tells the chat)."""


@dataclass(frozen=True)
class ChatDeps:
    """Everything a chat actor needs, assembled by the router."""

    sender: trio.MemorySendChannel[SenderMsg]
    pool: CodexPool
    store: SessionStore
    config: Config
    trace: TraceEmit
    save_trouble: disk.DiskTrouble = field(default_factory=lambda: disk.DiskTrouble("sessions"))
    """Session writes the disk refused: logged at most once a minute for all chats."""
    syncs: disk.SyncBatches = field(default_factory=disk.SyncBatches)
    """Makes the chats' writes durable behind them, in batches (`actors.chat_sync`)."""
    files: TelegramFiles | None = None
    """Downloads what users send (photos, files); None: they are answered as unreadable."""
    topics: TopicBindings | None = None
    """What each chat or topic is bound to (``/bind``, ``/branch``); None: no bindings."""
    git: GitWorktrees | None = None
    """Git for ``/branch``; None: branch worktrees are not available."""
    worktree_locks: dict[str, trio.Lock] = field(default_factory=dict)
    """One running request per branch worktree, across all chats (`actors.chat_branches`)."""
    outbox: Outbox | None = None
    """Where the chat's replies go before the sender takes them (`actors.chat_output`)."""
    secrets: tuple[str, ...] = ()
    """What must never reach a chat (the bot token). The sender redacts every text and file
    it sends; a zip's files are redacted before they are compressed, where it cannot look."""
    own_files: tuple[str, ...] = ()
    """The files holding the bot's secrets (the config, ``.env``, the token file): ``/get``
    refuses them under any name, a hard link included."""
    forced: Callable[[], bool] = lambda: False
    """Whether the stop under way was forced (a second signal): then nothing reaches the user
    any more, so a request it stops is left on record as a kill leaves it."""


class Chat:
    """State and behaviour of one chat actor (all methods run in its nursery; the commands in
    `actors.chat_commands` act on it too)."""

    def __init__(self, key: SessionKey, deps: ChatDeps, nursery: trio.Nursery) -> None:
        self.key = key
        self.deps = deps
        self.config = deps.config
        self.nursery = nursery
        self.conversation = key.file_stem()
        self.out = ChatOutput(
            key, deps.sender, deps.trace, outbox=deps.outbox, write_behind=self.write_reply
        )
        self.behind = SyncBehind(deps.store.path_for(key), deps.syncs)
        self.last_saved: SessionState | None = None
        """The state as this chat last wrote it (states are replaced, never changed)."""
        self.approvals = Approvals(
            self.out,
            timeout=self.config.sessions.approval_timeout,
            on_asked=lambda: chat_running.stop_waiting_for_answers(self),
            on_open=lambda questions: chat_running.remember_questions(self, questions),
        )
        self.state = SessionState(
            mode=self.config.profiles[self.config.default_profile].default_mode,
            profile=self.config.default_profile,
        )
        self.forum = False
        """The chat has topics: the latest message or press said so (`actors.chat_topics`
        names a place without a topic "General topic" then)."""
        self.request: Request | None = None
        self.requests_started = 0
        self.batch: list[str] = []
        self.batch_images: list[str] = []
        """The photos of the album being collected (`actors.chat_files`), in order."""
        self.album: str | None = None
        """The ``media_group_id`` of the album being collected (photos or files)."""
        self.album_captioned = False
        """Whether it has a caption (or a text sent with it): else a default prompt leads."""
        self.refused_album: str | None = None
        """The last album whose photos were refused (the MCP backend, or a request running):
        told once, not per photo."""
        self.batch_due = math.inf
        self.closing = False
        """The inbox ended (the bot is stopping) or the actor is ending: nothing new starts."""
        self.joinable = False
        """The last queued prompt takes more messages (it was queued by this process)."""
        self.joined = 0
        """Messages offered to the last queued prompt: joined, then refused once it is full
        (`sessions.queue_limit`), so only the first refused is told."""
        self.unsaved_told_at = -math.inf
        self.steer_offers: dict[str, tuple[str, int]] = {}
        """Open "Add to the running request" offers (`actors.chat_steer`)."""
        self.confirmations: dict[str, str] = {}
        """Questions awaiting a button press (``/branch rm``): token → what it confirms."""
        self.reading = False
        """A ``/get`` or ``/diff`` runs behind the inbox (`actors.chat_commands`)."""

    # ------------------------------------------------------------------ output

    def for_codex(self, text: str) -> tuple[bool, str]:
        """`text` as Codex may be given it, without the bot's own secrets (a user may paste
        the token by mistake; the agent must never hold it), and whether one was taken out:
        then the user is told (`chat_texts.SECRET_IN_PROMPT`)."""
        cleaned = redact_secrets(text, self.deps.secrets)
        return cleaned != text, cleaned

    def preview(self, text: str) -> str | None:
        limit = self.config.traces.preview_chars
        return chat_texts.user_words(text)[:limit] if limit else None

    async def save(self) -> None:
        """Save the session; a disk that refuses (full, read-only) does not crash the chat:
        it serves on from memory, the failure is logged (at once, then at most once a minute)
        and the sender tells the chat, once an hour, that the disk refuses (with a reply's
        outbox entry that fails too: one notice, not two).

        On return the save survives a kill; its fsync follows behind (`actors.chat_sync`). A
        reply said before it is synced first, so a power loss never leaves a session file that
        says a request is over beside an outbox that lost its result."""
        if self.behind.holds_replies():
            await self.behind.sync()
        state = self.state
        try:
            await self.deps.store.save(self.key, state, durable=False)
        except OSError as error:
            self.deps.save_trouble.failed(error)
            now = trio.current_time()
            if now >= self.unsaved_told_at + UNSAVED_INTERVAL:
                self.unsaved_told_at = now
                await self.deps.sender.send(
                    DiskRefused(chat_id=self.key.chat_id, thread_id=self.key.thread_id)
                )
        else:
            self.deps.save_trouble.succeeded()
            self.last_saved = state
            self.behind.session_saved = True
            self.nursery.start_soon(self.behind.sync)

    def write_reply(self, outbox: Outbox, number: int, reply: SendReply) -> None:
        """Write the outbox entry of a reply the sender already has, and sync it, behind."""
        self.behind.write_reply(self.nursery, outbox, number, reply)

    async def mark_handled_when_synced(self, message: RouterMsg) -> None:
        """Tell the poller `message` is taken once what handling it wrote is durable (the
        poller then confirms it to Telegram, which will not send it again)."""
        try:
            await self.behind.sync()
        finally:
            mark_handled(message)

    @property
    def profile(self) -> Profile:
        profile = self.config.profiles.get(self.state.profile)
        if profile is None or not profile.allows(self.key.user_id):
            return self.config.profiles[self.config.default_profile]
        workspace = self.state.workspace  # a branch worktree of its repository (/branch)
        if workspace and Path(workspace).is_relative_to(profile.worktrees_folder()):
            return msgspec.structs.replace(profile, working_directory=workspace)
        return profile

    def usable_profiles(self) -> list[str]:
        """The profiles this chat's user may use (profiles are permissions)."""
        return [n for n, p in self.config.profiles.items() if p.allows(self.key.user_id)]

    # ------------------------------------------------------------------ lifecycle

    async def load(self) -> None:
        loaded = await self.deps.store.load(self.key)
        if loaded.corrupt_moved_to is not None:
            self.out.trace(
                TraceRecord(
                    event="session_corrupt", detail=f"moved to {loaded.corrupt_moved_to.name}"
                )
            )
            await self.out.say(chat_texts.SESSION_CORRUPT)
        if loaded.dropped_queue:  # a queue the bot did not write (session_store): not run
            self.out.trace(
                TraceRecord(event="session_corrupt", detail="queue not written by this bot")
            )
            await self.out.say(chat_texts.dropped_queue(loaded.dropped_queue), plain=True)
        if loaded.state is not None:
            state = self.last_saved = loaded.state
            if state.profile not in self.usable_profiles():
                state = msgspec.structs.replace(
                    state,
                    profile=self.config.default_profile,
                    developer_thread_id=None,
                    developer_worker_id=None,
                    workspace="",
                )
            self.state = state

    def idle(self) -> bool:
        return (
            self.request is None
            and not self.batch
            and not self.batch_images
            and not self.state.queue
        )

    # ------------------------------------------------------------------ inbox

    async def handle(self, message: InboundMessage | InboundCallback) -> None:
        request = self.request
        if request is not None and request.reported:
            # The user has the answer, so for them nothing runs: a message sent right after
            # it (/new, a next prompt) waits the moment the request needs to be recorded,
            # instead of being told a request is running or queued behind it.
            with trio.move_on_after(FINISH_GRACE):
                await request.settled.wait()
        if message.update_id in self.state.updates:
            # Dealt with before a kill that came before the poller could record it: Telegram
            # sent it again, but it is queued, done or on record already.
            self.out.trace(
                TraceRecord(event="update", update_id=message.update_id, outcome="duplicate")
            )
            return
        self.forum = message.forum
        match message:
            case InboundMessage():
                await self.on_message(message)
            case InboundCallback():
                await chat_buttons.on_press(self, message)
            case _:
                assert_never(message)
        if message.update_id not in self.state.updates:
            # A command, a press, a file: done, so on record before the poller confirms it
            # (a text went on record with the save that keeps it). Run twice, a /cancel
            # would stop what the next request left running, a "Run again" run twice.
            self.remember_update(message.update_id)
        if self.state is not self.last_saved:
            await self.save()

    def remember_update(self, update_id: int) -> None:
        """Keep `update_id` among the session's latest, for the next save to write."""
        updates = (*self.state.updates, update_id)[-UPDATES_KEPT:]
        self.state = msgspec.structs.replace(self.state, updates=updates)

    async def on_message(self, message: InboundMessage) -> None:
        if message.chat_type != "private":  # answers say whose message they answer
            self.out.quoting = message.message_id
        if message.edited:
            self.out.trace(
                TraceRecord(event="update", update_id=message.update_id, outcome="edited_ignored")
            )
            await self.out.say(chat_texts.edited_ignored(message.command), plain=True)
            return
        if message.content_kind != "text" and await chat_files.on_media(self, message):
            return
        if message.content_kind != "text":
            # Not even a caption's command: the whole message is answered as what it is.
            self.out.trace(
                TraceRecord(
                    event="update",
                    update_id=message.update_id,
                    outcome="not_text",
                    detail=message.content_kind,
                )
            )
            text = chat_texts.not_text(message.content_kind, captioned=bool(message.text))
            await self.out.say(text, plain=True)
            return
        if message.command is not None:
            self.out.trace(
                TraceRecord(event="command", command=message.command, update_id=message.update_id)
            )
            await chat_commands.on_command(self, message.command, message.command_args)
            return
        if message.text is None or not words.has_visible(message.text):
            await self.out.say(chat_texts.no_words(message), plain=True)
            return
        if message.late:  # sent while the bot was offline: offered, not run
            await chat_late.offer(self, message, chat_texts.prompt_text(message.text, message))
            return
        # The save that keeps the text keeps its update id too: one write says both.
        self.remember_update(message.update_id)
        # A split paste is judged on the user's own words, not on what a reply quotes.
        split_part = chat_batch.is_split_part(message.text)
        await self.on_text(chat_texts.prompt_text(message.text, message), split_part=split_part)

    async def on_text(self, text: str, *, split_part: bool = False) -> None:
        """A prompt's text: collected while idle, queued behind a running request."""
        if self.request is None and not self.state.queue:
            await chat_batch.collect(self, text, split_part=split_part)
            return
        await chat_batch.queue_text(self, text)

    async def collect_album(
        self, album: str, *, image: str | None = None, note: str = "", caption: str = ""
    ) -> None:
        """A part of an album (`chat_batch.collect_album`)."""
        await chat_batch.collect_album(self, album, image=image, note=note, caption=caption)

    # ------------------------------------------------------------------ buttons

    # ------------------------------------------------------------------ serving a request

    async def serve(self, request: Request) -> None:
        """Serve one request to its end (result, failure or cancel), then start the next."""
        self.out.trace(
            TraceRecord(
                event="run_start",
                mode=request.mode,
                profile=self.state.profile,
                preview=self.preview(request.prompt),
            )
        )
        outcome: RequestOutcome | None = None
        try:
            async with chat_branches.exclusive(self, request):
                outcome = await serve_request(
                    request,
                    out=self.out,
                    approvals=self.approvals,
                    pool=self.deps.pool,
                    profile=self.profile,
                    session=self.state,
                    conversation=self.conversation,
                    on_shown=lambda message_id: chat_running.remember_live(
                        self, request, message_id
                    ),
                    git=self.deps.git,
                )
        finally:
            # No outcome only when the whole chat is being stopped (shutdown past its grace):
            # the user has been told, and an interruption keeps the prompt queued. A failure
            # under the request is a `Failed` outcome: reported once, never queued again.
            # A forced stop tells nobody: the request stays `running` on record, as after a
            # kill, and the next start closes its progress message and offers "Run again"
            # (Codex may have changed files: it is never run again unasked).
            if outcome is None and self.deps.forced():
                request.settled.set()
            else:
                await chat_running.end_request(self, request, outcome)
        await chat_running.start_next_queued(self)


def mark_handled(message: RouterMsg) -> None:
    """Tell the poller `message` needs nothing more (`orchestrator.messages._RouterBase`)."""
    if message.handled is not None:
        message.handled.set()


async def run(
    key: SessionKey,
    inbox: trio.MemoryReceiveChannel[InboundMessage | InboundCallback],
    deps: ChatDeps,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> Literal["idle", "closed"]:
    """Serve one chat until it has been idle for ``sessions.idle_ttl`` or its inbox ends.

    Inbox: `InboundMessage` / `InboundCallback` of this session key.
    Emits: `SenderMsg` to the sender (blocking when the sender is full: this chat only
        waits; a typing action is shed instead); `TraceRecord`s; Codex calls through the pool.
    Backpressure: the router never blocks on this inbox (it sheds when full).
    Shutdown: on end-of-channel, finishes the running request (the router bounds it with the
        drain grace; when cancelled, a shutdown notice goes out and the prompt is queued
        again for the next start) and returns "closed". Returns "idle" only with an empty
        inbox, so the router can drop the actor without losing a message.
    """
    async with trio.open_nursery() as nursery:
        chat = Chat(key, deps, nursery)
        await chat.load()
        await chat_recovery.recover(chat)
        task_status.started()
        await chat_running.start_next_queued(chat)
        result: Literal["idle", "closed"] = "closed"
        try:
            while True:
                if chat.idle():
                    deadline = trio.current_time() + chat.config.sessions.idle_ttl
                else:
                    deadline = chat.batch_due
                message = None
                with trio.move_on_at(deadline):
                    try:
                        message = await inbox.receive()
                    except trio.EndOfChannel:
                        chat.closing = True
                        chat_running.stop_waiting_for_answers(chat)
                        break
                if message is not None:
                    try:
                        await chat.handle(message)
                    except Exception:
                        mark_handled(message)  # it crashed the chat: never again
                        raise
                    # on disk (or answered): once synced, the poller may confirm it
                    nursery.start_soon(chat.mark_handled_when_synced, message)
                    continue
                if (chat.batch or chat.batch_images) and trio.current_time() >= chat.batch_due:
                    await chat_batch.flush_batch(chat)
                elif chat.idle() and inbox.statistics().current_buffer_used == 0:
                    result = "idle"
                    break
        finally:
            # A half-collected paste or album is on record as it is (`collect` saved it):
            # after the restart it waits for the rest again (`chat_recovery.recover`).
            chat.closing = True
        return result
