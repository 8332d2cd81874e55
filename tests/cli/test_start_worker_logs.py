"""``start`` keeps each Codex worker's stderr log below ``disk.rotate_mb``."""

from __future__ import annotations

import errno
import logging
from typing import TYPE_CHECKING

from cli import start
from orchestrator import disk

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


async def test_a_worker_log_rolls_over_when_its_worker_starts(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "codex-worker-0.log"
    log.parent.mkdir()
    log.write_bytes(b"x" * 2048)
    await start._roll_over_worker_log(log, 1024, 2)
    assert not log.exists()
    assert (tmp_path / "logs" / "codex-worker-0.log.1").stat().st_size == 2048
    (tmp_path / "logs" / "codex-worker-0.log").write_bytes(b"small")
    await start._roll_over_worker_log(log, 1024, 2)
    assert log.read_bytes() == b"small"


async def test_a_disk_that_refuses_the_roll_over_does_not_stop_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def read_only(path: Path, max_bytes: int, keep: int) -> bool:
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(disk, "roll_over", read_only)
    caplog.set_level(logging.ERROR)
    await start._roll_over_worker_log(tmp_path / "codex-worker-0.log", 1024, 2)
    assert any("Read-only file system" in r.getMessage() for r in caplog.records)
