"""flood: many chats bursting at once against a fake that enforces Telegram's limits.

N chats each send M messages at once: the first runs, the others join one prompt queued
behind it (one "Queued" notice), so the bot has to queue, stream progress and deliver two
final replies per chat that answer all N x M messages, plus the notices and progress edits,
all through Telegram's limits: the fake answers 429 to a fifth message in a private chat
within a second (bursts of 3 tolerated), to the 21st in a group within a minute, and to the
31st call in any second overall. The bot runs with its default limits (30 calls/s overall,
about one call a second per chat) and the shipped ``sessions.batch_window`` (only a part of
a split paste waits for it). Reported: 429s received (target 0), messages answered (target
all), time from the first update to the last final reply, and the calls the bot made.

    uv run python bench/flood.py [--chats 100 --messages 3 --workers 8 --codex-seconds 1.0]
"""

from __future__ import annotations

import datetime
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from harness import (
    ANSWERED,
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
    summary,
    table,
)

REPLY = "FAKE-REPLY"


def result_delays(folder: Path, telegram: Any, wall_offset: float) -> list[float]:
    """Per run: its ``run_end`` trace (the bot has the answer) until the fake Telegram holds
    the final reply, in ms. Runs and replies pair up in order within each chat."""
    ended: dict[int, list[float]] = {}
    for path in sorted((folder / "state" / "traces").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["event"] == "run_end":
                at = datetime.datetime.fromisoformat(record["ts"]).timestamp()
                ended.setdefault(record["chat_id"], []).append(at)
    delivered: dict[int, list[float]] = {}
    for call in telegram.calls_of("sendMessage"):
        if call.status == 200 and str(call.params.get("text", "")).startswith(REPLY):
            chat = int(call.params["chat_id"])
            delivered.setdefault(chat, []).append(call.at + wall_offset)
    return [
        max(0.0, (reply - end) * 1000)
        for chat, ends in ended.items()
        for end, reply in zip(ends, delivered.get(chat, []), strict=False)
    ]


async def main() -> None:
    args = arguments(__doc__.splitlines()[0], chats=100, messages=3, workers=8, codex_seconds=1.0)
    chats, messages, workers, codex_seconds = (
        (5, 2, 2, 0.2)
        if args.tiny
        else (args.chats, args.messages, args.workers, args.codex_seconds)
    )
    folder = Path(tempfile.mkdtemp(prefix="bench-flood-"))
    users = [200_000 + n for n in range(chats)]
    # A run that streams: commands and message deltas over `codex_seconds`, so the bot keeps
    # progress messages and typing indicators going while the finals queue up.
    fake = fake_codex(folder, run="true", deltas=4, delay=codex_seconds)

    config = BenchConfig(
        users,
        fake.argv(),
        fake_env(fake),
        settings=(
            Setting("codex.pool_size", workers, "--workers"),
            SINGLE_MODE,
        ),
    )
    expected = chats * messages
    finals = ReplyCounter(REPLY, answers=ANSWERED)
    async with running_bot(config, folder, enforce_flood_limits=True) as bot:
        started = trio.current_time()
        wall_offset = time.time() - started  # the bot's traces carry wall-clock times
        for m in range(messages):
            for user in users:
                bot.telegram.push_message(chat_id=user, user_id=user, text=f"c{user} m{m}")
        with trio.move_on_after(max(120.0, expected * codex_seconds)):
            await bot.telegram.wait_for(lambda t: finals(t) >= expected)
        elapsed = trio.current_time() - started
        delivered = finals(bot.telegram)
        calls = {
            method: len(bot.telegram.calls_of(method))
            for method in ("sendMessage", "editMessageText", "sendChatAction", "deleteMessage")
        }
        flood_429s = bot.telegram.flood_429s
        delays = summary(result_delays(folder, bot.telegram, wall_offset))
    result: dict[str, Any] = {
        "chats": chats,
        "messages_per_chat": messages,
        "workers": workers,
        "codex_seconds": codex_seconds,
        "expected_answers": expected,
        "answered": delivered,
        "final_replies": finals.replies,
        "flood_429s": flood_429s,
        "seconds_to_last_final": elapsed,
        "run_end_to_final_ms": delays,
        "calls": calls,
        "settings": config.differences(),
        "machine": machine(),
    }
    rows = [
        ("measure", "value"),
        ("messages answered", f"{delivered}/{expected}"),
        ("final replies (runs)", str(finals.replies)),
        ("429 Too Many Requests", str(flood_429s)),
        ("first update -> last final", f"{elapsed:.1f} s"),
        ("run end -> final delivered, p50", f"{delays['median']:.0f} ms"),
        ("run end -> final delivered, p90", f"{delays['p90']:.0f} ms"),
        ("run end -> final delivered, max", f"{delays['max']:.0f} ms"),
        *((f"{method} calls", str(count)) for method, count in calls.items()),
    ]
    print(table(f"flood: {chats} chats x {messages} messages, {workers} workers", rows))
    print(
        f"\nlower bound from the Codex time alone: {finals.replies * codex_seconds / workers:.1f} s"
    )
    print("run end -> final: how long flood control held a finished result back")
    print("targets: every message answered, 0 429s")
    print()
    print(settings_text(result["settings"]))
    path = save("flood", result, " ".join(["uv run python", *sys.argv]))
    print(f"results: {path}")


if __name__ == "__main__":
    trio.run(main)
