"""Shared plumbing for the benchmarks: the real bot as a process, fakes in this process.

Every benchmark drives ``codex-orchestrator start`` as a separate process (the real entry
point, real HTTP, real subprocess workers) against the fake Telegram Bot API served from the
benchmark's own trio run, with either the fake Codex MCP server or the real Codex 0.153.4 on
the mock model. Times are taken on this process's clock: when an update is pushed into the
fake Telegram, and when the fake sees the bot's reply.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fakes.codex_script import FakeCodex  # noqa: E402
from tests.fakes.telegram_server import FakeTelegram, open_fake_telegram  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
ENTRY = "from cli.app import main; main()"
RESULTS = Path(os.environ.get("BENCH_RESULTS") or REPO / "bench" / "results")


def arguments(description: str, **defaults: Any) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run (CI)")
    for name, value in defaults.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    return parser.parse_args()


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": statistics.median(values) if values else float("nan"),
        "p90": percentile(values, 0.9),
        "p99": percentile(values, 0.99),
        "min": min(values) if values else float("nan"),
        "max": max(values) if values else float("nan"),
    }


def table(title: str, rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [title, ""]
    for number, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def save(name: str, result: dict[str, Any], command: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    result = {"benchmark": name, "command": command, "at": stamp, **result}
    path.write_text(json.dumps(result, indent=2))
    return path


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0]}


def write_config(
    folder: Path,
    base_url: str,
    *,
    users: Sequence[int],
    codex_command: Sequence[str],
    codex_env: dict[str, str] | None = None,
    pool_size: int = 2,
    extra_codex: str = "",
    extra_telegram: str = "",
    batch_window: float = 0.0,
) -> Path:
    work = folder / "work"
    work.mkdir(parents=True, exist_ok=True)
    command = ", ".join(json.dumps(part) for part in codex_command)
    env_lines = "\n".join(
        f"{key} = {json.dumps(value)}" for key, value in (codex_env or {}).items()
    )
    path = folder / "conf.toml"
    path.write_text(
        f"""
state_dir = {json.dumps(str(folder / "state"))}
log_level = "WARNING"
[telegram]
allowed_users = [{", ".join(str(user) for user in users)}]
api_base_url = {json.dumps(base_url)}
{extra_telegram}
[telegram.polling]
timeout = 10
[codex]
command = [{command}]
pool_size = {pool_size}
{extra_codex}
[codex.env]
{env_lines}
[sessions]
batch_window = {batch_window}
queue_limit = 100
[shutdown]
drain_grace = 10
[profiles.default]
working_directory = {json.dumps(str(work))}
default_mode = "single"
sandbox = "danger-full-access"
approval_policy = "never"
"""
    )
    return path


@dataclass
class Bot:
    telegram: FakeTelegram
    process: trio.Process
    started_at: float
    output: bytearray = field(default_factory=bytearray)

    def ready_seconds(self) -> float:
        """From spawning the process until its first getUpdates reached the fake Telegram."""
        return self.telegram.calls_of("getUpdates")[0].at - self.started_at

    def peak_rss_mb(self) -> float:
        """VmHWM of the bot process alone (its Codex workers are separate processes)."""
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")


async def _drain_output(bot: Bot) -> None:
    assert bot.process.stdout is not None
    while chunk := await bot.process.stdout.receive_some(65536):
        bot.output += chunk


@asynccontextmanager
async def running_bot(config_for: Any, **fake_options: Any) -> AsyncIterator[Bot]:
    """Start the fake Telegram, then the bot; stop the bot with SIGTERM at the end.

    `config_for(base_url) -> Path` writes the config once the fake's address is known.
    """
    async with open_fake_telegram(TOKEN) as telegram:
        for key, value in fake_options.items():
            setattr(telegram, key, value)
        config = config_for(telegram.base_url)
        env = {**os.environ, "TELEGRAM_BOT_TOKEN": TOKEN, "CODEX_CONF_PATH": str(config)}
        argv = [sys.executable, "-c", ENTRY, "start"]
        profile = os.environ.get("BENCH_PROFILE")  # py-spy output file: profile the bot
        if profile:
            script = Path(profile).with_suffix(".main.py")
            script.write_text(ENTRY + "\n")
            argv = [sys.executable, "-m", "cProfile", "-o", profile, str(script), "start"]
        started_at = trio.current_time()
        process = await trio.lowlevel.open_process(
            argv,
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        bot = Bot(telegram, process, started_at)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain_output, bot)
            try:
                with trio.fail_after(120):
                    await telegram.wait_for(lambda t: bool(t.calls_of("getUpdates")))
                yield bot
            finally:
                if process.returncode is None:
                    process.terminate()
                with trio.move_on_after(30):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()


class ReplyCounter:
    """Replies the fake Telegram accepted whose text starts with `prefix`, counted as calls
    come in. A predicate that rescans every call on every change costs O(n^2) in this
    process, which shares the CPUs with the bot and skewed the larger runs."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.count = 0
        self._seen = 0

    def __call__(self, telegram: FakeTelegram) -> int:
        calls = telegram.calls
        for call in calls[self._seen :]:
            if (
                call.method == "sendmessage"
                and call.status == 200
                and str(call.params.get("text", "")).startswith(self.prefix)
            ):
                self.count += 1
        self._seen = len(calls)
        return self.count


def fake_codex(folder: Path, **rule: Any) -> FakeCodex:
    fake = FakeCodex(folder / "codex")
    if rule:
        fake.rule("", **rule)
    fake.write()
    return fake
