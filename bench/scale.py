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
    ReplyCounter,
    arguments,
    fake_codex,
    machine,
    running_bot,
    save,
    table,
    write_config,
)


async def run_size(chats: int, messages: int, workers: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-scale-{chats}-"))
    users = [100_000 + n for n in range(chats)]
    fake = fake_codex(folder)

    def config(base_url: str) -> Path:
        return write_config(
            folder,
            base_url,
            users=users,
            codex_command=fake.argv(),
            codex_env=fake.env({}),
            pool_size=workers,
            extra_telegram="rate_limit = 0\nchat_spacing = false",
        )

    expected = chats * messages
    async with running_bot(config) as bot:
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
    path = save(
        "scale",
        {"runs": [base, double], "time_growth": growth, "machine": machine()},
        " ".join(["uv run python", *sys.argv]),
    )
    print(f"results: {path}")


if __name__ == "__main__":
    trio.run(main)
