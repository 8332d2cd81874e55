"""scale: many chats at once through a few workers (instant fake Codex).

N chats each send M messages at once; the bot runs them through W workers (a chat's
messages that arrive while its request runs join one prompt, so what is counted is the
messages answered, each by the reply that echoes it). Telegram's rate
limits are lifted for this run (``telegram.rate_limit = 0``, ``chat_spacing = false``): this
measures the orchestrator, not Telegram's 30 messages/s (the flood benchmark covers those).
Reported: replies delivered (must be all), wall time from the first update to the last
reply, throughput, the bot's peak RSS (its own process, without the workers) and the CPU
seconds each party used (the bot, its fake Codex workers, this process's fake Telegram).
Then the same with 2N chats and 4N chats (``--doublings``), to show how the cost grows.

Last, the idle run: ``--idle-chats`` chats send one message each, then go quiet; with
``sessions.idle_ttl`` short, the bot's chat actors stop, and the bot's CPU and memory are
measured in a quiet window before and after that.

Recycling: with the shipped ``codex.recycle_threads = 200``, 8 workers host 1,600 threads;
beyond that many chats every worker keeps being recycled and its conversations move with a
recap (bench measured 48 recycles at 2,000 chats). The fake Codex holds no memory per thread,
so by default this run lifts the limit; ``--shipped-recycling`` keeps it.

    uv run python bench/scale.py [--chats 1000 --messages 5 --workers 8 --doublings 2
                                  --idle-chats 10000 --shipped-recycling]
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import trio

from harness import (
    ANSWERED,
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
    shipped,
    status_mb,
    table,
)


class IdleTiming(NamedTuple):
    """The idle run's clock: ``sessions.idle_ttl``, and the window the bot's CPU is sampled
    over before and after it (seconds)."""

    idle_ttl: float
    quiet_window: float


IDLE_TIMING = IdleTiming(idle_ttl=10, quiet_window=5.0)
TINY_IDLE_TIMING = IdleTiming(idle_ttl=2, quiet_window=0.5)
"""``--tiny`` only checks that the run works: a short idle_ttl keeps the CI smoke run quick."""


def _cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                children = Path(f"/proc/{parent}/task/{task}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def base_settings(messages: int, workers: int, recycling: bool) -> list[Setting]:
    settings = [
        Setting("codex.pool_size", workers, "--workers"),
        Setting(
            "telegram.rate_limit",
            0,
            "Telegram's 30 calls/s lifted: this measures the orchestrator (flood.py measures "
            "the limits)",
        ),
        Setting("telegram.chat_spacing", False, "Telegram's 1 s per chat lifted, as above"),
        SINGLE_MODE,
    ]
    if not recycling:
        settings.append(
            Setting(
                "codex.recycle_threads",
                1_000_000,
                "the fake Codex holds no memory per thread; at the shipped 200, more chats than "
                f"{workers} x 200 keep recycling workers (--shipped-recycling measures that)",
            )
        )
    limit = shipped("sessions.queue_limit")
    if isinstance(limit, int) and messages - 1 > limit:
        settings.append(Setting("sessions.queue_limit", messages, "--messages"))
    return settings


async def run_size(chats: int, messages: int, workers: int, recycling: bool) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-scale-{chats}-"))
    users = [100_000 + n for n in range(chats)]
    fake = fake_codex(folder)
    settings = base_settings(messages, workers, recycling)
    config = BenchConfig(users, fake.argv(), fake_env(fake), settings=settings)
    expected = chats * messages
    async with running_bot(config, folder) as bot:
        pid = bot.process.pid
        workers_pids = _descendants(pid)
        cpu_before = (_cpu_seconds(pid), sum(map(_cpu_seconds, workers_pids)), _self_cpu())
        started = trio.current_time()
        for m in range(messages):
            for user in users:
                bot.telegram.push_message(chat_id=user, user_id=user, text=f"c{user} m{m}")

        delivered = ReplyCounter("FAKE-REPLY", answers=ANSWERED)
        with trio.move_on_after(900):
            await bot.telegram.wait_for(lambda t: delivered(t) >= expected)
        elapsed = trio.current_time() - started
        workers_pids |= _descendants(pid)
        cpu = {
            "bot": _cpu_seconds(pid) - cpu_before[0],
            "workers": sum(map(_cpu_seconds, workers_pids)) - cpu_before[1],
            "fake_telegram": _self_cpu() - cpu_before[2],
        }
        count = delivered(bot.telegram)
        rss = bot.peak_rss_mb()
    return {
        "chats": chats,
        "messages_per_chat": messages,
        "workers": workers,
        "expected": expected,
        "delivered": count,
        "seconds": elapsed,
        "throughput_per_s": count / elapsed if elapsed else 0.0,
        "peak_rss_mb": rss,
        "cpu_seconds": cpu,
        "settings": config.differences(),
    }


async def run_idle(chats: int, workers: int, recycling: bool, timing: IdleTiming) -> dict[str, Any]:
    """`chats` chats send one message each and go quiet; the bot before and after idle_ttl."""
    folder = Path(tempfile.mkdtemp(prefix=f"bench-scale-idle-{chats}-"))
    users = [100_000 + n for n in range(chats)]
    fake = fake_codex(folder)
    settings = [
        *base_settings(1, workers, recycling),
        Setting("sessions.idle_ttl", timing.idle_ttl, "the chats' idle stop, within the benchmark"),
    ]
    config = BenchConfig(users, fake.argv(), fake_env(fake), settings=settings)
    async with running_bot(config, folder) as bot:
        pid = bot.process.pid
        started = trio.current_time()
        for user in users:
            bot.telegram.push_message(chat_id=user, user_id=user, text=f"c{user} hello")
        delivered = ReplyCounter("FAKE-REPLY")
        with trio.move_on_after(600):
            await bot.telegram.wait_for(lambda t: delivered(t) >= chats)
        elapsed = trio.current_time() - started

        async def quiet_window() -> dict[str, float]:
            before = _cpu_seconds(pid)
            await trio.sleep(timing.quiet_window)
            return {
                "cpu_percent": 100 * (_cpu_seconds(pid) - before) / timing.quiet_window,
                "rss_mb": status_mb(pid, "VmRSS"),
                "open_files": open_files(pid),
            }

        live = await quiet_window()  # the chat actors still wait for their idle_ttl
        since_last_reply = trio.current_time() - started - elapsed
        await trio.sleep(max(0.0, timing.idle_ttl + 2 - since_last_reply))
        stopped = await quiet_window()
        count = delivered(bot.telegram)
        peak = bot.peak_rss_mb()
    return {
        "chats": chats,
        "delivered": count,
        "seconds": elapsed,
        "before_idle_ttl": live,
        "after_idle_ttl": stopped,
        "peak_rss_mb": peak,
        "settings": config.differences(),
    }


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run (CI)")
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=5)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--doublings", type=int, default=2, help="runs at 2N, 4N, ... chats")
    parser.add_argument("--idle-chats", type=int, default=10_000, help="0: no idle run")
    parser.add_argument("--shipped-recycling", action="store_true")
    return parser.parse_args()


async def main() -> None:
    args = arguments()
    chats, messages, workers, doublings, idle_chats = (
        (10, 2, 2, 1, 20)
        if args.tiny
        else (args.chats, args.messages, args.workers, args.doublings, args.idle_chats)
    )
    recycling = args.shipped_recycling
    runs = [
        await run_size(chats * 2**n, messages, workers, recycling) for n in range(doublings + 1)
    ]
    rows = [("chats", "delivered", "seconds", "msg/s", "peak RSS", "CPU s bot/workers/fake TG")]
    for result in runs:
        cpu = result["cpu_seconds"]
        rows.append(
            (
                str(result["chats"]),
                f"{result['delivered']}/{result['expected']}",
                f"{result['seconds']:.1f}",
                f"{result['throughput_per_s']:.0f}",
                f"{result['peak_rss_mb']:.0f} MB",
                f"{cpu['bot']:.1f} / {cpu['workers']:.1f} / {cpu['fake_telegram']:.1f}",
            )
        )
    growth = [
        later["seconds"] / earlier["seconds"] if earlier["seconds"] else float("nan")
        for earlier, later in itertools.pairwise(runs)
    ]
    print(
        table(f"scale: {messages} messages per chat, {workers} workers, instant fake Codex", rows)
    )
    print(
        "\ndoubling the chats took "
        + ", ".join(f"{g:.2f}x" for g in growth)
        + " the time (target <= 2.1x); targets: all delivered, >= 300 msg/s, <= 200 MB"
    )
    idle: dict[str, Any] | None = None
    if idle_chats:
        timing = TINY_IDLE_TIMING if args.tiny else IDLE_TIMING
        idle = await run_idle(idle_chats, workers, recycling, timing)
        live, stopped = idle["before_idle_ttl"], idle["after_idle_ttl"]
        print(
            f"\nidle: {idle['chats']} chats, one message each: {idle['delivered']} replies in "
            f"{idle['seconds']:.1f} s, peak RSS {idle['peak_rss_mb']:.0f} MB; quiet "
            f"{timing.quiet_window:g} s before idle_ttl ({timing.idle_ttl:g} s): CPU "
            f"{live['cpu_percent']:.1f} %, "
            f"RSS {live['rss_mb']:.0f} MB, {live['open_files']} fds; after: CPU "
            f"{stopped['cpu_percent']:.1f} %, RSS {stopped['rss_mb']:.0f} MB, "
            f"{stopped['open_files']} fds"
        )
    print()
    print(settings_text(runs[0]["settings"], f"{chats} chats (the larger runs: the same)"))
    path = save(
        "scale",
        {"runs": runs, "time_growth": growth, "idle": idle, "machine": machine()},
        " ".join(["uv run python", *sys.argv]),
    )
    print(f"results: {path}")


if __name__ == "__main__":
    trio.run(main)
