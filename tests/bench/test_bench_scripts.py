"""Each benchmark runs end to end on a tiny size: the scripts stay runnable.

Benchmarks are not timed tests: this checks that every script drives the real bot process
to the end, prints its table and writes results that say every message got through. The
figures themselves come from full runs (docs/performance.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ("overhead", "first_event", "scale", "flood", "startup")


async def run_tiny(name: str, results: Path) -> tuple[int, str]:
    completed = await trio.run_process(
        [sys.executable, str(REPO / "bench" / f"{name}.py"), "--tiny"],
        env={**os.environ, "BENCH_RESULTS": str(results)},
        cwd=REPO,
        capture_stdout=True,
        stderr=subprocess.STDOUT,
        check=False,
    )
    return completed.returncode, completed.stdout.decode(errors="replace")


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, Path]]:
    """All five scripts at once (they are independent processes): one wait, not five."""
    root = tmp_path_factory.mktemp("bench")
    outcomes: dict[str, tuple[int, str, Path]] = {}

    async def one(name: str) -> None:
        folder = root / name
        code, output = await run_tiny(name, folder)
        outcomes[name] = (code, output, folder)

    async def all_of_them() -> None:
        with trio.fail_after(240):
            async with trio.open_nursery() as nursery:
                for name in SCRIPTS:
                    nursery.start_soon(one, name)

    trio.run(all_of_them)
    return outcomes


def result_of(folder: Path, name: str) -> dict[str, Any]:
    files = sorted(folder.glob(f"{name}-*.json"))
    assert len(files) == 1, files
    result: dict[str, Any] = json.loads(files[0].read_text())
    assert result["benchmark"] == name
    assert "--tiny" in str(result["command"])
    return result


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_runs_on_a_tiny_size(name: str, tiny_runs: dict[str, tuple[int, str, Path]]) -> None:
    code, output, folder = tiny_runs[name]
    assert code == 0, output
    assert output.startswith(name), output  # the table's title
    result = result_of(folder, name)
    if name == "overhead":
        assert result["overhead_ms"]["n"] == 5
    elif name == "first_event":
        assert result["warm"]["reply_ms"]["n"] == result["cold"]["reply_ms"]["n"] == 3
    elif name == "scale":
        runs = result["runs"]
        assert [r["delivered"] for r in runs] == [r["expected"] for r in runs]
    elif name == "flood":
        assert result["delivered_finals"] == result["expected_finals"]
        assert result["flood_429s"] == 0
    else:
        measured = result["measured_ms"]
        assert measured["codex-orchestrator --help"]["n"] == 2
        assert measured["start -> first getUpdates (fake Codex, 2 workers)"]["n"] == 1
