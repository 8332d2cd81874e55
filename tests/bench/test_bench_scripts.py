"""Each benchmark runs end to end on a tiny size: the scripts stay runnable.

Benchmarks are not timed tests: this checks that every script drives the real bot process
to the end, prints its table and writes results that say every message got through. The
figures themselves come from full runs (docs/performance.md).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio

if TYPE_CHECKING:
    from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ("overhead", "first_call", "first_event", "scale", "flood", "startup", "soak")
EXTRA = {"soak": ["--trace"]}
"""Options a tiny run adds: the soak run takes its heap snapshots too."""


async def run_tiny(name: str, results: Path) -> tuple[int, str]:
    """`name` on its tiny size; the overhead run records its bot's task steps too
    (``BENCH_STEPS``, bench/task_steps.py) into ``steps.tsv`` among its results."""
    steps = {"BENCH_STEPS": str(results / "steps.tsv")} if name == "overhead" else {}
    completed = await trio.run_process(
        [sys.executable, str(REPO / "bench" / f"{name}.py"), "--tiny", *EXTRA.get(name, [])],
        env={**os.environ, "BENCH_RESULTS": str(results), **steps},
        cwd=REPO,
        capture_stdout=True,
        stderr=subprocess.STDOUT,
        check=False,
    )
    return completed.returncode, completed.stdout.decode(errors="replace")


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, Path]]:
    """All the scripts at once (they are independent processes): one wait, not six."""
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


def assert_settings_reported(output: str, settings: Any) -> None:
    """Every setting away from the shipped defaults is in the output and the JSON, with why."""
    assert "settings that differ from the shipped defaults" in output
    keys = [row["key"] for row in settings]
    assert {"telegram.api_base_url", "telegram.allowed_users", "codex.command"} <= set(keys)
    for row in settings:
        assert row["why"], row
        assert f"{row['key']} = " in output or f"{row['key']}: " in output, row


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_runs_on_a_tiny_size(name: str, tiny_runs: dict[str, tuple[int, str, Path]]) -> None:
    code, output, folder = tiny_runs[name]
    assert code == 0, output
    assert output.startswith(name), output  # the table's title
    result = result_of(folder, name)
    if name == "overhead":
        assert "every message got through: orchestrator 5/5, reference 5/5, floor 5/5" in output
        assert result["delivered"] == {"orchestrator": 5, "reference": 5, "floor": 5}
        for arm in ("orchestrator_ms", "reference_ms", "floor_ms"):
            for measure in ("update_to_reply", "update_to_call", "call_to_reply"):
                assert result[arm][measure]["n"] == 5, (arm, measure)
        assert result["orchestrator_ms"]["overhead"]["n"] == 5
        assert result["ratio_of_medians"]["update_to_reply"] > 0
        assert result["split_update_to_reply"]["orchestrator_to_floor"] > 0
        assert "the gap, through the trio floor bot" in output
        # the shipped batching window: a lone message in an idle chat starts at once
        assert "sessions.batch_window" not in {row["key"] for row in result["settings"]}
        assert_settings_reported(output, result["settings"])
    elif name == "first_call":
        got_through = "lone 3/3 reached Codex, 3/3 replied; pastes 1/1 reached Codex (both parts)"
        assert got_through in output
        assert result["lone"]["update_to_call_ms"]["n"] == 3
        assert result["lone"]["update_to_reply_ms"]["n"] == 3
        paste = result["split_paste"]
        assert paste["parts"] == [4096, 700]
        assert paste["reached_codex"] == 1
        assert paste["one_call"] in (0, 1)
        assert paste["first_part_to_first_call_ms"]["n"] == 1
        assert paste["second_part_to_whole_at_codex_ms"]["n"] == 1
        # the shipped defaults: nothing tuned beyond where the fakes are and who may talk
        assert {row["key"] for row in result["settings"]} <= {
            "state_dir",
            "telegram.api_base_url",
            "telegram.allowed_users",
            "codex.command",
            "codex.env",
            "profiles.default.working_directory",
        }
        assert_settings_reported(output, result["settings"])
    elif name == "first_event":
        assert result["warm"]["reply_ms"]["n"] == result["cold"]["reply_ms"]["n"] == 3
        for arm in ("warm", "cold"):  # one message per idle chat: the shipped window
            keys = {row["key"] for row in result[arm]["settings"]}
            assert "sessions.batch_window" not in keys, arm
    elif name == "scale":
        runs = result["runs"]
        assert [r["delivered"] for r in runs] == [r["expected"] for r in runs]
    elif name == "flood":
        assert result["answered"] == result["expected_answers"]
        assert result["final_replies"] <= result["expected_answers"]
        assert result["flood_429s"] == 0
    elif name == "soak":
        assert result["answered"] == result["messages"] == 40
        points = result["checkpoints"]
        assert [p["messages"] for p in points] == [0, 8, 16, 24, 32, 40]
        assert all(p["rss_mb"] > 0 and p["open_files"] > 0 and p["traced_mb"] > 0 for p in points)
        assert set(result["growth_mb"]) == {"rss_mb", "traced_mb"}
        # the snapshots were read: what grew is named by the innermost line of the product's
        # own code that asked for it, in the actors or the edges; never the entry point's
        # trio.run, which is on every stack (the outermost product frame, not the innermost)
        assert result["grew_most"], output
        assert all(
            re.fullmatch(r"(orchestrator|actors)/\S+\.py:\d+", row["line"])
            for row in result["grew_most"]
        ), result["grew_most"]
        assert_settings_reported(output, result["settings"])
    else:
        measured = result["measured_ms"]
        assert measured["codex-orchestrator --help"]["n"] == 2
        assert measured["start -> first getUpdates (fake Codex, 2 workers)"]["n"] == 1
        assert_settings_reported(output, result["settings"]["fake Codex"])
    if name in ("scale", "flood", "first_event"):
        settings = {
            "scale": lambda: result["runs"][0]["settings"],
            "flood": lambda: result["settings"],
            "first_event": lambda: result["warm"]["settings"],
        }[name]()
        assert_settings_reported(output, settings)
    if name in ("scale", "flood", "first_event"):  # the shipped window, as every bench
        assert "sessions.batch_window" not in {row["key"] for row in settings}


def task_steps() -> ModuleType:
    """bench/task_steps.py (bench/ is not a package; its dataclasses need the module known)."""
    name = "bench_task_steps"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / "task_steps.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_the_bots_task_steps_read_as_messages_with_their_replies(
    tiny_runs: dict[str, tuple[int, str, Path]],
) -> None:
    """The instrument ran in the real bot and wrote its timeline at exit; the messages of the
    run (3 warm-up, 5 measured; two may share a burst) are found with their replies."""
    code, output, folder = tiny_runs["overhead"]
    assert code == 0, output
    steps = task_steps()
    messages = [
        m
        for burst in steps.bursts(steps.read(folder / "steps.tsv"))
        if (m := steps.message_of(burst))
    ]
    assert 5 <= len(messages) <= 8
    assert all(0 < m.idle < m.to_reply and m.reply_send > 0 for m in messages)
    assert "chat.Chat.serve" in steps.report(messages)


def test_a_message_is_its_steps_up_to_the_send_of_its_reply() -> None:
    steps = task_steps()
    lane = "actors.telegram_sender._Sender._serve_lane"
    rows = [
        ("step", "actors.root.poller", 0.000, 0.001),
        ("wait", "", 0.001, 0.003),  # Codex at work
        ("step", "actors.chat.Chat.serve", 0.003, 0.005),
        ("step", lane, 0.005, 0.009),
        ("send", "", 0.006, 0.008),  # the reply, inside the lane's step
        ("wait", "", 0.009, 0.1),  # the next message is a burst of its own
        ("step", "actors.root.poller", 0.1, 0.101),
    ]
    [first, second] = steps.bursts(rows)
    message = steps.message_of(first)
    assert message.to_reply == pytest.approx(0.006)
    assert message.idle == pytest.approx(0.002)
    assert message.steps == 3
    assert message.reply_send == pytest.approx(0.002)
    assert message.lane_step == pytest.approx(0.004)
    assert dict(message.by_task) == pytest.approx(
        {
            "actors.root.poller": 0.001,
            "chat.Chat.serve": 0.002,
            "telegram_sender._Sender._serve_lane": 0.001,
        }
    )
    assert steps.message_of(second) is None  # no reply went out in it
