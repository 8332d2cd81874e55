"""The durable outbox: ``state_dir/outbox/``, results kept on disk until Telegram took them.

A `SendReply` (a result, a command answer, a notice: what must arrive) is written here by the
chat that says it, while the sender already has it (`actors.chat_output`,
`actors.chat_sync`); the router's notices before the sender has them; a reply that reaches
the sender without an entry, by the sender as it arrives. It is deleted once Telegram
accepted every part of it (or refused it for good: a 400
that no retry can fix, a chat that blocked the bot; those are traced as undelivered).
Everything else the sender handles (progress edits, typing actions, callback answers) stays
lossy on purpose.

One file per entry, ``{number:012d}.json``, written atomically through `orchestrator.disk`.
Numbers grow in the order replies were written, across restarts (the next start
continues after the highest number on disk), so sorting the files by name restores each
chat's order. On start the sender queues every entry in its chat's lane before it reads
anything new, so a result left over from the last run goes out before the new ones of that
chat.

What exactly-once means here:

- A chat's reply goes to the sender with its entry number taken (`reserve`) and its entry
  being written (`write`), without waiting for either the write or the fsync: the user does
  not wait for the disk. A SIGKILL before the write ended loses the reply only if Telegram
  did not have it yet, and then the session file still says its request runs, so the next
  start offers to run it again, as a kill just before the reply was said does. After the
  write, a kill loses nothing: the next start sends it. The sender's `remove` of a
  delivered entry waits for its write, so an entry is never written after its deletion
  (it would be sent again). The chat fsyncs the entry behind (`orchestrator.disk.sync`,
  `actors.chat_sync.SyncBehind`), before its next session save: a power loss within that
  millisecond can lose a reply not yet sent, but never while the session file says its
  request is over. The router's own notices ("busy", "session reset") are fsync'd before
  the sender has them.
- Two replies one chat says at once (its request's result and a command's answer) are
  numbered in the order they were said but may reach the sender in the other order; after a
  restart they go out in number order.
- If the process dies after Telegram answered 200 but before the entry is deleted, the next
  start sends the reply again: a duplicate, never a loss. Telegram has no idempotency key for
  ``sendMessage``, so this window (one HTTP response and one unlink) cannot be closed. A
  reply split into several messages records each part Telegram took (`mark_delivered`, a
  ``.sent`` file beside the entry, written without an fsync: it is there for a kill, not a
  power loss), so the next start sends only the parts after it: the window is one part.
- A damaged entry is set aside (``.corrupt-<time>``) and reported, never a crash loop.
- When the disk refuses the write (full, read-only, over quota) the reply is still delivered
  from memory; it is only not durable. `orchestrator.disk.DiskTrouble` says so in the log,
  at most once a minute.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

import msgspec
import trio

from orchestrator import disk
from orchestrator.messages import SendReply
from orchestrator.redaction import redact_outbound

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = ["Outbox", "OutboxEntry"]

logger: Final = logging.getLogger(__name__)

_SUFFIX: Final = ".json"
_SENT: Final = ".sent"
"""Beside an entry: how many of its parts Telegram took (`Outbox.mark_delivered`)."""


class _StoredEntry(msgspec.Struct, frozen=True, kw_only=True):
    version: int = 1
    reply: SendReply


_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(_StoredEntry)


@final
@dataclass(frozen=True)
class OutboxEntry:
    """One reply kept on disk: its number (the file name) and the reply."""

    number: int
    reply: SendReply
    delivered: int = 0
    """Parts of it Telegram took before the process stopped (see `Outbox.mark_delivered`)."""


@final
class Outbox:
    """The durable entries: written by the chats and the sender, deleted by the sender.

    No locking is needed: a number is taken before the first checkpoint of `put` (or by
    `reserve`), and every entry is its own file.
    """

    def __init__(self, folder: Path, next_number: int, *, secrets: Sequence[str] = ()) -> None:
        self.folder = folder
        self._next = next_number
        self._secrets = tuple(secrets)
        self._writing: dict[int, trio.Event] = {}
        """Reserved entries not written yet: their `remove` waits for the write."""
        self._refused: set[int] = set()
        """Reserved entries the disk refused: their replies go out from memory only."""
        self._delivered: dict[int, int] = {}
        """Entries partly delivered: how many parts Telegram took (`mark_delivered`)."""
        self.trouble = disk.DiskTrouble(f"undelivered replies in {folder}")

    @classmethod
    async def open(
        cls, folder: Path, *, secrets: Sequence[str] = ()
    ) -> tuple[Outbox, list[OutboxEntry]]:
        """Open `folder` and return the outbox and the entries left from earlier runs, in
        order (damaged ones set aside and logged). `secrets` (the bot token) are cut out of
        every entry before it is written."""
        entries, highest = await disk.run_sync(_load, folder)
        if entries:
            logger.warning(
                "%d reply(ies) from an earlier run were not delivered yet; sending them first",
                len(entries),
            )
        outbox = cls(folder, highest + 1, secrets=secrets)
        outbox._delivered = {entry.number: entry.delivered for entry in entries if entry.delivered}
        return outbox, entries

    def delivered(self, number: int) -> int:
        """How many parts of entry `number` Telegram already took (0: none, or unknown)."""
        return self._delivered.get(number, 0)

    async def mark_delivered(self, number: int, parts: int) -> None:
        """Telegram took the first `parts` parts of entry `number`: a restart sends only the
        rest. Best effort: a disk that refuses costs a duplicate part after a kill, no more."""
        self._delivered[number] = parts
        try:
            with trio.CancelScope(shield=True):
                write = functools.partial(disk.write_atomically, durable=False)
                await disk.run_sync(write, self._sent_path(number), f"{parts}\n".encode())
        except OSError as error:
            self.trouble.failed(error)

    async def put(self, reply: SendReply) -> int | None:
        """Write `reply` durably; its entry number, or None when the disk refused (logged,
        rate-limited: the reply is then delivered from memory only)."""
        number = self.reserve()
        if await self.write(number, reply):
            return number
        self._refused.discard(number)  # never handed over: nobody removes it
        return None

    def reserve(self) -> int:
        """Take the next entry number for a reply whose `write` follows (a chat hands the
        reply to the sender while its entry is being written: `actors.chat_sync`). Until
        that write ends, `remove` of the number waits for it, so an entry delivered before it
        was on disk is still deleted, not sent again at the next start."""
        number = self._next
        self._next += 1
        self._writing[number] = trio.Event()
        return number

    async def write(self, number: int, reply: SendReply, *, durable: bool = True) -> bool:
        """Write entry `number` (from `reserve`); False when the disk refused (logged,
        rate-limited). Not cancelled halfway: a reply the sender already has keeps its
        entry. `durable` False: on disk against a kill, and the caller makes it survive a
        power loss with `disk.sync` of `path_of` its number."""
        redacted = redact_outbound(reply, self._secrets)
        assert isinstance(redacted, SendReply)
        data = _ENCODER.encode(_StoredEntry(reply=redacted))
        try:
            with trio.CancelScope(shield=True):
                write = functools.partial(disk.write_atomically, durable=durable)
                await disk.run_sync(write, self.path_of(number), data)
        except OSError as error:
            self.trouble.failed(error)
            self._refused.add(number)
            return False
        finally:
            written = self._writing.pop(number, None)
            if written is not None:
                written.set()
        self.trouble.succeeded()
        return True

    async def remove(self, number: int) -> bool:
        """Forget entry `number` (delivered, or given up for good and traced), once its
        write (if it is still going on) has ended; False if the disk had refused that write
        (its reply was kept in memory only: the sender says so in the chat)."""
        writing = self._writing.get(number)
        if writing is not None:
            await writing.wait()
        if number in self._refused:
            self._refused.discard(number)
            return False
        try:
            await disk.run_sync(_unlink, self.path_of(number))
        except OSError as error:  # the next start sends it again: a duplicate, not a loss
            self.trouble.failed(error)
        if self._delivered.pop(number, None) is not None:
            with contextlib.suppress(OSError):  # an orphan .sent is ignored at the next start
                await disk.run_sync(_unlink, self._sent_path(number))
        return True

    def path_of(self, number: int) -> Path:
        """The file of entry `number`."""
        return self.folder / f"{number:012d}{_SUFFIX}"

    def _sent_path(self, number: int) -> Path:
        return self.folder / f"{number:012d}{_SENT}"


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _delivered_parts(path: Path) -> int:
    """The count in an entry's ``.sent`` file; 0 when there is none or it cannot be read."""
    try:
        return max(0, int(disk.read_regular(path).decode().strip() or 0))
    except (OSError, ValueError, *disk.DAMAGED):
        return 0


def _load(folder: Path) -> tuple[list[OutboxEntry], int]:
    """The entries in `folder` in number order, and the highest number seen (0: none)."""
    try:
        listed = list(folder.iterdir())
    except FileNotFoundError:
        return [], 0
    except OSError as error:  # not a folder, unreadable: serve on, from memory only
        logger.error("cannot read the outbox %s (%s); starting without it", folder, error)
        return [], 0
    names = sorted(path for path in listed if path.name.endswith(_SUFFIX))
    for orphan in {p for p in listed if p.name.endswith(_SENT)} - {
        p.with_suffix(_SENT) for p in names
    }:
        with contextlib.suppress(OSError):  # its entry is gone: delivered, or never written
            orphan.unlink()
    entries: list[OutboxEntry] = []
    highest = 0
    for path in names:
        try:
            number = int(path.name.removesuffix(_SUFFIX))
        except ValueError:
            continue  # not ours
        highest = max(highest, number)
        try:
            reply = _DECODER.decode(disk.read_regular(path)).reply
            sent = _delivered_parts(path.with_suffix(_SENT))
            entries.append(OutboxEntry(number, reply, sent))
        except disk.DAMAGED as error:
            aside = disk.set_aside(path)
            logger.error("outbox entry %s is damaged (%s); moved it to %s", path, error, aside)
    return entries, highest
