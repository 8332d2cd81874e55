"""first_event: warm Codex workers (both backends) against a cold spawn per request.

Every arm runs the real ``codex-orchestrator start`` against the mock model:

- warm MCP: ``pool_size`` warm ``codex mcp-server`` workers (Codex 0.153.4, native binary);
- warm app-server: ``backend = "app-server"``, warm ``codex app-server`` workers (Codex
  0.171.0, native binary);
- cold spawn: ``codex.cold_start = true``: a fresh ``codex mcp-server`` per request, as the
  original product did (through npx, which is slower still).

Measured per message (each from a new chat, so each opens a thread), on this process's clock:

- update → first Codex event: the update is pushed into the fake Telegram until the mock model
  receives Codex's first request for it (Codex is working on it);
- update → final reply: until the fake Telegram receives the answer;
- memory (warm arms): the workers' resident memory (VmRSS, all workers together) before the
  first message, after one thread on each worker (its first turn loads most of Codex), and
  after the last reply; per further thread: the growth after the first turns over the threads
  opened since.

    uv run python bench/first_event.py [--messages 30]
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
    workers_rss_mb,
)
from tests.fakes.app_server_script import FakeAppServer
from tests.fakes.codex_install import CACHE, ensure_app_server_codex, ensure_codex
from tests.fakes.mock_model import (
    Text,
    codex_env,
    last_user_text,
    open_mock_model,
    write_codex_home,
)

WORKERS = 2
"""The shipped ``pool_size``: the first this many messages open one thread on each worker."""


async def run_arm(
    cold: bool,
    count: int,
    binary: Path | None,
    cold_via_npx: bool,
    app_server: Path | None = None,
    *,
    backend: str = "mcp",
) -> dict[str, Any]:
    name = "cold" if cold else f"warm-{backend}"
    folder = Path(tempfile.mkdtemp(prefix=f"bench-first-{name}-"))
    users = [20_000 + n for n in range(count)]
    first_seen: dict[str, float] = {}
    async with open_mock_model() as model:

        def respond(body: dict[str, Any]) -> list[Any]:
            prompt = last_user_text(body)
            first_seen.setdefault(prompt, trio.current_time())
            return [Text(f"MOCK: {prompt}")]

        model.responder = respond
        if backend == "app-server" and app_server is not None:
            home = write_codex_home(folder / "home", model.base_url, model="gpt-5.5")
            command = [str(app_server), "app-server"]
            env = codex_env(home)
        elif backend == "app-server":
            fake_app = FakeAppServer(folder / "app-server")
            command = list(fake_app.argv())
            env = {"FAKE_APP_SERVER_SCRIPT": str(fake_app.script_path)}
        elif binary is not None:
            home = write_codex_home(folder / "home", model.base_url)
            command: list[str] = [str(binary), "mcp-server"]
            if cold and cold_via_npx:
                # The original product: npx (here offline, from the local install) per request.
                command = ["npx", "--prefix", str(CACHE), "--no-install", "codex", "mcp-server"]
            env = codex_env(home)
        else:
            fake = fake_codex(folder)
            command, env = list(fake.argv()), fake_env(fake)

        settings = [SINGLE_MODE]
        if backend == "app-server":
            settings.append(Setting("codex.backend", "app-server", "the warm app-server arm"))
        if cold:
            settings.append(
                Setting(
                    "codex.cold_start",
                    True,
                    "the cold arm: a fresh Codex per request, as the original product",
                )
            )
        config = BenchConfig(
            users,
            command,
            env,
            codex_is=(
                (
                    "the real Codex 0.171.0 app-server on the mock model"
                    if app_server is not None
                    else "the fake Codex app-server (no npm here)"
                )
                if backend == "app-server"
                else "the real Codex 0.153.4 on the mock model"
                + (" (through npx per request)" if cold and cold_via_npx else "")
                if binary is not None
                else "the fake Codex MCP server (no npm here)"
            ),
            settings=settings,
        )

        to_event: list[float] = []
        to_reply: list[float] = []
        async with running_bot(config, folder) as bot:
            rss_before = workers_rss_mb(bot.process.pid)
            rss_first = rss_before
            for n, user in enumerate(users):
                text = f"request number {n}"
                pushed = trio.current_time()
                bot.telegram.push_message(chat_id=user, user_id=user, text=text)
                with trio.fail_after(60):
                    await bot.telegram.wait_for(
                        lambda t, u=user: any("request number" in x for x in t.sent_texts(u))
                    )
                replied = next(
                    c.at
                    for c in bot.telegram.calls_of("sendMessage")
                    if str(c.params.get("chat_id")) == str(user)
                )
                to_reply.append((replied - pushed) * 1000)
                seen = first_seen.get(text)
                if seen is not None:
                    to_event.append((seen - pushed) * 1000)
                await trio.sleep(0.1)
                if n == WORKERS - 1:  # one thread on each worker: their first-turn growth
                    rss_first = workers_rss_mb(bot.process.pid)
            rss_after = workers_rss_mb(bot.process.pid)
    return {
        "first_event_ms": summary(to_event),
        "reply_ms": summary(to_reply),
        "workers_rss_mb": {"before": rss_before, "first_turns": rss_first, "after": rss_after},
        "mb_per_thread": (rss_after - rss_first) / (count - WORKERS) if count > WORKERS else 0.0,
        "settings": config.differences(),
    }


async def main() -> None:
    args = arguments(__doc__.splitlines()[0], messages=30, cold_command="npx")
    count = 3 if args.tiny else args.messages
    binary = None if args.tiny else await trio.to_thread.run_sync(ensure_codex)
    app_server = None if args.tiny else await trio.to_thread.run_sync(ensure_app_server_codex)
    via_npx = args.cold_command == "npx"
    warm = await run_arm(False, count, binary, via_npx)
    warm_app = await run_arm(False, count, binary, via_npx, app_server, backend="app-server")
    cold = await run_arm(True, count, binary, via_npx)
    rows = [
        ("arm", "first event p50", "p90", "reply p50", "p90", "workers RSS", "MB/further thread")
    ]
    arms = (("warm MCP", warm), ("warm app-server", warm_app), ("cold spawn", cold))
    for name, arm in arms:
        rss = arm["workers_rss_mb"]
        rows.append(
            (
                name,
                f"{arm['first_event_ms']['median']:.1f} ms",
                f"{arm['first_event_ms']['p90']:.1f} ms",
                f"{arm['reply_ms']['median']:.1f} ms",
                f"{arm['reply_ms']['p90']:.1f} ms",
                f"{rss['before']:.0f} → {rss['first_turns']:.0f} → {rss['after']:.0f} MB",
                f"{arm['mb_per_thread']:.2f}" if name != "cold spawn" else "-",
            )
        )
    ratio_event = warm["first_event_ms"]["median"] / cold["first_event_ms"]["median"]
    ratio_reply = warm["reply_ms"]["median"] / cold["reply_ms"]["median"]
    codex = "real Codex 0.153.4 / 0.171.0 + mock model" if binary else "fake Codex (no npm)"
    print(table(f"first_event: {count} messages per arm, {codex}", rows))
    cold_how = "npx per request" if via_npx else "native binary per request"
    app_event = warm_app["first_event_ms"]["median"] / cold["first_event_ms"]["median"]
    app_reply = warm_app["reply_ms"]["median"] / cold["reply_ms"]["median"]
    print(
        f"\ncold arm: {cold_how}. warm/cold ratio (median): first event "
        f"{ratio_event:.2f}x, reply {ratio_reply:.2f}x (target <= 0.25x); app-server/cold: "
        f"first event {app_event:.2f}x, reply {app_reply:.2f}x"
    )
    print()
    print(settings_text(warm["settings"], "warm arm"))
    print(settings_text(warm_app["settings"], "warm app-server arm"))
    print(settings_text(cold["settings"], "cold arm"))
    path = save(
        "first_event",
        {
            "messages": count,
            "codex": codex,
            "cold_arm": cold_how,
            "warm": warm,
            "warm_app_server": warm_app,
            "cold": cold,
            "ratio_app_server_first_event": app_event,
            "ratio_app_server_reply": app_reply,
            "ratio_first_event": ratio_event,
            "ratio_reply": ratio_reply,
            "machine": machine(),
        },
        " ".join(["uv run python", *sys.argv]),
    )
    print(f"results: {path}")


if __name__ == "__main__":
    trio.run(main)
