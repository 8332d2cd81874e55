"""Chat sessions on disk: ``state_dir/sessions/{chatId}-{userId}[-t{threadId}].json``.

This module owns the session file format (`SessionState`, versioned) and when it is written.
How is `orchestrator.disk`'s: atomically (a crash or a power loss leaves either the old or the
new file, never half of one), in a worker thread. The bot token (and anything shaped like one)
is redacted from every file written (`orchestrator.redaction`). A file that cannot be read is
set aside (``<name>.corrupt-<UTC time>``) and reported to the caller, which tells the user and
starts a fresh session: damage is never silently dropped and never a crash loop.
"""

from __future__ import annotations

import logging
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, final

import msgspec
import trio

from orchestrator import disk
from orchestrator.messages import SessionKey
from orchestrator.redaction import redact
from orchestrator.workflow_messages import TokenUsage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence


__all__ = [
    "SESSION_FORMAT_VERSION",
    "LoadedSession",
    "SessionCounters",
    "SessionState",
    "SessionStore",
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


class LoadedSession(msgspec.Struct, frozen=True, kw_only=True):
    """The result of `SessionStore.load`.

    `state` is None when there is no file or it was damaged; then `corrupt_moved_to` says
    where the damaged file went (None when there simply was no file).
    """

    state: SessionState | None
    corrupt_moved_to: Path | None = None


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
    newest: bytes = b""


@final
class SessionStore:
    """Reads and writes session files under `root` (``state_dir/sessions``).

    One store per process. Calls for one key come from that key's chat actor, but from more
    than one of its tasks (a run finishing while a message arrives): writes of one key are
    serialized in call order (trio's locks are fair), so the newest state is the one left.
    """

    def __init__(self, root: Path, *, secrets: Sequence[str] = ()) -> None:
        self.root = root
        self._secrets = tuple(secret for secret in secrets if secret)
        self._keys: dict[SessionKey, _KeyWrites] = {}

    def path_for(self, key: SessionKey) -> Path:
        """The file that holds `key`'s session."""
        return self.root / f"{key.file_stem()}.json"

    async def load(self, key: SessionKey) -> LoadedSession:
        """Read `key`'s session; a damaged file is set aside and reported, not raised."""
        return await disk.run_sync(self._load_blocking, key)

    async def save(self, key: SessionKey, state: SessionState) -> None:
        """Write `key`'s session atomically; on return it (or a newer state) is on disk.

        Saves of one key that pile up while one is being written coalesce: the next write
        takes the newest state, and the saves it supersedes return with it. A chat that
        gets five messages at once pays two fsyncs, not five (bench/scale.py).
        """
        async with self._exclusive(key) as writes:
            writes.requested += 1
            writes.newest = self._encode(state)
            wanted = writes.requested
            async with writes.lock:
                if writes.written >= wanted:
                    return  # a newer state went to disk while this one waited
                generation, data = writes.requested, writes.newest
                await disk.run_sync(disk.write_atomically, self.path_for(key), data)
                writes.written = generation

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

    def _load_blocking(self, key: SessionKey) -> LoadedSession:
        path = self.path_for(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return LoadedSession(state=None)
        try:
            state = _DECODER.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as error:
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
        return LoadedSession(state=state)

    async def keys_with_queue(self) -> list[SessionKey]:
        """Sessions that have prompts waiting (to resume them after a restart)."""
        return await disk.run_sync(self._keys_with_queue_blocking)

    def _keys_with_queue_blocking(self) -> list[SessionKey]:
        keys = []
        try:
            names = sorted(path.name for path in self.root.iterdir())
        except FileNotFoundError:
            return []
        for name in names:
            match = _FILE_NAME.match(name)
            if match is None:
                continue
            thread = int(match[3]) if match[3] else None
            key = SessionKey(chat_id=int(match[1]), user_id=int(match[2]), thread_id=thread)
            try:
                state = _DECODER.decode((self.root / name).read_bytes())
            except (OSError, msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                continue  # the chat's own load reports and sets it aside
            if state.queue:
                keys.append(key)
        return keys
