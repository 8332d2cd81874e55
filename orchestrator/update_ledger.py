"""The exactly-once record of Telegram updates: ``state_dir/updates.json``.

Telegram redelivers every update whose offset was not confirmed, so after a crash, a SIGKILL
or a restart the poller sees updates it already handed to the router. The ledger remembers the
ids of the most recent updates handed off (and the highest id ever seen) so that such an
update is skipped instead of starting a second run. Membership, not comparison, decides:
Telegram picks a random, possibly lower, id after a week without updates, and those must
still be accepted.

The poller records an id once the chat took the update (it is in the session file) and
persists the ledger once per batch, before the offset confirms the batch at Telegram. A kill
between the chat's save and this write makes Telegram send the update again; the chat
recognises a prompt by the update ids its session file keeps (`actors.chat`).

The ledger is written atomically but without fsync (`orchestrator.disk`): a crash or a
SIGKILL keeps what was written, and after a power loss an older ledger only means that the
last unconfirmed batch comes again, whose prompts the session files (fsync'd) recognise; a
command among them may run twice. One fsync less per message on the way to Codex's answer
(docs/performance.md, overhead).

The ledger also keeps `caught_up`: when the bot last had every update Telegram held (the
start of the latest getUpdates that came back short of its limit, on this machine's clock). A
message sent after that moment that arrives much later waited at Telegram while the bot was
down or cut off (`actors.telegram_poller`, late messages). It is written with each batch and
at the poller's stop; absent (a first start, or a ledger from before it was kept), no message
counts as late until the first poll.

A damaged file is set aside (``.corrupt-<time>``) and logged; the ledger starts empty (the
worst case is one redelivered batch, never a crash loop). So is a symlink, folder or FIFO
in its place (never followed, never waited on).
A file that cannot be read at all (an I/O error, a folder in its place) is logged and the
ledger starts empty too. `persist` raises `OSError` when the disk refuses the write; the poller
then goes on with the ledger in memory (see `actors.telegram_poller`).
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from typing import TYPE_CHECKING, Final, final

import msgspec

from orchestrator import disk

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["RECENT_IDS_KEPT", "UpdateLedger"]

logger: Final = logging.getLogger(__name__)

RECENT_IDS_KEPT: Final = 2000
"""Ids remembered: far more than one getUpdates batch (≤ 100) can redeliver."""


class _LedgerFile(msgspec.Struct, frozen=True, kw_only=True):
    version: int = 1
    high_water: int | None = None
    recent: tuple[int, ...] = ()
    caught_up: float | None = None


_DECODER: Final = msgspec.json.Decoder(_LedgerFile)
_ENCODER: Final = msgspec.json.Encoder()


@final
class UpdateLedger:
    """Which update ids were already handed to the router. Owned by the poller alone."""

    def __init__(
        self,
        path: Path,
        high_water: int | None,
        recent: tuple[int, ...],
        caught_up: float | None = None,
    ) -> None:
        self.path = path
        self.high_water = high_water
        self.caught_up = caught_up
        """When the bot last had every update Telegram held (Unix seconds), if known."""
        self._order: deque[int] = deque(recent[-RECENT_IDS_KEPT:])
        self._members = set(self._order)
        self._dirty = False

    @classmethod
    async def open(cls, path: Path) -> UpdateLedger:
        """Load the ledger at `path` (absent → empty; damaged → set aside, empty)."""
        state = await disk.run_sync(_load, path)
        return cls(path, state.high_water, state.recent, state.caught_up)

    def seen(self, update_id: int) -> bool:
        """Whether `update_id` was handed off before."""
        return update_id in self._members

    def record(self, update_id: int) -> None:
        """Remember that `update_id` was handed off (persist with `persist`)."""
        if update_id in self._members:
            return
        self._order.append(update_id)
        self._members.add(update_id)
        while len(self._order) > RECENT_IDS_KEPT:
            self._members.discard(self._order.popleft())
        if self.high_water is None or update_id > self.high_water:
            self.high_water = update_id
        self._dirty = True

    def caught_up_at(self, when: float) -> None:
        """Every update Telegram held at `when` has been fetched (persisted with the next
        batch, or at the stop: one write per poll would buy nothing)."""
        if self.caught_up is None or when > self.caught_up:
            self.caught_up = when

    async def persist(self, *, stopping: bool = False) -> None:
        """Write the ledger atomically if it changed; `stopping`: whenever there is a
        `caught_up` to keep (it moves with nearly every poll)."""
        if not (self._dirty or (stopping and self.caught_up is not None)):
            return
        data = _ENCODER.encode(
            _LedgerFile(
                high_water=self.high_water, recent=tuple(self._order), caught_up=self.caught_up
            )
        )
        await disk.run_sync(
            functools.partial(disk.write_atomically, durable=False), self.path, data
        )
        self._dirty = False


def _load(path: Path) -> _LedgerFile:
    try:
        return _DECODER.decode(disk.read_regular(path))
    except FileNotFoundError:
        return _LedgerFile()
    except disk.DAMAGED as error:
        try:
            aside = disk.set_aside(path)
        except OSError as failure:
            logger.error(
                "cannot read the update ledger %s (%s); starting with an empty one", path, failure
            )
            return _LedgerFile()
        logger.error(
            "update ledger %s is damaged (%s); moved it to %s and started a new one",
            path,
            error,
            aside.name,
        )
        return _LedgerFile()
    except OSError as error:  # an I/O error: the ledger starts empty, the poller goes on
        logger.error(
            "cannot read the update ledger %s (%s); starting with an empty one", path, error
        )
        return _LedgerFile()
