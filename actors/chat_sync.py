"""What one chat wrote without waiting for its fsync, and the sync behind it.

The chat's session saves and its replies' outbox entries are written with ``durable=False``
(on disk against a kill at once) and made to survive a power loss a moment later, in the
batches all chats share (`orchestrator.disk.SyncBatches`): *write now, sync behind*
(`orchestrator.disk`). The chat decides what waits for a sync (`actors.chat.Chat.save`,
`actors.chat.Chat.mark_handled_when_synced`); this module keeps what is still to sync.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, final

import trio

if TYPE_CHECKING:
    from pathlib import Path

    from orchestrator import disk

__all__ = ["SyncBehind"]


@final
class SyncBehind:
    """The files of one chat still to fsync: its session file, once saved since the last
    sync, and the outbox entries of its replies."""

    def __init__(self, session: Path, batches: disk.SyncBatches) -> None:
        self.session = session
        self.batches = batches
        self.session_saved = False
        """The session file was written since the last sync took it."""
        self.replies: list[Path] = []
        """Outbox files of replies said but not yet fsync'd."""
        self._lock = trio.Lock()

    async def sync(self) -> None:
        """Make the replies said and the saves written so far survive a power loss, replies
        first. Syncs asked for while one runs are covered by the next one: a burst of saves
        costs two. A refused batch (logged by the batches) leaves the session file to the
        next sync; the replies' entries are not tried again."""
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
