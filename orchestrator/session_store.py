"""Chat sessions on disk: ``state_dir/sessions/{chatId}-{userId}[-t{threadId}].json``.

This module owns the session file format (`SessionState`, versioned) and when it is written.
How is `orchestrator.disk`'s: atomically (a crash or a power loss leaves either the old or the
new file, never half of one), in a worker thread, or on the event loop for a save without
fsync while the disk is fast (`orchestrator.disk.InlineWrites`). The bot token (and anything
shaped like one) is redacted from every file written (`orchestrator.redaction`). A file that
cannot be read is set aside (``<name>.corrupt-<UTC time>``) and reported to the caller, which
tells the user and starts a fresh session: damage is never silently dropped and never a crash
loop. A symlink, folder or FIFO where a session file should be counts as damage
(`orchestrator.disk`).

Queued prompts and the waiting parts of a paste (``batch``) run after a restart on their own,
so a file that carries them must have been written by this bot: each file holds
``queue_mac``, an HMAC-SHA256 over its session key, its queue and its batch, with a key kept
in ``state_dir/session.key`` (32 random bytes, created 0600 at the first write). A queue whose
MAC does not match (planted, edited, or from before this check) is not run: it is dropped from
the state, logged, and reported in `LoadedSession.dropped_queue` so the chat tells its user.
What this does and does not stop is in docs/telegram-integration-runbook.md, "Threat model".
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import re
import secrets as random_secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, TypeVar, final

import msgspec
import trio

from orchestrator import disk, uncontended
from orchestrator.messages import SessionKey
from orchestrator.redaction import redact
from orchestrator.words import plural
from orchestrator.workflow_types import ContextFill, ThreadInstructions, TokenUsage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence


__all__ = [
    "SESSION_FORMAT_VERSION",
    "LateRecord",
    "LoadedSession",
    "QuestionRecord",
    "RequestRecord",
    "SessionCounters",
    "SessionState",
    "SessionStore",
    "ThreadRecord",
]

logger: Final = logging.getLogger(__name__)

SESSION_FORMAT_VERSION: Final = 1
"""Bumped when the file format changes incompatibly; older files are migrated on load."""


class SessionCounters(msgspec.Struct, frozen=True, kw_only=True):
    """Lifetime counters of one session, shown by /status and kept across restarts."""

    runs: int = 0
    failures: int = 0
    cancels: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


class QuestionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An approval question open while its request ran: its message, and what it asked."""

    message_id: int
    text: str


class RequestRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A request as the session file remembers it across a crash.

    Attributes:
        prompt: what the user asked.
        live_message_id: the Telegram message showing its progress, once shown.
        token: the unguessable token of its "Run again" button, once offered.
        images: the photos that went with the prompt (paths under ``state_dir/images``).
        counted: its end is in the counters and traces already: a stop told the user and
            recorded it, and the next start only offers it again (a kill records nothing).
        questions: its approval questions still open, once shown: after a kill the next
            start takes their buttons away and says why (`actors.chat_recovery`).
    """

    prompt: str
    live_message_id: int | None = None
    token: str = ""
    images: tuple[str, ...] = ()
    counted: bool = False
    questions: tuple[QuestionRecord, ...] = ()


class LateRecord(msgspec.Struct, frozen=True, kw_only=True):
    """Prompts sent while the bot could not fetch them (it was down, or cut off from
    Telegram) that waited there longer than ``sessions.stale_after``: offered with a "Run
    now" button, never run by themselves (`actors.chat_late`).

    Attributes:
        token: the unguessable token of the offer's button.
        texts: the prompts, in the order sent (a photo without caption adds none).
        images: the photos that came with them (paths under ``state_dir/images``).
        first_sent: when the earliest was sent (Telegram's ``date``, Unix seconds).
        messages: how many messages the offer holds.
        dropped: late messages not kept, past ``sessions.queue_limit`` (the user is told).
    """

    token: str
    texts: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    first_sent: int = 0
    messages: int = 0
    dropped: int = 0


class ThreadRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A Codex thread this chat worked on, for ``/sessions`` (`actors.chat_sessions`).

    Attributes:
        thread_id: the Codex thread (``codex resume <id>`` continues it at the desk).
        worker_id: the worker that hosted it last (an MCP thread lives only there).
        started: when its first request ran, ``YYYY-MM-DD HH:MM`` UTC.
        prompt: the start of its first prompt.
        cwd: the working directory it ran in.
        profile: the profile it ran under.
        summary: the conversation's recap when it was left (the preamble if it cannot be
            continued as it is).
        instructions: the digest of the developer instructions the thread has ("" when not
            known): a thread picked again keeps them, instead of being sent them once more.
    """

    thread_id: str
    worker_id: int | None = None
    started: str = ""
    prompt: str = ""
    cwd: str = ""
    profile: str = ""
    summary: str = ""
    instructions: str = ""


class SessionState(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """Everything a chat must remember across restarts.

    Attributes:
        version: `SESSION_FORMAT_VERSION` at the time of writing.
        mode: ``single`` or ``plan``.
        profile: the active profile's name.
        developer_thread_id: the Codex thread that continues this conversation, if any.
        developer_worker_id: the worker that hosts it (threads live in one process).
        summary: a short rolling summary of the conversation, used as the context preamble
            when the thread cannot be continued (its worker is gone).
        queue: prompts waiting for the running request, oldest first.
        counters: lifetime counters.
        last_usage: token usage of the last run.
        running: the request being served; still set at start only when the bot was killed
            under it (a graceful stop clears it).
        batch: texts received but not started yet (the parts of a long paste, or an
            album's captions).
        batch_images: the photos of an album received but not started yet (paths in
            ``state_dir/images``). A restart offers them with "Run again", never runs them by
            itself: they are not in the queue's HMAC.
        interrupted: the request a kill interrupted, offered with a "Run again" button.
        late: prompts sent while the bot was offline, offered with a "Run now" button.
        queue_mac: the HMAC of the key, the queue and the batch (module docstring); set by
            the store on write, checked and cleared on load.
        model: the chat's /model choice for its next turns ("" : the profile's).
        effort: the chat's /effort choice ("": the model's default).
        threads: the chat's recent Codex threads, newest first, bounded (``/sessions``).
        workspace: the folder the current thread runs in when it is not the profile's (a
            branch worktree, ``/branch``); "" for the profile's working directory.
        updates: the Telegram update ids of the latest prompts this file took, written with
            them: an update Telegram sends again after a kill is recognised here even when the
            update ledger did not record it yet (`actors.telegram_poller`).
        downloading: what is being downloaded from Telegram for this chat ("file notes.txt"),
            "" when nothing is; still set at start only when a kill interrupted the download.
        own_profile: the user's own profile while a binding (``/bind``) has put this session
            on another one, "" otherwise; with `own_mode`, what ``/bind off`` goes back to.
        own_mode: the user's own mode then ("" otherwise).
        context: how full the context of the thread it names is after its last run (shown
            while that thread is `developer_thread_id`: no reset to follow).
        instructions: the developer instructions the thread it names has, by digest (used
            while that thread is `developer_thread_id`, as `context`).
    """

    version: int = SESSION_FORMAT_VERSION
    mode: Literal["single", "plan"]
    profile: str
    developer_thread_id: str | None = None
    developer_worker_id: int | None = None
    summary: str = ""
    queue: tuple[str, ...] = ()
    counters: SessionCounters = SessionCounters()
    last_usage: TokenUsage | None = None
    running: RequestRecord | None = None
    batch: tuple[str, ...] = ()
    batch_images: tuple[str, ...] = ()
    interrupted: RequestRecord | None = None
    queue_mac: str = ""
    model: str = ""
    effort: str = ""
    threads: tuple[ThreadRecord, ...] = ()
    workspace: str = ""
    updates: tuple[int, ...] = ()
    downloading: str = ""
    own_profile: str = ""
    own_mode: Literal["single", "plan", ""] = ""
    context: ContextFill | None = None
    instructions: ThreadInstructions | None = None
    late: LateRecord | None = None

    @property
    def context_now(self) -> ContextFill | None:
        """`context` while its thread is still the one that continues the conversation."""
        return _of_thread(self.context, self.developer_thread_id)

    @property
    def instructions_now(self) -> ThreadInstructions | None:
        """`instructions` while their thread still continues the conversation."""
        return _of_thread(self.instructions, self.developer_thread_id)


_OfThread = TypeVar("_OfThread", ContextFill, ThreadInstructions)


def _of_thread(record: _OfThread | None, thread_id: str | None) -> _OfThread | None:
    """`record` when it is of `thread_id`; a record of an earlier thread means nothing now."""
    return record if record is not None and record.thread_id == thread_id else None


class LoadedSession(msgspec.Struct, frozen=True, kw_only=True):
    """The result of `SessionStore.load`.

    `state` is None when there is no file or it was damaged; then `corrupt_moved_to` says
    where the damaged file went (None when there simply was no file).
    """

    state: SessionState | None
    corrupt_moved_to: Path | None = None
    dropped_queue: int = 0
    """Queued prompts and batch parts not restored because the file's MAC did not match."""


_FILE_NAME: Final = re.compile(r"^(-?\d+)-(\d+)(?:-t(\d+))?\.json$")
_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(SessionState)


@dataclass
class _KeyWrites:
    """Writes of one session file: one at a time (trio's locks are fair), newest data wins."""

    lock: trio.Lock = field(default_factory=trio.Lock)
    users: int = 0
    requested: int = 0
    written: int = 0
    newest: SessionState | None = None


@final
class SessionStore:
    """Reads and writes session files under `root` (``state_dir/sessions``).

    One store per process. Calls for one key come from that key's chat actor, but from more
    than one of its tasks (a run finishing while a message arrives): writes of one key are
    serialized in call order (trio's locks are fair), so the newest state is the one left.
    """

    def __init__(self, root: Path, *, secrets: Sequence[str] = ()) -> None:
        self.root = root
        self.key_path = root.parent / "session.key"
        self._secrets = tuple(secret for secret in secrets if secret)
        self._mac_key: bytes | None = None
        self._keys: dict[SessionKey, _KeyWrites] = {}
        self._on_disk: set[str] | None = None
        """Names of the files in `root`, listed once and kept by this store's writes: a key
        without one has nothing to load, and its first message costs no thread hop."""
        self._writes = disk.InlineWrites(f"session files in {root}")
        """Saves without fsync: on the event loop while the disk is fast (the save before
        Codex sees a prompt is on every message's path)."""

    def path_for(self, key: SessionKey) -> Path:
        """The file that holds `key`'s session."""
        return self.root / f"{key.file_stem()}.json"

    async def load(self, key: SessionKey) -> LoadedSession:
        """Read `key`'s session; a damaged file is set aside and reported, not raised.

        A key whose file this store has not seen (the folder was listed once; files appear
        only through `save`: the bot owns ``state_dir``) is not looked for on disk."""
        if self._on_disk is None:
            self._on_disk = await disk.run_sync(_names, self.root)
        if self._on_disk is not None and self.path_for(key).name not in self._on_disk:
            return LoadedSession(state=None)
        mac_key = await self._key()
        return await disk.run_sync(self._load_blocking, key, mac_key)

    async def _key(self) -> bytes:
        if self._mac_key is None:
            self._mac_key = await disk.run_sync(_load_or_create_key, self.key_path)
        return self._mac_key

    async def save(self, key: SessionKey, state: SessionState, *, durable: bool = True) -> None:
        """Write `key`'s session atomically; on return it (or a newer state) is on disk.

        Saves of one key that pile up while one is being written coalesce: the next write
        takes the newest state, and the saves it supersedes return with it. A chat that
        gets five messages at once pays two writes, not five (bench/scale.py). `durable`
        False: no fsync (on disk against a kill; the caller syncs `path_for` the key behind,
        `orchestrator.disk.sync`), and written on the event loop while the disk is fast
        (`orchestrator.disk.InlineWrites`).
        """
        async with self._exclusive(key) as writes:
            writes.requested += 1
            writes.newest = state
            wanted = writes.requested
            await uncontended.acquire(writes.lock)
            try:
                if writes.written >= wanted:
                    return  # a newer state went to disk while this one waited
                generation, newest = writes.requested, writes.newest
                assert newest is not None  # set by every save before it waits
                data = self._encode(_signed(newest, key, await self._key()))
                path = self.path_for(key)
                if durable:
                    await disk.run_sync(disk.write_atomically, path, data)
                else:  # on the loop: the old file is left for the sync behind to remove
                    write = functools.partial(disk.write_atomically, durable=False, swap=True)
                    await self._writes.run(write, path, data)
                writes.written = generation
                if self._on_disk is not None:
                    self._on_disk.add(path.name)
            finally:
                writes.lock.release()

    def _encode(self, state: SessionState) -> bytes:
        """`state` as JSON with the secrets (the bot token) redacted: a prompt or a summary
        that quotes the token must not put it on disk. A token holds no character that JSON
        escapes, so redacting the encoded text finds it wherever it is."""
        return redact(_ENCODER.encode(state).decode(), self._secrets).encode()

    @asynccontextmanager
    async def _exclusive(self, key: SessionKey) -> AsyncIterator[_KeyWrites]:
        """`key`'s write state, forgotten once nobody needs it."""
        writes = self._keys.get(key)
        if writes is None:
            writes = self._keys[key] = _KeyWrites()
        writes.users += 1
        try:
            yield writes
        finally:
            writes.users -= 1
            if not writes.users:
                del self._keys[key]

    def _load_blocking(self, key: SessionKey, mac_key: bytes) -> LoadedSession:
        path = self.path_for(key)
        try:
            data = disk.read_regular(path)
            state = _DECODER.decode(data)
        except FileNotFoundError:
            return LoadedSession(state=None)
        except disk.DAMAGED as error:
            moved_to = disk.set_aside(path)
            logger.error(
                "session file %s is damaged (%s); moved it to %s and started afresh",
                path,
                error,
                moved_to.name,
            )
            return LoadedSession(state=None, corrupt_moved_to=moved_to)
        if state.version > SESSION_FORMAT_VERSION:
            moved_to = disk.set_aside(path)
            logger.error(
                "session file %s has format %d, newer than this release (%d); moved it to %s",
                path,
                state.version,
                SESSION_FORMAT_VERSION,
                moved_to.name,
            )
            return LoadedSession(state=None, corrupt_moved_to=moved_to)
        if (state.queue or state.batch) and not _queue_is_ours(state, key, mac_key):
            dropped = len(state.queue) + len(state.batch)
            logger.error(
                "session file %s holds %s this bot did not write; not run",
                path,
                plural(dropped, "waiting prompt"),
            )
            unsigned = msgspec.structs.replace(state, queue=(), batch=(), queue_mac="")
            return LoadedSession(state=unsigned, dropped_queue=dropped)
        return LoadedSession(state=msgspec.structs.replace(state, queue_mac=""))

    async def keys_with_queue(self) -> list[SessionKey]:
        """Sessions that have prompts waiting, or a request or a download a kill interrupted
        (to resume or report them after a restart); a queue or batch this bot did not write
        does not count."""
        mac_key = await self._key()
        return await disk.run_sync(self._keys_with_queue_blocking, mac_key)

    def _keys_with_queue_blocking(self, mac_key: bytes) -> list[SessionKey]:
        keys: list[SessionKey] = []
        try:
            names = sorted(path.name for path in self.root.iterdir())
        except FileNotFoundError:
            return keys
        for name in names:
            match = _FILE_NAME.match(name)
            if match is None:
                continue
            thread = int(match[3]) if match[3] else None
            key = SessionKey(chat_id=int(match[1]), user_id=int(match[2]), thread_id=thread)
            try:
                state = _DECODER.decode(disk.read_regular(self.root / name))
            except (OSError, *disk.DAMAGED):
                continue  # the chat's own load reports and sets it aside
            waiting = (state.queue or state.batch) and _queue_is_ours(state, key, mac_key)
            if waiting or state.running is not None or state.downloading:
                keys.append(key)
        return keys


def _names(folder: Path) -> set[str] | None:
    """The names in `folder` (none when it does not exist yet); None when it cannot be
    listed (then every load looks on disk, and reports what it finds there)."""
    try:
        return {path.name for path in folder.iterdir()}
    except FileNotFoundError:
        return set()
    except OSError:
        return None


MAC_KEY_BYTES: Final = 32


def _load_or_create_key(path: Path) -> bytes:
    """The session MAC key at `path`, created (0600, never through a symlink) if missing.

    Created whole or not at all: written to a temporary file, then hard-linked into place,
    which fails if another process made the key first (then its key is used).
    """
    try:
        data = disk.read_regular(path)
    except FileNotFoundError:
        disk.ensure_folder(path.parent)
        fresh = random_secrets.token_bytes(MAC_KEY_BYTES)
        temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}-{id(fresh)}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(temporary, flags, disk.FILE_MODE), "wb") as handle:
            handle.write(fresh)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            data = disk.read_regular(path)
        else:
            data = fresh
        finally:
            temporary.unlink()
    if len(data) < MAC_KEY_BYTES:
        raise disk.NotARegularFile(0, "the session key is too short", str(path))
    return data


def _queue_mac(state: SessionState, key: SessionKey, mac_key: bytes) -> str:
    """The HMAC of what runs after a restart by itself: the queue and the batch."""
    message = _ENCODER.encode([key.file_stem(), list(state.queue), list(state.batch)])
    return hmac.new(mac_key, message, hashlib.sha256).hexdigest()


def _signed(state: SessionState, key: SessionKey, mac_key: bytes) -> SessionState:
    mac = _queue_mac(state, key, mac_key) if state.queue or state.batch else ""
    return msgspec.structs.replace(state, queue_mac=mac)


def _queue_is_ours(state: SessionState, key: SessionKey, mac_key: bytes) -> bool:
    return hmac.compare_digest(state.queue_mac, _queue_mac(state, key, mac_key))
