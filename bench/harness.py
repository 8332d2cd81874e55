"""Shared plumbing for the benchmarks: the real bot as a process, fakes in this process.

Every benchmark drives ``codex-orchestrator start`` as a separate process (the real entry
point, real HTTP, real subprocess workers) against the fake Telegram Bot API served from the
benchmark's own trio run, with either the fake Codex MCP server or the real Codex 0.153.4 on
the mock model. Times are taken on this process's clock: when an update is pushed into the
fake Telegram, and when the fake sees the bot's reply; the fake Codex stamps what it reads
with the wall clock (``at`` in its record), compared with ``time.time()`` at the push.

The bot runs on the shipped defaults (orchestrator/config.py): `BenchConfig` writes only where
the fakes are, who may talk and a scratch folder, plus the `Setting`s a benchmark changes on
purpose, each with its reason; every script prints them and saves them with its results.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import statistics
import subprocess
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import heap_snapshots  # noqa: E402  (bench/ is the scripts' folder: on sys.path)
import task_steps  # noqa: E402
from tests.fakes.codex_script import FakeCodex  # noqa: E402
from tests.fakes.telegram_server import FakeTelegram, open_fake_telegram  # noqa: E402
from tests.procfs import cmdline, tree  # noqa: E402

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


@dataclass(frozen=True)
class Setting:
    """One config key a benchmark sets away from the shipped default, and why.

    `key` is dotted as in conf.toml (``sessions.batch_window``, ``profiles.default.sandbox``);
    `shown` is how to print a value that is long or run-specific (a temp path, a user list).
    """

    key: str
    value: Any
    why: str
    shown: str | None = None


_MISSING: Any = object()
"""`shipped`: this version of the product has no such setting."""
_UNKNOWN: Any = object()
"""`shipped`: the product's config module could not be read (moved, renamed): write it anyway."""


def shipped(key: str) -> Any:
    """The shipped default of a dotted config key (orchestrator/config.py), `_MISSING` when
    this version of the product has no such setting, `_UNKNOWN` when its config cannot be
    read."""
    try:
        from orchestrator import config as shipped_config

        node: Any = shipped_config.Config()
        profile: Any = shipped_config.Profile()
        default_command = tuple(shipped_config.DEFAULT_CODEX_COMMAND)
    except (ImportError, AttributeError, TypeError):
        return _UNKNOWN
    parts = key.split(".")
    if parts[0] == "profiles":  # any profile starts from the Profile defaults
        node, parts = profile, parts[2:]
    for part in parts:
        node = getattr(node, part, _MISSING)
        if node is _MISSING:
            return _MISSING
    if key == "codex.command" and not node:
        return default_command
    return node


@dataclass
class BenchConfig:
    """The config of one bot under benchmark: the shipped defaults, except what the benchmark
    needs to run at all (where the fakes are, who may talk, a scratch folder: `environment`)
    and the `settings` it changes on purpose, each with its reason. Both are printed and saved
    with the results, so a figure always says what it was measured on."""

    users: Sequence[int]
    codex_command: Sequence[str]
    codex_env: dict[str, str] | None = None
    codex_is: str = "the fake Codex MCP server (instant, scripted)"
    settings: Sequence[Setting] = ()

    def environment(self, folder: Path, base_url: str) -> list[Setting]:
        users = list(self.users)
        contiguous = users == list(range(users[0], users[0] + len(users))) if users else False
        span = f" ({users[0]}..{users[-1]})" if contiguous and len(users) > 1 else ""
        every = [
            Setting("state_dir", str(folder / "state"), "a fresh state folder", "<temp>/state"),
            Setting(
                "telegram.api_base_url",
                base_url,
                "the fake Telegram Bot API served by this benchmark",
                "http://127.0.0.1:<port>",
            ),
            Setting(
                "telegram.allowed_users",
                users,
                "one private chat per simulated user (shipped: nobody may use the bot)",
                f"{len(users)} user{'s' if len(users) != 1 else ''}{span}",
            ),
            Setting(
                "codex.command",
                list(self.codex_command),
                self.codex_is,
                " ".join(Path(part).name for part in self.codex_command),
            ),
        ]
        if self.codex_env:
            names = sorted(self.codex_env)
            every.append(
                Setting(
                    "codex.env",
                    dict(self.codex_env),
                    "what the Codex command needs (the fake's script, or the real one's home)",
                    ", ".join(names) if len(names) <= 3 else f"{len(names)} variables",
                )
            )
        every.append(
            Setting(
                "profiles.default.working_directory",
                str(folder / "work"),
                "a scratch folder",
                "<temp>/work",
            )
        )
        return every

    def write(self, folder: Path, base_url: str) -> Path:
        """conf.toml with the shipped defaults except the environment and `settings`.

        A setting this version of the product does not have is left out (and reported so): a
        benchmark written for a setting since removed still runs, on the shipped behaviour."""
        (folder / "work").mkdir(parents=True, exist_ok=True)
        tree: dict[str, Any] = {}
        environment = self.environment(folder, base_url)
        for setting in [*environment, *self.settings]:
            if setting not in environment and shipped(setting.key) is _MISSING:
                continue
            *sections, name = setting.key.split(".")
            node = tree
            for section in sections:
                node = node.setdefault(section, {})
            node[name] = setting.value
        path = folder / "conf.toml"
        path.write_text(_toml(tree))
        return path

    def differences(self) -> list[dict[str, Any]]:
        """Every setting away from the shipped defaults, as JSON rows for the results."""
        rows = []
        environment = self.environment(Path("<temp>"), "<fake>")
        for setting in [*environment, *self.settings]:
            default = shipped(setting.key)
            if setting not in environment and _plain(setting.value) == _plain(default):
                continue  # set, but to what ships: no difference to report
            rows.append(
                {
                    "key": setting.key,
                    "value": _plain(setting.value) if setting.shown is None else setting.shown,
                    "shipped": None if default in (_MISSING, _UNKNOWN) else _plain(default),
                    "why": setting.why,
                    "applied": default is not _MISSING or setting in environment,
                }
            )
        return rows


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _toml(tree: dict[str, Any], prefix: str = "") -> str:
    """The few TOML shapes a config needs: scalars, lists, `env` as an inline table."""
    plain = {k: v for k, v in tree.items() if not isinstance(v, dict) or k == "env"}
    tables = {k: v for k, v in tree.items() if isinstance(v, dict) and k != "env"}
    lines = [f"[{prefix}]"] if prefix and plain else []
    for key, value in plain.items():
        if isinstance(value, dict):
            inner = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in value.items())
            lines.append(f"{key} = {{ {inner} }}")
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    text = "\n".join(lines) + "\n" if lines else ""
    for key, value in tables.items():
        text += _toml(value, f"{prefix}.{key}" if prefix else key)
    return text


def settings_text(rows: Sequence[dict[str, Any]], title: str = "") -> str:
    """`BenchConfig.differences` for the output: one line per setting, with its reason."""
    lines = [
        "settings that differ from the shipped defaults (orchestrator/config.py)"
        + (f", {title}" if title else "")
        + ":"
    ]
    for row in rows:
        value, default = row["value"], row["shipped"]
        shown = value if isinstance(value, str) else json.dumps(value)
        if not row["applied"]:
            lines.append(f"  {row['key']}: not a setting in this version, left out")
            continue
        if isinstance(default, bool | int | float) or (
            isinstance(default, str) and not isinstance(value, str)
        ):
            shown += f" (shipped: {json.dumps(default)})"
        elif isinstance(default, str) and default and row["key"] != "telegram.api_base_url":
            shown += f" (shipped: {default})"
        lines.append(f"  {row['key']} = {shown}: {row['why']}")
    return "\n".join(lines)


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
        return status_mb(self.process.pid, "VmHWM")


def status_mb(pid: int, field: str) -> float:
    """A memory line of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``) in MB; NaN once gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def workers_rss_mb(bot_pid: int) -> float:
    """Resident memory (VmRSS) of the Codex worker processes under the bot, in MB."""
    total = 0.0
    for pid in tree(bot_pid) - {bot_pid}:
        line = cmdline(pid)
        if "server" not in line and "codex" not in line:
            continue
        rss = status_mb(pid, "VmRSS")
        if not math.isnan(rss):  # NaN: the process ended meanwhile
            total += rss
    return total


def open_files(pid: int) -> int:
    """How many file descriptors `pid` holds (-1 once it is gone)."""
    return _entries(f"/proc/{pid}/fd")


def threads(pid: int) -> int:
    """How many threads `pid` runs (-1 once it is gone)."""
    return _entries(f"/proc/{pid}/task")


def _entries(folder: str) -> int:
    try:
        return len(os.listdir(folder))
    except OSError:
        return -1


async def _drain_output(bot: Bot) -> None:
    assert bot.process.stdout is not None
    while chunk := await bot.process.stdout.receive_some(65536):
        bot.output += chunk


def orchestrator_argv() -> list[str]:
    """``codex-orchestrator start`` (under cProfile when ``BENCH_PROFILE`` names an output;
    with its task steps recorded when ``BENCH_STEPS`` does: bench/task_steps.py; with its
    heap traced when ``BENCH_HEAP`` names a folder: bench/heap_snapshots.py)."""
    entry = ENTRY
    if os.environ.get(task_steps.ENV):
        entry = task_steps.entry_prefix() + entry
    if os.environ.get(heap_snapshots.ENV):
        entry = heap_snapshots.entry_prefix() + entry
    profile = os.environ.get("BENCH_PROFILE")
    if profile:
        script = Path(profile).with_suffix(".main.py")
        script.write_text(entry + "\n")
        return [sys.executable, "-m", "cProfile", "-o", profile, str(script), "start"]
    return [sys.executable, "-c", entry, "start"]


@asynccontextmanager
async def running_process(
    telegram: FakeTelegram, argv: Sequence[str], env: dict[str, str]
) -> AsyncIterator[Bot]:
    """Start a bot process against `telegram`; ready once its first getUpdates arrives; stopped
    with SIGTERM at the end (killed if it has not exited 30 s later)."""
    seen = len(telegram.calls_of("getUpdates"))
    started_at = trio.current_time()
    process = await trio.lowlevel.open_process(
        list(argv), env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    bot = Bot(telegram, process, started_at)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_drain_output, bot)
        try:
            with trio.fail_after(120):
                await telegram.wait_for(lambda t: len(t.calls_of("getUpdates")) > seen)
            yield bot
        finally:
            if process.returncode is None:
                process.terminate()
            with trio.move_on_after(30):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


@asynccontextmanager
async def running_orchestrator(
    telegram: FakeTelegram, config: BenchConfig, folder: Path
) -> AsyncIterator[Bot]:
    """``codex-orchestrator start`` on `config` (written to `folder`) against `telegram`."""
    path = config.write(folder, telegram.base_url)
    env = {**os.environ, "TELEGRAM_BOT_TOKEN": TOKEN, "CODEX_CONF_PATH": str(path)}
    async with running_process(telegram, orchestrator_argv(), env) as bot:
        yield bot


@asynccontextmanager
async def running_bot(config: BenchConfig, folder: Path, **fake_options: Any) -> AsyncIterator[Bot]:
    """Start the fake Telegram (with `fake_options` set on it), then the orchestrator."""
    async with open_fake_telegram(TOKEN) as telegram:
        for key, value in fake_options.items():
            setattr(telegram, key, value)
        async with running_orchestrator(telegram, config, folder) as bot:
            yield bot


@asynccontextmanager
async def running_reference_bot(
    telegram: FakeTelegram,
    codex_command: Sequence[str],
    codex_env: dict[str, str],
    cwd: Path,
    script: str = "reference_bot.py",
) -> AsyncIterator[Bot]:
    """A yardstick bot in bench/ (`script`: the stdlib reference bot, or the trio floor bot)
    against `telegram`, with its own warm Codex server; both take the same arguments."""
    argv = [
        sys.executable,
        str(REPO / "bench" / script),
        "--api-base-url",
        telegram.base_url,
        "--cwd",
        str(cwd),
        "--",
        *codex_command,
    ]
    env = {**os.environ, **codex_env, "TELEGRAM_BOT_TOKEN": TOKEN}
    async with running_process(telegram, argv, env) as bot:
        yield bot


ANSWERED: Final = re.compile(r"c\d+ m\d+")
"""The words of a message of the scale and flood runs (``c{user} m{n}``), as the fake Codex
echoes them in its reply (``FAKE-REPLY: <prompt>``)."""


class ReplyCounter:
    """Replies the fake Telegram accepted whose text starts with `prefix`, counted as calls
    come in. A predicate that rescans every call on every change costs O(n^2) in this
    process, which shares the CPUs with the bot and skewed the larger runs.

    With `answers`, the count is of the messages answered instead: the distinct matches of
    that pattern in those replies (the fake Codex echoes its prompt, and messages that
    arrive while a chat's request runs join one prompt, so one reply answers several).
    `replies` counts the replies either way."""

    def __init__(self, prefix: str, answers: re.Pattern[str] | None = None) -> None:
        self.prefix = prefix
        self.answers = answers
        self.count = 0
        self.replies = 0
        self._answered: set[str] = set()
        self._seen = 0

    def __call__(self, telegram: FakeTelegram) -> int:
        calls = telegram.calls
        for call in calls[self._seen :]:
            text = str(call.params.get("text", ""))
            if call.method == "sendmessage" and call.status == 200 and text.startswith(self.prefix):
                self.replies += 1
                if self.answers is not None:
                    self._answered.update(self.answers.findall(text))
        self._seen = len(calls)
        self.count = self.replies if self.answers is None else len(self._answered)
        return self.count


def fake_env(fake: FakeCodex) -> dict[str, str]:
    """``codex.env`` for the fake Codex: its script (workers inherit the rest of the bot's)."""
    fake.write()
    return {"FAKE_CODEX_SCRIPT": str(fake.script_path)}


def fake_codex(folder: Path, **rule: Any) -> FakeCodex:
    fake = FakeCodex(folder / "codex")
    if rule:
        fake.rule("", **rule)
    fake.write()
    return fake


def codex_calls(fake: FakeCodex) -> list[tuple[float, str]]:
    """The ``tools/call`` requests the fake Codex received: (wall-clock time, prompt)."""
    calls = []
    for entry in fake.recorded():
        message = entry.get("received", {})
        if message.get("method") == "tools/call":
            prompt = str(message.get("params", {}).get("arguments", {}).get("prompt", ""))
            calls.append((float(entry.get("at", float("nan"))), prompt))
    return calls


SINGLE_MODE = Setting(
    "profiles.default.default_mode",
    "single",
    "one Codex call per message (plan mode runs the selector first, then the planner, "
    "developer and reviewer unless the selector routes to single)",
)
