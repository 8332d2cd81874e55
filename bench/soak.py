"""soak: does the bot's memory level off over thousands of messages, or does it leak?

`--chats` private chats send `--messages` in all, in rounds: one message from every chat,
then the next round once all of them are answered (the shipped per-chat spacing makes a
round about a second). The bot runs on the shipped defaults in single mode with the fake
Codex, whose run executes a command and streams its reply in two pieces. At each of the
`--checkpoints`, once every reply is in and the bot has been quiet for a moment, the bot's
VmRSS, open files and threads are read from /proc.

With ``--trace`` the bot also runs under tracemalloc (bench/heap_snapshots.py) and writes a
snapshot at each checkpoint. The report then gives the traced bytes and how they grew per 100
messages in the first and the second half of the run (from the first checkpoint on: the first
block warms up caches, lazy imports and each chat's state), and the places that grew the
most from the first checkpoint to the last, each under the product's line that asked for the
memory. A leak grows by about as much in both halves; a cache or allocator arena filling up
grows in the first half and levels off in the second. Tracing slows the bot and adds its own
memory: quote RSS from an untraced run.

With ``--codex app-server`` the workers are the real Codex 0.171.0 app-server on the mock
model, and each checkpoint adds their RSS: every chat's conversation goes on (one Codex
thread per chat, its history growing by a turn per message), as a user's would.

    uv run python bench/soak.py [--messages 5000 --chats 20 --checkpoints 10] [--trace]
    uv run python bench/soak.py --codex app-server --messages 1000
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import tempfile
import tracemalloc
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from harness import (
    ANSWERED,
    REPO,
    SINGLE_MODE,
    BenchConfig,
    ReplyCounter,
    Setting,
    fake_codex,
    fake_env,
    machine,
    open_files,
    running_bot,
    save,
    settings_text,
    status_mb,
    table,
    threads,
    workers_rss_mb,
)
from heap_snapshots import ENV as HEAP_ENV
from heap_snapshots import snapshot_path
from tests.fakes.codex_install import ensure_app_server_codex
from tests.fakes.mock_model import (
    Text,
    codex_env,
    last_user_text,
    open_mock_model,
    write_codex_home,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

REPLY = "FAKE-REPLY"
MOCK_REPLY = "MOCK"
QUIET = 0.5
"""Seconds without a new Bot API call before a checkpoint is read: the last replies' cleanup
(deleting progress messages, saving sessions) is done by then."""
PRODUCT = tuple(str(REPO / folder) + os.sep for folder in ("orchestrator", "actors", "cli"))
TOP = 10


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run (CI)")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--chats", type=int, default=20)
    parser.add_argument("--checkpoints", type=int, default=10)
    parser.add_argument("--trace", action="store_true", help="tracemalloc snapshots (slower)")
    parser.add_argument(
        "--codex",
        choices=("fake", "app-server"),
        default="fake",
        help="app-server: the real Codex 0.171.0 on the mock model (its workers' RSS too)",
    )
    return parser.parse_args()


async def quiet(telegram: Any) -> None:
    """Until the bot has made no Bot API call (getUpdates aside) for `QUIET` seconds."""
    while True:
        seen = sum(1 for call in telegram.calls if call.method != "getupdates")
        await trio.sleep(QUIET)
        if sum(1 for call in telegram.calls if call.method != "getupdates") == seen:
            return


async def snapshot(pid: int, folder: Path, number: int) -> Path:
    """Ask the bot for heap snapshot `number` (SIGUSR1) and wait until it is written."""
    path = snapshot_path(folder, number)
    os.kill(pid, signal.SIGUSR1)
    with trio.fail_after(120):
        while not path.exists():  # noqa: ASYNC110  (another process writes it)
            await trio.sleep(0.05)
    return path


def product_frame(trace: tracemalloc.Traceback) -> str:
    """The innermost frame in the product's code (else the innermost of all), as path:line."""
    frames = list(reversed(trace))  # tracemalloc keeps the oldest first: most recent first
    chosen = next((f for f in frames if f.filename.startswith(PRODUCT)), frames[0])
    name = chosen.filename
    if name.startswith(str(REPO) + os.sep):
        name = name[len(str(REPO)) + 1 :]
    return f"{name}:{chosen.lineno}"


def grown(first: Path, last: Path) -> list[dict[str, Any]]:
    """The `TOP` product lines whose allocations grew the most from `first` to `last`."""
    skip = [tracemalloc.Filter(False, tracemalloc.__file__)]
    before = tracemalloc.Snapshot.load(str(first)).filter_traces(skip)
    after = tracemalloc.Snapshot.load(str(last)).filter_traces(skip)
    by_line: dict[str, dict[str, Any]] = {}
    for stat in after.compare_to(before, "traceback"):
        line = by_line.setdefault(
            product_frame(stat.traceback), {"bytes": 0, "blocks": 0, "allocated_at": ""}
        )
        line["bytes"] += stat.size_diff
        line["blocks"] += stat.count_diff
        if not line["allocated_at"] and stat.size_diff > 0:
            innermost = stat.traceback[-1]
            line["allocated_at"] = f"{Path(innermost.filename).name}:{innermost.lineno}"
    ranked = sorted(by_line.items(), key=lambda item: item[1]["bytes"], reverse=True)
    return [{"line": line, **figures} for line, figures in ranked[:TOP] if figures["bytes"] > 0]


def traced_mb(path: Path) -> float:
    snapshot_ = tracemalloc.Snapshot.load(str(path))
    return sum(stat.size for stat in snapshot_.statistics("filename")) / 2**20


def per_100(points: list[dict[str, Any]], key: str, start: int, end: int) -> float:
    """Growth of `key` per 100 messages from checkpoint `start` to checkpoint `end`."""
    messages = points[end]["messages"] - points[start]["messages"]
    return (points[end][key] - points[start][key]) * 100 / messages if messages else float("nan")


@asynccontextmanager
async def codex_under_test(kind: str, folder: Path, users: list[int]) -> AsyncIterator[BenchConfig]:
    """The bot's config for `kind`: the fake Codex MCP server, or the real Codex 0.171.0
    app-server on the mock model (which answers ``MOCK: <prompt>``)."""
    if kind == "fake":
        fake = fake_codex(folder, run="true", deltas=2)
        yield BenchConfig(users, fake.argv(), fake_env(fake), settings=(SINGLE_MODE,))
        return
    binary = await trio.to_thread.run_sync(ensure_app_server_codex)
    if binary is None:
        sys.exit("soak: --codex app-server needs the real Codex 0.171.0, and npm to install it")
    async with open_mock_model() as model:
        model.responder = lambda body: [Text(f"{MOCK_REPLY}: {last_user_text(body)}")]
        home = write_codex_home(folder / "home", model.base_url, model="gpt-5.5")
        yield BenchConfig(
            users,
            [str(binary), "app-server"],
            codex_env(home),
            codex_is="the real Codex 0.171.0 app-server on the mock model",
            settings=(
                SINGLE_MODE,
                Setting("codex.backend", "app-server", "--codex app-server: current Codex"),
            ),
        )


COLUMNS: dict[str, tuple[str, str]] = {
    "rss_mb": ("RSS", "{:.1f}"),
    "traced_mb": ("traced", "{:.2f}"),
    "workers_rss_mb": ("workers' RSS", "{:.0f}"),
    "open_files": ("open files", "{}"),
    "threads": ("threads", "{}"),
}
"""A checkpoint's figures as the table shows them (those the run took); ``_mb`` ones in MB."""


def heading(key: str) -> str:
    return COLUMNS[key][0] + (" MB" if key.endswith("_mb") else "")


def kilobytes(megabytes: float) -> str:
    return "n/a" if math.isnan(megabytes) else f"{megabytes * 1024:+.1f} KB"


async def main() -> None:
    args = arguments()
    messages, chats, checkpoints = (
        (40, 4, 4) if args.tiny else (args.messages, args.chats, args.checkpoints)
    )
    rounds = max(1, messages // chats)
    every = max(1, rounds // checkpoints)
    folder = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    heap = folder / "heap"
    if args.trace:
        os.environ[HEAP_ENV] = str(heap)
    users = [300_000 + n for n in range(chats)]
    reply = REPLY if args.codex == "fake" else MOCK_REPLY
    answered = ReplyCounter(reply, answers=ANSWERED)
    points: list[dict[str, Any]] = []
    snapshots: list[Path] = []
    async with (
        codex_under_test(args.codex, folder, users) as config,
        running_bot(config, folder) as bot,
    ):
        pid = bot.process.pid
        print(f"soak: {rounds * chats} messages from {chats} chats, {config.codex_is}", flush=True)

        async def checkpoint(sent: int) -> None:
            await quiet(bot.telegram)
            point: dict[str, Any] = {"messages": sent, "rss_mb": status_mb(pid, "VmRSS")}
            if args.trace:
                snapshots.append(await snapshot(pid, heap, len(snapshots)))
                point["traced_mb"] = traced_mb(snapshots[-1])
            if args.codex != "fake":
                point["workers_rss_mb"] = workers_rss_mb(pid)
            point.update(open_files=open_files(pid), threads=threads(pid))
            points.append(point)
            shown = ", ".join(
                f"{COLUMNS[key][0]} {COLUMNS[key][1].format(point[key])} MB"
                for key in point
                if key.endswith("_mb")
            )
            print(f"  {sent:>6} messages: {shown}", flush=True)

        await checkpoint(0)
        sent = 0
        for round_ in range(1, rounds + 1):
            for user in users:
                bot.telegram.push_message(chat_id=user, user_id=user, text=f"c{user} m{round_}")
            sent += chats
            with trio.fail_after(120):
                await bot.telegram.wait_for(lambda t, sent=sent: answered(t) >= sent)
            if round_ % every == 0 or round_ == rounds:
                await checkpoint(sent)
        settings = config.differences()
    warm = 1  # the first block warms up; growth is read from the first checkpoint after it
    middle = warm + (len(points) - 1 - warm) // 2
    growth = {
        key: {
            "first_half_per_100": per_100(points, key, warm, middle),
            "second_half_per_100": per_100(points, key, middle, len(points) - 1),
        }
        for key in points[0]
        if key.endswith("_mb")
    }
    top = grown(snapshots[warm], snapshots[-1]) if args.trace and len(snapshots) > warm else []
    result: dict[str, Any] = {
        "messages": sent,
        "answered": answered.count,
        "chats": chats,
        "codex": config.codex_is,
        "traced": args.trace,
        "checkpoints": points,
        "growth_mb": growth,
        "grew_most": top,
        "settings": settings,
        "machine": machine(),
    }
    keys = [key for key in points[0] if key != "messages"]
    rows = [
        ("messages", *(heading(key) for key in keys)),
        *((str(p["messages"]), *(COLUMNS[k][1].format(p[k]) for k in keys)) for p in points),
    ]
    print()
    print(table(f"messages answered: {answered.count} of {sent}", rows))
    print()
    for key, halves in growth.items():
        print(
            f"{COLUMNS[key][0]} per 100 messages: "
            f"first half {kilobytes(halves['first_half_per_100'])}, "
            f"second half {kilobytes(halves['second_half_per_100'])}"
        )
    if top:
        print(f"\ngrew most from {points[warm]['messages']} to {sent} messages (product line):")
        for row in top:
            print(
                f"  {row['bytes'] / 1024:+9.1f} KB {row['blocks']:+7d} blocks  {row['line']}"
                f"  (allocated in {row['allocated_at']})"
            )
    print()
    print(settings_text(settings))
    path = save("soak", result, " ".join(["uv run python", *sys.argv]))
    print(f"results: {path}")


if __name__ == "__main__":
    trio.run(main)
