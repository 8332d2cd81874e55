"""overhead: the latency the orchestrator adds, with an instant fake Codex.

For each message (sent one at a time, each from its own user so no per-chat spacing applies):
update pushed → final reply received by the fake Telegram, minus the Codex call as the worker
pool timed it (its ``worker`` trace ``duration_ms``). What is left is polling hand-off,
routing, the chat actor, rendering and sending, over real HTTP and real pipes.

    uv run python bench/overhead.py [--messages 200]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import trio

from harness import arguments, fake_codex, machine, running_bot, save, summary, table, write_config


async def main() -> None:
    args = arguments(__doc__.splitlines()[0], messages=200)
    count = 5 if args.tiny else args.messages
    users = [10_000 + n for n in range(count + (0 if args.tiny else 3))]
    folder = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    fake = fake_codex(folder)
    end_to_end: list[float] = []

    def config(base_url: str) -> Path:
        return write_config(
            folder,
            base_url,
            users=users,
            codex_command=fake.argv(),
            codex_env=fake.env({}),
            pool_size=2,
        )

    async with running_bot(config) as bot:
        warm_up = users[:3] if not args.tiny else []
        for n, user in enumerate(warm_up):
            bot.telegram.push_message(chat_id=user, user_id=user, text=f"warm up {n}")
            with trio.fail_after(30):
                await bot.telegram.wait_for(lambda t, u=user: bool(t.sent_texts(u)))
        for n, user in enumerate(users[len(warm_up) :], start=len(warm_up)):
            expected = f"FAKE-REPLY: ping {n}"
            pushed = trio.current_time()
            bot.telegram.push_message(chat_id=user, user_id=user, text=f"ping {n}")
            with trio.fail_after(30):
                await bot.telegram.wait_for(lambda t, u=user, e=expected: e in t.sent_texts(u))
            await trio.sleep(0.1)  # 10 messages/s: below Telegram's 30 calls/s, which we obey
            reply = next(
                c
                for c in bot.telegram.calls_of("sendMessage")
                if c.params.get("chat_id") in (user, str(user))
            )
            end_to_end.append((reply.at - pushed) * 1000)
    codex_ms = []
    for path in sorted((folder / "state" / "traces").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["event"] == "worker" and str(record.get("outcome", "")).startswith("run "):
                codex_ms.append(record["duration_ms"])
    codex_ms = codex_ms[-len(end_to_end) :]  # the warm-up runs come first
    overhead = [total - codex for total, codex in zip(end_to_end, codex_ms, strict=True)]
    stats_e2e, stats_codex, stats_overhead = (
        summary(end_to_end),
        summary(codex_ms),
        summary(overhead),
    )
    rows = [("measure (ms)", "median", "p90", "p99")]
    for name, stats in (
        ("update → reply", stats_e2e),
        ("Codex call (fake)", stats_codex),
        ("orchestrator overhead", stats_overhead),
    ):
        rows.append((name, f"{stats['median']:.2f}", f"{stats['p90']:.2f}", f"{stats['p99']:.2f}"))
    print(table(f"overhead: {count} messages (after 3 warm-up), instant fake Codex", rows))
    print("\ntargets: overhead p50 <= 2 ms, p99 <= 10 ms")
    path = save(
        "overhead",
        {
            "messages": count,
            "end_to_end_ms": stats_e2e,
            "codex_ms": stats_codex,
            "overhead_ms": stats_overhead,
            "machine": machine(),
        },
        " ".join(["uv run python", *sys.argv]),
    )
    print(f"results: {path}")


if __name__ == "__main__":
    trio.run(main)
