"""startup: how long the command line and the bot take to be ready.

- ``codex-orchestrator --help`` and ``--version`` (the installed console script), against a
  bare ``python -c pass`` as the floor the interpreter sets;
- ``codex-orchestrator start`` until its first getUpdates reaches the fake Telegram: config
  loaded, state opened, ``pool_size`` workers initialized (initialize + tools/list), commands
  set, poller started. With the fake Codex, and with the real Codex 0.153.4 (native binary)
  where npm can install it, with the shipped 2 workers and with 6 (the first worker starts
  alone, the others at once: 6 should cost about what 2 do, not three times as much).

    uv run python bench/startup.py [--runs 20 --starts 10]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import trio

from harness import (
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
)
from tests.fakes.codex_install import ensure_codex
from tests.fakes.mock_model import codex_env, open_mock_model, write_codex_home


def console_script() -> list[str]:
    """The installed ``codex-orchestrator`` entry point (what a user runs)."""
    beside = Path(sys.executable).with_name("codex-orchestrator")
    found = str(beside) if beside.exists() else shutil.which("codex-orchestrator")
    if found is None:
        raise SystemExit("codex-orchestrator is not installed here: run through `uv run`")
    return [found]


async def command_ms(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = trio.current_time()
        await trio.run_process(argv, capture_stdout=True, capture_stderr=True)
        times.append((trio.current_time() - started) * 1000)
    return times


POOL_SIZE_SETTING = Setting(
    "codex.pool_size", 6, "more workers than shipped: they start at once after the first"
)


async def start_ms(
    starts: int, real_codex: Path | None, settings: tuple[Setting, ...] = ()
) -> tuple[list[float], BenchConfig]:
    times = []
    config: BenchConfig | None = None
    for _ in range(starts):
        folder = Path(tempfile.mkdtemp(prefix="bench-startup-"))
        async with open_mock_model() as model:
            if real_codex is not None:
                home = write_codex_home(folder / "home", model.base_url)
                command, env = [str(real_codex), "mcp-server"], codex_env(home)
            else:
                fake = fake_codex(folder)
                command, env = list(fake.argv()), fake_env(fake)

            config = BenchConfig(
                [1],
                command,
                env,
                codex_is="the real Codex 0.153.4 on the mock model"
                if real_codex is not None
                else "the fake Codex MCP server",
                settings=settings,
            )
            async with running_bot(config, folder) as bot:
                times.append(bot.ready_seconds() * 1000)
    assert config is not None
    return times, config


async def main() -> None:
    args = arguments(__doc__.splitlines()[0], runs=20, starts=10)
    runs, starts = (2, 1) if args.tiny else (args.runs, args.starts)
    script = console_script()
    measured: dict[str, dict[str, float]] = {
        "python -c pass": summary(await command_ms([sys.executable, "-c", "pass"], runs)),
        "codex-orchestrator --help": summary(await command_ms([*script, "--help"], runs)),
        "codex-orchestrator --version": summary(await command_ms([*script, "--version"], runs)),
    }
    fake_starts, config = await start_ms(starts, None)
    measured["start -> first getUpdates (fake Codex, 2 workers)"] = summary(fake_starts)
    settings = {"fake Codex": config.differences()}
    binary = None if args.tiny else await trio.to_thread.run_sync(ensure_codex)
    if binary is not None:
        real_starts, config = await start_ms(starts, binary)
        measured["start -> first getUpdates (Codex 0.153.4, 2 workers)"] = summary(real_starts)
        settings["Codex 0.153.4"] = config.differences()
        real_starts, config = await start_ms(starts, binary, (POOL_SIZE_SETTING,))
        measured["start -> first getUpdates (Codex 0.153.4, 6 workers)"] = summary(real_starts)
        settings["Codex 0.153.4 and 6 workers"] = config.differences()
    rows = [("measure", "runs", "median", "p90")]
    for name, stats in measured.items():
        rows.append((name, str(stats["n"]), f"{stats['median']:.0f} ms", f"{stats['p90']:.0f} ms"))
    print(table("startup", rows))
    for name, rows_of_settings in settings.items():
        print()
        print(settings_text(rows_of_settings, f"start with the {name}"))
    path = save(
        "startup",
        {"measured_ms": measured, "settings": settings, "machine": machine()},
        " ".join(["uv run python", *sys.argv]),
    )
    print(f"results: {path}")


if __name__ == "__main__":
    trio.run(main)
