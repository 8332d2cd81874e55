"""overhead: the latency the orchestrator adds, against a minimal reference bot, same fakes.

Three bots run side by side in this benchmark's trio run, each against its own fake Telegram
served from here and its own fake Codex MCP server (the same instant script):

- ``codex-orchestrator start``, the product;
- ``bench/reference_bot.py``: a blocking standard-library bot (one getUpdates loop, one warm
  Codex server, one ``tools/call`` and one sendMessage per message): the floor;
- ``bench/trio_floor_bot.py``: the orchestrator's own Telegram and Codex edges on trio with
  nothing between them (a task per message, no actors, durability, limits or rendering): it
  splits the gap into what trio and the edges cost and what the product adds on top.

Messages go one at a time, each from its own user (``--conversation``: from `CONVERSATIONS`
users in turn, each chat's first message a warm-up, so that every measured message goes on
an existing chat and its Codex thread; a chat's messages come seconds apart, as a person's
do, beyond Telegram's one message a second per chat), paced at 10/s (under Telegram's limits,
which the orchestrator obeys), the bots taking turns in an order that goes through every
permutation, so drift on this shared machine falls on all alike. Per message:

- update → reply: pushed into the fake Telegram until the fake receives the answer;
- update → Codex call: until the fake Codex reads the ``tools/call`` (its record's wall clock);
- orchestrator overhead: update → reply minus the Codex call as the worker pool timed it (its
  ``worker`` trace ``duration_ms``).

Reported: median/p90/p99 of each and the ratio of the medians, orchestrator / reference
(the target), and the split through the trio floor bot. The orchestrator keeps the shipped
``sessions.batch_window``: a lone message in an idle chat starts at once, so the window
costs the user nothing here (first_call.py measures that wait).

    uv run python bench/overhead.py [--messages 200] [--conversation]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from harness import (
    SINGLE_MODE,
    TOKEN,
    BenchConfig,
    Setting,
    codex_calls,
    fake_codex,
    fake_env,
    machine,
    running_orchestrator,
    running_reference_bot,
    save,
    settings_text,
    summary,
    table,
)
from tests.fakes.telegram_server import Call, FakeTelegram, open_fake_telegram

if TYPE_CHECKING:
    from tests.fakes.codex_script import FakeCodex

WARM_UP = 3
CONVERSATIONS = 12


@dataclass
class Arm:
    name: str
    telegram: FakeTelegram
    fake: FakeCodex
    pushed: dict[str, tuple[float, float]] = field(default_factory=dict)
    """marker → (trio clock, wall clock) when its update was pushed"""
    reply_ms: dict[str, float] = field(default_factory=dict)

    async def send(self, user: int, marker: str) -> None:
        """One message; returns once the fake Telegram holds the reply."""
        seen = len(self.telegram.calls)
        found: list[Call] = []

        def replied(telegram: FakeTelegram) -> bool:
            nonlocal seen
            for call in telegram.calls[seen:]:
                if (
                    call.method == "sendmessage"
                    and call.status == 200
                    and str(call.params.get("chat_id")) == str(user)
                    and marker in str(call.params.get("text", ""))
                ):
                    found.append(call)
            seen = len(telegram.calls)
            return bool(found)

        pushed, wall = trio.current_time(), time.time()
        self.telegram.push_message(chat_id=user, user_id=user, text=f"ping {marker}")
        with trio.fail_after(30):
            await self.telegram.wait_for(replied)
        self.pushed[marker] = (pushed, wall)
        self.reply_ms[marker] = (found[0].at - pushed) * 1000

    def measured(self, markers: list[str]) -> dict[str, list[float]]:
        """Per measured message: update → reply, update → Codex call, Codex call → reply."""
        called: dict[str, float] = {}
        for at, prompt in codex_calls(self.fake):
            for marker in markers:
                if marker in prompt:
                    called.setdefault(marker, at)
        reply, to_call, after_call = [], [], []
        for marker in markers:
            reply.append(self.reply_ms[marker])
            if marker in called:
                to_call.append((called[marker] - self.pushed[marker][1]) * 1000)
                after_call.append(reply[-1] - to_call[-1])
        return {"update_to_reply": reply, "update_to_call": to_call, "call_to_reply": after_call}


def worker_run_ms(state: Path) -> list[float]:
    """``duration_ms`` of every Codex call the pool ran, in order (the ``worker`` traces)."""
    durations = []
    for path in sorted((state / "traces").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["event"] == "worker" and str(record.get("outcome", "")).startswith("run "):
                durations.append(float(record["duration_ms"]))
    return durations


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run (CI)")
    parser.add_argument("--messages", type=int, default=200, help="per bot, after the warm-up")
    parser.add_argument(
        "--conversation",
        action="store_true",
        help=f"messages from {CONVERSATIONS} users in turn, each going on in its chat and "
        "Codex thread, instead of each from a new one",
    )
    args = parser.parse_args()
    count = 5 if args.tiny else args.messages
    warm_up = 1 if args.tiny else WARM_UP
    if args.conversation:
        warm_up = CONVERSATIONS  # each chat's first message
    senders = [
        10_000 + (n % CONVERSATIONS if args.conversation else n) for n in range(warm_up + count)
    ]
    folder = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    settings = [
        Setting(
            SINGLE_MODE.key,
            SINGLE_MODE.value,
            "one Codex call per message, as the reference bot makes (plan mode adds the "
            "selector's call)",
        )
    ]
    orchestrator_fake = fake_codex(folder / "orchestrator")
    reference_fake = fake_codex(folder / "reference")
    floor_fake = fake_codex(folder / "floor")
    config = BenchConfig(
        sorted(set(senders)),
        orchestrator_fake.argv(),
        fake_env(orchestrator_fake),
        settings=settings,
    )
    async with (
        open_fake_telegram(TOKEN) as orchestrator_telegram,
        open_fake_telegram(TOKEN) as reference_telegram,
        open_fake_telegram(TOKEN) as floor_telegram,
        running_orchestrator(orchestrator_telegram, config, folder / "orchestrator"),
        running_reference_bot(
            reference_telegram,
            reference_fake.argv(),
            fake_env(reference_fake),
            folder / "orchestrator" / "work",
        ),
        running_reference_bot(
            floor_telegram,
            floor_fake.argv(),
            fake_env(floor_fake),
            folder / "orchestrator" / "work",
            script="trio_floor_bot.py",
        ),
    ):
        arms = (
            Arm("orchestrator", orchestrator_telegram, orchestrator_fake),
            Arm("reference", reference_telegram, reference_fake),
            Arm("floor", floor_telegram, floor_fake),
        )
        orders = list(itertools.permutations(arms))
        for n, user in enumerate(senders):
            for arm in orders[n % len(orders)]:
                await arm.send(user, f"#{n}#")
                await trio.sleep(0.1)  # 10 messages/s: below Telegram's 30 calls/s
    markers = [f"#{n}#" for n in range(warm_up, warm_up + count)]
    results: dict[str, dict[str, list[float]]] = {arm.name: arm.measured(markers) for arm in arms}
    codex_ms = worker_run_ms(folder / "orchestrator" / "state")[warm_up:]
    overhead = [
        total - codex
        for total, codex in zip(results["orchestrator"]["update_to_reply"], codex_ms, strict=True)
    ]
    stats = {
        arm: {measure: summary(values) for measure, values in measures.items()}
        for arm, measures in results.items()
    }
    stats["orchestrator"]["codex_call_as_pool_timed"] = summary(codex_ms)
    stats["orchestrator"]["overhead"] = summary(overhead)
    ratios = {
        measure: ratio(
            stats["orchestrator"][measure]["median"], stats["reference"][measure]["median"]
        )
        for measure in ("update_to_reply", "update_to_call", "call_to_reply")
    }
    p90_ratio = ratio(
        stats["orchestrator"]["update_to_reply"]["p90"],
        stats["reference"]["update_to_reply"]["p90"],
    )
    # the same ratio per pair of neighbouring messages: drift cancels within each pair
    paired = [
        o / r
        for o, r in zip(
            results["orchestrator"]["update_to_reply"],
            results["reference"]["update_to_reply"],
            strict=True,
        )
        if r
    ]
    rows = [
        ("measure (ms)", "orchestrator p50", "p90", "p99", "reference p50", "p90", "p99", "ratio")
    ]
    labels = {
        "update_to_reply": "update → reply",
        "update_to_call": "update → Codex call",
        "call_to_reply": "Codex call → reply",
    }
    for measure, label in labels.items():
        o, r = stats["orchestrator"][measure], stats["reference"][measure]
        rows.append(
            (
                label,
                f"{o['median']:.2f}",
                f"{o['p90']:.2f}",
                f"{o['p99']:.2f}",
                f"{r['median']:.2f}",
                f"{r['p90']:.2f}",
                f"{r['p99']:.2f}",
                f"{ratios[measure]:.2f}x",
            )
        )
    for measure, label in (
        ("codex_call_as_pool_timed", "Codex call (pool's timing)"),
        ("overhead", "orchestrator overhead"),
    ):
        o = stats["orchestrator"][measure]
        rows.append(
            (label, f"{o['median']:.2f}", f"{o['p90']:.2f}", f"{o['p99']:.2f}", "", "", "", "")
        )
    print(
        table(
            f"overhead: {count} messages per bot (after {warm_up} warm-up), "
            + (
                f"{CONVERSATIONS} conversations in turn"
                if args.conversation
                else "each from a new chat"
            )
            + ", alternating orchestrator and reference bot, instant fake Codex",
            rows,
        )
    )
    print(
        f"\nupdate → reply, orchestrator / reference: {ratios['update_to_reply']:.2f}x "
        f"(ratio of medians; p90s {p90_ratio:.2f}x; median of per-pair ratios "
        f"{statistics.median(paired):.2f}x). Target <= 1.5x, aim 1.0x."
    )
    reference_ms = stats["reference"]["update_to_reply"]["median"]
    floor_ms = stats["floor"]["update_to_reply"]["median"]
    orchestrator_ms = stats["orchestrator"]["update_to_reply"]["median"]
    split = {
        "floor_to_reference": ratio(floor_ms, reference_ms),
        "orchestrator_to_floor": ratio(orchestrator_ms, floor_ms),
        "gap_share_of_trio_and_edges": ratio(
            floor_ms - reference_ms, orchestrator_ms - reference_ms
        ),
    }
    print(
        f"the gap, through the trio floor bot (the orchestrator's edges on trio, nothing "
        f"between them): update → reply p50 {floor_ms:.2f} ms, "
        f"{split['floor_to_reference']:.2f}x the reference; the orchestrator is "
        f"{split['orchestrator_to_floor']:.2f}x the floor. Trio and the edges are "
        f"{split['gap_share_of_trio_and_edges']:.0%} of the gap, the product's own path the rest."
    )
    delivered = {arm: len(results[arm]["update_to_reply"]) for arm in results}
    print(
        "every message got through: "
        + ", ".join(f"{arm} {n}/{count}" for arm, n in delivered.items())
    )
    print("targets: overhead p50 <= 2 ms, p99 <= 10 ms")
    differences = config.differences()
    print()
    print(settings_text(differences, "orchestrator"))
    print("reference bot: bench/reference_bot.py (no settings; no batching, no durability)")
    print("floor bot: bench/trio_floor_bot.py (no settings; the edges' own defaults)")
    result: dict[str, Any] = {
        "messages": count,
        "conversation": args.conversation,
        "warm_up": warm_up,
        "delivered": delivered,
        "orchestrator_ms": stats["orchestrator"],
        "reference_ms": stats["reference"],
        "floor_ms": stats["floor"],
        "ratio_of_medians": ratios,
        "split_update_to_reply": split,
        "ratio_of_p90s_update_to_reply": p90_ratio,
        "median_pair_ratio_update_to_reply": statistics.median(paired),
        # the figures earlier versions reported, under their old names
        "end_to_end_ms": stats["orchestrator"]["update_to_reply"],
        "codex_ms": stats["orchestrator"]["codex_call_as_pool_timed"],
        "overhead_ms": stats["orchestrator"]["overhead"],
        "settings": differences,
        "machine": machine(),
    }
    path = save("overhead", result, " ".join(["uv run python", *sys.argv]))
    print(f"results: {path}")


if __name__ == "__main__":
    trio.run(main)
