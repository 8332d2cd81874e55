"""The tracer: one JSON line per record, one file per UTC day, schema as documented."""

from __future__ import annotations

import datetime
import errno
import re
import typing
from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing

from actors import tracer
from orchestrator import disk
from orchestrator.messages import TraceEvent, TraceRecord

DOCS = Path(__file__).resolve().parents[2] / "docs" / "traces.md"


class TraceLine(TraceRecord, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A written line: the record plus the tracer's stamp."""

    ts: str
    v: int


def documented_fields() -> set[str]:
    fields_section = DOCS.read_text().split("## Fields", 1)[1].split("## Events", 1)[0]
    return set(re.findall(r"^\| `(\w+)` \|", fields_section, flags=re.MULTILINE))


def documented_events() -> set[str]:
    events_section = DOCS.read_text().split("## Events", 1)[1]
    return set(re.findall(r"^\| `(\w+)` \|", events_section, flags=re.MULTILINE))


def test_docs_describe_every_field() -> None:
    assert documented_fields() == set(TraceRecord.__struct_fields__) | {"ts", "v"}


def test_docs_describe_exactly_the_events_there_are() -> None:
    assert documented_events() == set(typing.get_args(TraceEvent))


def test_an_unknown_event_is_refused_at_the_boundary() -> None:
    """mypy refuses it in code; a record built from data (a dict) is checked on conversion."""
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"event": "no_such_event"}, TraceRecord)


def test_malformed_is_written_only_when_true() -> None:
    when = datetime.datetime(2026, 11, 25, tzinfo=datetime.UTC)
    plain = tracer.encode_line(TraceRecord(event="update", update_id=1), when)
    flagged = tracer.encode_line(TraceRecord(event="update", malformed=True), when)
    assert b"malformed" not in plain
    assert b'"malformed":true' in flagged


async def test_lines_are_written_per_day_and_validate(tmp_path: Path) -> None:
    days = iter(
        [
            datetime.datetime(2026, 11, 24, 23, 59, 59, tzinfo=datetime.UTC),
            datetime.datetime(2026, 11, 25, 0, 0, 1, tzinfo=datetime.UTC),
            datetime.datetime(2026, 11, 25, 0, 0, 2, tzinfo=datetime.UTC),
        ]
    )
    handle, inbox = tracer.open_trace_mailbox()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: tracer.run(
                inbox,
                traces_dir=tmp_path,
                secrets=["123:SECRET"],
                wall_clock=lambda: next(days),
            )
        )
        handle.emit(TraceRecord(event="update", update_id=1, preview="hi"))
        handle.emit(
            TraceRecord(event="run_end", chat_id=5, duration_ms=12.5, outcome="ok", total_tokens=9)
        )
        handle.emit(TraceRecord(event="worker", detail="token 123:SECRET leaked"))
        handle.close()
    first = (tmp_path / "2026-11-24.jsonl").read_text().splitlines()
    second = (tmp_path / "2026-11-25.jsonl").read_text().splitlines()
    assert len(first) == 1
    assert len(second) == 2
    lines = [msgspec.json.decode(line, type=TraceLine) for line in first + second]
    assert lines[0].ts == "2026-11-24T23:59:59.000Z"
    assert lines[0].event == "update"
    assert lines[1].duration_ms == 12.5
    assert all(line.v == tracer.TRACE_SCHEMA_VERSION for line in lines)
    assert "SECRET" not in "".join(second)
    assert "[REDACTED]" in second[1]


async def test_emit_sheds_instead_of_blocking(autojump_clock: trio.testing.MockClock) -> None:
    handle, inbox = tracer.open_trace_mailbox()
    with inbox:
        for n in range(tracer.TRACE_BUFFER + 5):
            handle.emit(TraceRecord(event="update", update_id=n))
        assert handle.shed == 5
    handle.emit(TraceRecord(event="update"))  # after the tracer is gone: dropped quietly
    assert handle.shed == 5


async def test_a_day_file_rolls_over_by_size(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    day = datetime.datetime(2026, 11, 24, 12, tzinfo=datetime.UTC)
    handle, inbox = tracer.open_trace_mailbox()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: tracer.run(
                inbox, traces_dir=tmp_path, wall_clock=lambda: day, rotate_bytes=1000, rotate_keep=2
            )
        )
        for number in range(60):  # about 60 lines of ~90 bytes: five files' worth
            handle.emit(TraceRecord(event="update", update_id=number, preview="x" * 20))
            await trio.sleep(1)  # one batch each
        handle.close()
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["2026-11-24.jsonl", "2026-11-24.jsonl.1", "2026-11-24.jsonl.2"]
    assert all((tmp_path / name).stat().st_size <= 1100 for name in names)
    newest = (tmp_path / "2026-11-24.jsonl").read_text().splitlines()
    assert '"update_id":59' in newest[-1]


async def test_a_full_disk_loses_lines_not_the_tracer(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(disk, "append", full)
    handle, inbox = tracer.open_trace_mailbox()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: tracer.run(inbox, traces_dir=tmp_path))
        for number in range(90):  # 90 s of failing writes: two log lines, not 90
            handle.emit(TraceRecord(event="update", update_id=number))
            await trio.sleep(1)
        monkeypatch.undo()
        handle.emit(TraceRecord(event="update", update_id=1000))
        await trio.sleep(1)
        handle.close()
    failures = [r for r in caplog.records if "cannot save traces" in r.getMessage()]
    assert len(failures) == 2
    assert "No space left on device" in failures[0].getMessage()
    assert any("works again" in r.getMessage() for r in caplog.records)
    assert '"update_id":1000' in next(tmp_path.glob("*.jsonl")).read_text()


def _plant(folder: Path, *names: str) -> None:
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).write_text("{}\n")


def test_prune_deletes_only_the_trace_files_of_days_before_the_kept_ones(tmp_path: Path) -> None:
    outside = tmp_path / "precious.txt"
    outside.write_text("not a trace")
    traces = tmp_path / "traces"
    _plant(
        traces,
        "2026-10-31.jsonl",  # 31 days before: goes
        "2026-10-31.jsonl.3",  # its rolled-over file goes with it
        "2026-11-01.jsonl",  # the oldest of the 30 days kept
        "2026-11-30.jsonl",  # today
        "2026-12-05.jsonl",  # a later day (a clock set back): left alone
        "2026-13-01.jsonl",  # not a date
        "notes.jsonl",
        "2026-10-01.jsonl.tmp",
    )
    (traces / "2026-09-01.jsonl").symlink_to(outside)
    removed = tracer.prune_days(traces, datetime.date(2026, 11, 30), 30)
    assert removed == 3
    assert sorted(path.name for path in traces.iterdir()) == [
        "2026-10-01.jsonl.tmp",
        "2026-11-01.jsonl",
        "2026-11-30.jsonl",
        "2026-12-05.jsonl",
        "2026-13-01.jsonl",
        "notes.jsonl",
    ]
    assert outside.read_text() == "not a trace"  # the link went, not what it points to
    assert tracer.prune_days(tmp_path / "missing", datetime.date(2026, 11, 30), 30) == 0


async def test_old_days_go_with_the_first_lines_and_at_each_new_day(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    _plant(tmp_path, "2026-11-20.jsonl", "2026-11-21.jsonl", "2026-11-22.jsonl")
    now = [datetime.datetime(2026, 11, 23, 23, 59, tzinfo=datetime.UTC)]
    handle, inbox = tracer.open_trace_mailbox()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: tracer.run(inbox, traces_dir=tmp_path, wall_clock=lambda: now[0], keep_days=3)
        )
        handle.emit(TraceRecord(event="update", update_id=1))
        await trio.sleep(1)
        assert sorted(path.name for path in tmp_path.iterdir()) == [
            "2026-11-21.jsonl",
            "2026-11-22.jsonl",
            "2026-11-23.jsonl",
        ]
        handle.emit(TraceRecord(event="update", update_id=11))
        await trio.sleep(1)  # the same day: nothing more to look at
        now[0] = datetime.datetime(2026, 11, 24, 0, 1, tzinfo=datetime.UTC)
        handle.emit(TraceRecord(event="update", update_id=2))
        await trio.sleep(1)
        handle.close()
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "2026-11-22.jsonl",
        "2026-11-23.jsonl",
        "2026-11-24.jsonl",
    ]
    told = [r.getMessage() for r in caplog.records if "trace file" in r.getMessage()]
    assert told == [
        "deleted 1 trace file of the days before the last 3 days (traces.keep_days)",
        "deleted 1 trace file of the days before the last 3 days (traces.keep_days)",
    ]


async def test_keep_days_zero_keeps_every_day(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    _plant(tmp_path, "2020-01-01.jsonl")
    handle, inbox = tracer.open_trace_mailbox()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: tracer.run(inbox, traces_dir=tmp_path, keep_days=0))
        handle.emit(TraceRecord(event="update", update_id=1))
        await trio.sleep(1)
        handle.close()
    assert (tmp_path / "2020-01-01.jsonl").exists()
    assert len(list(tmp_path.glob("*.jsonl"))) == 2


async def test_old_days_that_cannot_be_deleted_do_not_stop_the_lines(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refused(traces_dir: Path, today: datetime.date, keep_days: int) -> int:
        raise PermissionError(errno.EACCES, "Permission denied", str(traces_dir))

    monkeypatch.setattr(tracer, "prune_days", refused)
    handle, inbox = tracer.open_trace_mailbox()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: tracer.run(inbox, traces_dir=tmp_path))
        handle.emit(TraceRecord(event="update", update_id=7))
        await trio.sleep(1)
        handle.close()
    assert '"update_id":7' in next(tmp_path.glob("*.jsonl")).read_text()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        f"cannot delete old trace files in {tmp_path}: [Errno 13] Permission denied: '{tmp_path}'"
    ]
