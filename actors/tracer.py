"""The tracer: the single writer of ``state_dir/traces/{yyyy-mm-dd}.jsonl``.

Every actor hands `TraceRecord`s to a `TraceHandle`; this actor stamps each with the UTC time
(``ts``) and the schema version (``v``) and appends one JSON object per line to the file of
that UTC day (schema: docs/traces.md). Being the only writer means lines never interleave and
the day rollover happens in one place.

A day file that reaches ``disk.rotate_mb`` rolls over to ``{day}.jsonl.1`` (older ones shift
to ``.2`` and so on, ``disk.rotate_keep`` kept), so a chatty day cannot fill the disk; and the
files of days older than ``traces.keep_days`` (today included) are deleted with the first
lines the tracer writes and then at each new UTC day, so a bot that stays up for months cannot
either. A disk that refuses a write (full, read-only) loses those lines, is logged at once and
then at most once a minute, and never stops the tracer.

Secrets are scrubbed from every line before it is written (`orchestrator.redaction`; belt and
braces: no actor puts the token in a record, but a Codex error text could quote an
environment).
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, final

import msgspec
import trio

from orchestrator import disk
from orchestrator.messages import TraceRecord
from orchestrator.redaction import redact
from orchestrator.words import plural

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "TRACE_BUFFER",
    "TRACE_SCHEMA_VERSION",
    "TraceHandle",
    "open_trace_mailbox",
    "run",
]

logger: Final = logging.getLogger(__name__)

TRACE_SCHEMA_VERSION: Final = 1
"""The ``v`` field of every line; bumped when a field changes meaning."""

ROTATE_BYTES: Final = 50 * 1024 * 1024
"""Default size at which a trace file rolls over (``disk.rotate_mb``)."""

ROTATE_KEEP: Final = 5
"""Default number of rolled-over files kept per day file (``disk.rotate_keep``)."""

KEEP_DAYS: Final = 30
"""Default number of UTC days whose trace files are kept, today included
(``traces.keep_days``; 0 keeps them all)."""

DAY_FILE: Final = re.compile(r"(\d{4}-\d{2}-\d{2})\.jsonl(?:\.\d+)?")
"""A trace file's name: its day, and the number of a rolled-over file."""

TRACE_BUFFER: Final = 1024
"""Records buffered before the tracer sheds: traces must never slow a chat down."""

BATCH_SECONDS: Final = 0.01
"""How long the tracer lets records gather before it writes them (a line's time stamp is
its write time, so it may be this much late)."""

_ENCODER: Final = msgspec.json.Encoder()

WallClock = Callable[[], datetime.datetime]


@final
class TraceHandle:
    """What actors hold to trace: `emit` never blocks, so tracing never slows a chat down.

    When the tracer is behind by `TRACE_BUFFER` records, a record is shed and counted; after
    the tracer has stopped (shutdown), records are dropped silently.
    """

    def __init__(self, send: trio.MemorySendChannel[TraceRecord]) -> None:
        self._send = send
        self.shed = 0

    def emit(self, record: TraceRecord) -> None:
        """Queue `record` for writing, or shed it when the tracer is behind."""
        try:
            self._send.send_nowait(record)
        except trio.WouldBlock:
            self.shed += 1
            if self.shed in (1, 100) or self.shed % 10_000 == 0:
                logger.warning("tracer is behind: %d trace records shed so far", self.shed)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    def close(self) -> None:
        """Close this handle's send channel (the tracer stops once every clone is closed)."""
        self._send.close()


def open_trace_mailbox() -> tuple[TraceHandle, trio.MemoryReceiveChannel[TraceRecord]]:
    """Open the tracer's bounded inbox and the handle that feeds it."""
    send, receive = trio.open_memory_channel[TraceRecord](TRACE_BUFFER)
    return TraceHandle(send), receive


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def encode_line(record: TraceRecord, when: datetime.datetime, secrets: Sequence[str] = ()) -> bytes:
    """One trace line: ``{"ts": ..., "v": ..., <record fields>}`` plus a newline."""
    body = _ENCODER.encode(record)
    stamp = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    head = b'{"ts":"' + stamp.encode() + b'","v":' + str(TRACE_SCHEMA_VERSION).encode()
    line = head + (b"," + body[1:] if body != b"{}" else b"}")
    return redact(line.decode(), secrets).encode() + b"\n"


async def run(
    inbox: trio.MemoryReceiveChannel[TraceRecord],
    *,
    traces_dir: Path,
    secrets: Sequence[str] = (),
    wall_clock: WallClock = _utc_now,
    rotate_bytes: int = ROTATE_BYTES,
    rotate_keep: int = ROTATE_KEEP,
    keep_days: int = KEEP_DAYS,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Append every record to the file of its UTC day until the inbox ends.

    Inbox: `TraceRecord`.
    Emits: lines in ``traces_dir/{yyyy-mm-dd}.jsonl``.
    Backpressure: none upstream: `TraceHandle.emit` sheds when the inbox is full. Records
    that arrive together are written in one batch (one thread hop per batch, through
    `orchestrator.disk`).
    Shutdown: returns after end-of-channel, once everything received is on disk; the root
    closes the tracer last, after every actor that traces has stopped.
    """
    trouble = disk.DiskTrouble(f"traces in {traces_dir}")
    pruned_on: datetime.date | None = None

    async def prune_once_a_day(today: datetime.date) -> None:
        nonlocal pruned_on
        if not keep_days or today == pruned_on:
            return
        pruned_on = today
        try:
            removed = await disk.run_sync(prune_days, traces_dir, today, keep_days)
        except OSError as error:  # tried again the next day; the lines are written anyway
            logger.warning("cannot delete old trace files in %s: %s", traces_dir, error)
        else:
            if removed:
                logger.info(
                    "deleted %s of the days before the last %s (traces.keep_days)",
                    plural(removed, "trace file"),
                    plural(keep_days, "day"),
                )

    task_status.started()
    with inbox:
        while True:
            try:
                batch = [await inbox.receive()]
            except trio.EndOfChannel:
                break
            # Let the records of the next few milliseconds join this batch: a thread hop per
            # one or two records was 10 % of the main thread at 1,000 chats (bench/scale.py).
            await trio.sleep(BATCH_SECONDS)
            while True:
                try:
                    batch.append(inbox.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            by_day: dict[Path, list[bytes]] = {}
            for record in batch:
                when = wall_clock()
                path = traces_dir / f"{when:%Y-%m-%d}.jsonl"
                by_day.setdefault(path, []).append(encode_line(record, when, secrets))
            await prune_once_a_day(when.date())
            for path, lines in by_day.items():
                try:
                    await disk.run_sync(
                        _append_rotating, path, b"".join(lines), rotate_bytes, rotate_keep
                    )
                except OSError as error:
                    trouble.failed(error)
                else:
                    trouble.succeeded()


def prune_days(traces_dir: Path, today: datetime.date, keep_days: int) -> int:
    """Delete the trace files (rolled-over ones included) of the days before the last
    `keep_days` UTC days that end with `today` (blocking); return how many went.

    Only names the tracer writes are touched; a link is removed, never followed. A file of a
    later day than `today` (a clock set back) is left alone.
    """
    oldest_kept = today - datetime.timedelta(days=keep_days - 1)
    removed = 0
    try:
        names = [entry.name for entry in traces_dir.iterdir()]
    except FileNotFoundError:
        return 0
    for name in names:
        match = DAY_FILE.fullmatch(name)
        if match is None:
            continue
        try:
            day = datetime.date.fromisoformat(match[1])
        except ValueError:
            continue
        if day < oldest_kept:
            try:
                (traces_dir / name).unlink()
            except FileNotFoundError:
                continue
            removed += 1
    return removed


def _append_rotating(path: Path, data: bytes, rotate_bytes: int, rotate_keep: int) -> None:
    disk.roll_over(path, rotate_bytes, rotate_keep)
    disk.append(path, data)
