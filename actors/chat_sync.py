"""What one chat wrote without waiting for its fsync, and the sync behind it.

The chat's session saves and its replies' outbox entries are written with ``durable=False``
(on disk against a kill at once) and made to survive a power loss a moment later, in the
batches all chats share (`orchestrator.disk.SyncBatches`): *write now, sync behind*
(`orchestrator.disk`). A reply's entry is written here too, while the sender already sends
it (`write_reply`): the user does not wait for the disk. A kill within that write loses the
reply only if Telegram did not have it yet, and its request is then still running on record
and offered again at the next start (`actors.telegram_outbox`). The chat decides what waits
for a sync (`actors.chat.Chat.save`, `actors.chat.Chat.mark_handled_when_synced`); this
module keeps what is still to write and to sync.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

import trio

if TYPE_CHECKING:
    from pathlib import Path

    from actors.telegram_outbox import Outbox
    from orchestrator import disk
    from orchestrator.messages import SendReply

__all__ = ["SyncBehind"]


@final
class SyncBehind:
    """The files of one chat still to write or fsync: its session file, once saved since the
    last sync, and the outbox entries of its replies."""

    def __init__(self, session: Path, batches: disk.SyncBatches) -> None:
        self.session = session
        self.batches = batches
        self.session_saved = False
        """The session file was written since the last sync took it."""
        self.replies: list[Path] = []
        """Outbox files of replies said but not yet fsync'd."""
        self.writing = 0
        """Replies whose outbox entry is still being written (`write_reply`)."""
        self._written = trio.Event()
        self._written.set()
        self._lock = trio.Lock()

    def write_reply(
        self, nursery: trio.Nursery, outbox: Outbox, number: int, reply: SendReply
    ) -> None:
        """Write `reply`'s outbox entry `number` (reserved) in `nursery`, then sync it; `sync`
        waits for the write first. A disk that refuses is logged by the outbox; the reply is
        then delivered from memory, and the sender says so in the chat (`Outbox.remove`)."""
        if not self.writing:
            self._written = trio.Event()
        self.writing += 1
        nursery.start_soon(self._write_reply, outbox, number, reply)

    async def _write_reply(self, outbox: Outbox, number: int, reply: SendReply) -> None:
        try:
            if await outbox.write(number, reply, durable=False):  # no checkpoint before it
                self.replies.append(outbox.path_of(number))
        finally:
            self.writing -= 1
            if not self.writing:
                self._written.set()
        await self.sync()

    def holds_replies(self) -> bool:
        """Whether a reply's entry is still to write or to fsync."""
        return bool(self.writing or self.replies)

    async def sync(self) -> None:
        """Make the replies said and the saves written so far survive a power loss, replies
        first. Syncs asked for while one runs are covered by the next one: a burst of saves
        costs two. A refused batch (logged by the batches) leaves the session file to the
        next sync; the replies' entries are not tried again."""
        await self._written.wait()
        async with self._lock:
            took_session = self.session_saved
            paths = [*self.replies, self.session] if took_session else self.replies
            if not paths:
                return
            self.replies, self.session_saved = [], False
            try:
                await self.batches.sync(paths)
            except OSError:
                self.session_saved = self.session_saved or took_session
