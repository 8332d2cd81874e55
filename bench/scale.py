"""scale: many chats at once through a few workers (instant fake Codex).

N chats each send M messages at once; the bot runs them through W workers. Telegram's rate
limits are lifted for this run (``telegram.rate_limit = 0``, ``chat_spacing = false``): this
measures the orchestrator, not Telegram's 30 messages/s (the flood benchmark covers those).
Reported: replies delivered (must be all), wall time from the first update to the last
reply, throughput, and the bot's peak RSS (its own process, without the workers). Then the
same with 2N chats, to show how the cost grows.

    uv run python bench/scale.py [--chats 1000 --messages 5 --workers 8]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import trio

from harness import (
    SINGLE_MODE,
    BenchConfig,
    ReplyCounter,
    Setting,
    arguments,
    fake_codex,
    fake_env,
    machine,
    running_bot,
    save,
    settings_text,
    shipped,
    table,
)


async def run_size(chats: int, messages: int, workers: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-scale-{chats}-"))
    users = [100_000 + n for n in range(chats)]
    fake = fake_codex(folder)
    settings = [
        Setting("codex.pool_size", workers, "--workers"),
        Setting(
            "telegram.rate_limit",
            0,
            "Telegram's 30 calls/s lifted: this measures the orchestrator (flood.py measures "
            "the limits)",
        ),
        Setting("telegram.chat_spacing", False, "Telegram's 1 s per chat lifted, as above"),
        Setting(
            "sessions.batch_window",
            0,
            f"the {messages} messages of a chat arrive at once and must stay {messages} prompts "
            f"(1 run, {messages - 1} queued), not be joined into one",
        ),
        SINGLE_MODE,
    ]
    limit = shipped("sessions.queue_limit")
    if isinstance(limit, int) and messages - 1 > limit:
        settings.append(Setting("sessions.queue_limit", messages, "--messages"))
    config = BenchConfig(users, fake.argv(), fake_env(fake), settings=settings)
    expected = chats * messages
    async with running_bot(config, folder) as bot:
        started = trio.current_time()
        for m in range(messages):
            for user in users:
                bot.telegram.push_message(chat_id=user, user_id=user, text=f"c{user} m{m}")

        delivered = ReplyCounter("FAKE-REPLY")
        with trio.move_on_after(600):
            await bot.telegram.wait_for(lambda t: delivered(t) >= expected)
        elapsed = trio.current_time() - started
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
        "settings": config.differences(),
    }


async def main() -> None:
    args = arguments(__doc__.splitlines()[0], chats=1000, messages=5, workers=8)
    chats, messages, workers = (
        (10, 2, 2) if args.tiny else (args.chats, args.messages, args.workers)
    )
    base = await run_size(chats, messages, workers)
    double = await run_size(chats * 2, messages, workers)
    rows = [("chats", "delivered", "seconds", "msg/s", "peak RSS")]
    for result in (base, double):
        rows.append(
            (
                str(result["chats"]),
                f"{result['delivered']}/{result['expected']}",
                f"{result['seconds']:.1f}",
                f"{result['throughput_per_s']:.0f}",
                f"{result['peak_rss_mb']:.0f} MB",
            )
        )
    growth = double["seconds"] / base["seconds"] if base["seconds"] else float("nan")
    print(
        table(f"scale: {messages} messages per chat, {workers} workers, instant fake Codex", rows)
    )
    print(
        f"\ndoubling the chats took {growth:.2f}x the time (target <= 2.2x); "
        "targets: all delivered, >= 300 msg/s, <= 200 MB"
    )
    print()
    print(settings_text(base["settings"], f"{chats} chats (the {2 * chats}-chat run: the same)"))
    path = save(
        "scale",
        {"runs": [base, double], "time_growth": growth, "machine": machine()},
        " ".join(["uv run python", *sys.argv]),
    )
    print(f"results: {path}")


if __name__ == "__main__":
    trio.run(main)
