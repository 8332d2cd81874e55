"""first_call: how long a message waits before Codex sees it, on the shipped defaults.

The real ``codex-orchestrator start`` on every shipped default (batching window, plan mode,
limits), against the fake Telegram served from here and the fake Codex MCP server, which
stamps every request it reads with the wall clock (``at`` in its record). Measured:

- lone short messages, one at a time, each from its own chat (an idle chat): the update is
  pushed into the fake Telegram → the fake Codex reads the first ``tools/call`` that carries
  the message (plan mode's selector call), and → the reply;
- long pastes as Telegram splits them: a part of exactly 4,096 characters, then the rest
  200 ms later, from their own chat: did both parts reach Codex as one call, and how long
  after each part did Codex have the whole paste.

The fake's selector answers ``{"route": "single"}``, so a request is the selector's call
then the developer's, both instant: what is measured is the bot, not Codex.

    uv run python bench/first_call.py [--messages 20 --pastes 5]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from harness import (
    BenchConfig,
    arguments,
    codex_calls,
    fake_env,
    machine,
    running_bot,
    save,
    settings_text,
    shipped,
    summary,
    table,
)
from tests.fakes.codex_script import FakeCodex

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.fakes.telegram_server import FakeTelegram

TELEGRAM_LIMIT = 4096
PASTE_REST = 700
PASTE_GAP = 0.2
WHOLE = "FAKE-REPLY: the paste with its second part"
FIRST_ONLY = "FAKE-REPLY: the first part alone"


def filled(head: str, length: int) -> str:
    text = head + " " + "lorem ipsum dolor sit amet " * (length // 27 + 1)
    return text[:length]


def replies(telegram: FakeTelegram, chat: int, containing: str) -> list[float]:
    """When the fake Telegram accepted each sendMessage to `chat` whose text has `containing`."""
    return [
        call.at
        for call in telegram.calls_of("sendMessage")
        if call.status == 200
        and str(call.params.get("chat_id")) == str(chat)
        and containing in str(call.params.get("text", ""))
    ]


def replied(chat: int, containing: str) -> Callable[[FakeTelegram], bool]:
    return lambda telegram: bool(replies(telegram, chat, containing))


async def main() -> None:
    args = arguments(__doc__.splitlines()[0], messages=20, pastes=5)
    lone_count, paste_count = (3, 1) if args.tiny else (args.messages, args.pastes)
    folder = Path(tempfile.mkdtemp(prefix="bench-first-call-"))
    fake = FakeCodex(folder / "codex")
    fake.rules += [
        # plan mode's selector (the one prompt that asks for a "route"): a single developer run
        {"regex": '"route"', "reply": '{"route": "single", "reason": "benchmark"}'},
        {"regex": r"#P\d+B#", "reply": WHOLE},
        {"regex": r"#P\d+A#", "reply": FIRST_ONLY},
    ]
    fake.write()
    lone_users = [30_000 + n for n in range(lone_count)]
    paste_users = [40_000 + n for n in range(paste_count)]
    config = BenchConfig([*lone_users, *paste_users], fake.argv(), fake_env(fake))
    lone_pushed: dict[int, tuple[float, float]] = {}
    lone_replied: dict[int, float] = {}
    paste_pushed: dict[int, tuple[float, float, float]] = {}
    paste_replies: dict[int, int] = {}
    async with running_bot(config, folder) as bot:
        telegram = bot.telegram
        for n, user in enumerate(lone_users):
            pushed, wall = trio.current_time(), time.time()
            telegram.push_message(chat_id=user, user_id=user, text=f"lone message #L{n}#")
            lone_pushed[n] = (pushed, wall)
            with trio.move_on_after(60):
                await telegram.wait_for(replied(user, "FAKE-REPLY"))
            done = replies(telegram, user, "FAKE-REPLY")
            if done:
                lone_replied[n] = (done[0] - pushed) * 1000
            await trio.sleep(0.1)
        for k, user in enumerate(paste_users):
            part_one = filled(f"paste #P{k}A#", TELEGRAM_LIMIT)
            rest = filled(f"#P{k}B# the rest of the paste", PASTE_REST)
            wall_first = time.time()
            telegram.push_message(chat_id=user, user_id=user, text=part_one)
            await trio.sleep(PASTE_GAP)
            wall_rest = time.time()
            telegram.push_message(chat_id=user, user_id=user, text=rest)
            paste_pushed[k] = (wall_first, wall_rest, trio.current_time())
            with trio.move_on_after(60):
                await telegram.wait_for(replied(user, WHOLE))
            await trio.sleep(0.1)
            paste_replies[k] = len(replies(telegram, user, "FAKE-REPLY"))
    calls = codex_calls(fake)

    def first_call(marker: str) -> tuple[float, str] | None:
        return next(((at, prompt) for at, prompt in calls if marker in prompt), None)

    to_call: list[float] = []
    for n, (_, wall) in lone_pushed.items():
        found = first_call(f"#L{n}#")
        if found is not None:
            to_call.append((found[0] - wall) * 1000)
    paste_first_ms: list[float] = []
    paste_whole_ms: list[float] = []
    paste_after_rest_ms: list[float] = []
    one_call = 0
    delivered_pastes = 0
    for k, (wall_first, wall_rest, _) in paste_pushed.items():
        first, whole = first_call(f"#P{k}A#"), first_call(f"#P{k}B#")
        if first is not None:
            paste_first_ms.append((first[0] - wall_first) * 1000)
            one_call += f"#P{k}B#" in first[1]
        if whole is not None:
            paste_whole_ms.append((whole[0] - wall_first) * 1000)
            paste_after_rest_ms.append((whole[0] - wall_rest) * 1000)
        delivered_pastes += first is not None and whole is not None
    lone: dict[str, Any] = {
        "sent": lone_count,
        "reached_codex": len(to_call),
        "replied": len(lone_replied),
        "update_to_call_ms": summary(to_call),
        "update_to_reply_ms": summary(list(lone_replied.values())),
    }
    pastes: dict[str, Any] = {
        "sent": paste_count,
        "parts": [TELEGRAM_LIMIT, PASTE_REST],
        "gap_s": PASTE_GAP,
        "reached_codex": delivered_pastes,
        "one_call": one_call,
        "replies_per_paste": list(paste_replies.values()),
        "first_part_to_first_call_ms": summary(paste_first_ms),
        "first_part_to_whole_at_codex_ms": summary(paste_whole_ms),
        "second_part_to_whole_at_codex_ms": summary(paste_after_rest_ms),
    }
    window = shipped("sessions.batch_window")
    mode = shipped("profiles.default.default_mode")
    rows = [("measure (ms)", "n", "median", "p90", "p99")]
    for label, stats in (
        ("lone message → Codex call", lone["update_to_call_ms"]),
        ("lone message → reply", lone["update_to_reply_ms"]),
        ("paste part 1 → first Codex call", pastes["first_part_to_first_call_ms"]),
        ("paste part 1 → Codex has both parts", pastes["first_part_to_whole_at_codex_ms"]),
        ("paste part 2 → Codex has both parts", pastes["second_part_to_whole_at_codex_ms"]),
    ):
        rows.append(
            (
                label,
                str(stats["n"]),
                f"{stats['median']:.1f}",
                f"{stats['p90']:.1f}",
                f"{stats['p99']:.1f}",
            )
        )
    shown_window = f"{window} s" if isinstance(window, int | float) else "gone"
    print(
        table(
            f"first_call: message → Codex call on the shipped defaults "
            f"(batch_window {shown_window}, {mode} mode)",
            rows,
        )
    )
    print(
        f"\nsplit pastes ({TELEGRAM_LIMIT:,} + {PASTE_REST} characters, {PASTE_GAP * 1000:.0f} ms "
        f"apart) that reached Codex as one call: {one_call}/{paste_count}; "
        f"replies per paste: {pastes['replies_per_paste']}"
    )
    print(
        f"every message got through: lone {len(to_call)}/{lone_count} reached Codex, "
        f"{len(lone_replied)}/{lone_count} replied; pastes {delivered_pastes}/{paste_count} "
        "reached Codex (both parts)"
    )
    differences = config.differences()
    print()
    print(settings_text(differences))
    print("(no tuning: batching, plan mode and Telegram's limits are as shipped)")
    result: dict[str, Any] = {
        "shipped_batch_window": window if isinstance(window, int | float) else None,
        "shipped_default_mode": mode if isinstance(mode, str) else None,
        "lone": lone,
        "split_paste": pastes,
        "settings": differences,
        "machine": machine(),
    }
    path = save("first_call", result, " ".join(["uv run python", *sys.argv]))
    print(f"results: {path}")


if __name__ == "__main__":
    trio.run(main)
