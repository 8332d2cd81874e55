"""`codex-orchestrator start` as a real process for tests, with nothing left behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from tests.procfs import tree

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping, Sequence
    from pathlib import Path

    from tests.fakes.telegram_server import FakeTelegram

ENTRY = "from cli.app import main; main()"

BOT_VARIABLES = (
    "CODEX_CONF_PATH",
    "TELEGRAM_BOT_TOKEN",
    "CODEX_HOME",
    "OPENAI_API_KEY",
    "CODEX_API_KEY",
)
"""What would make a process under test read the machine's bot setup instead of the test's."""


def cli_environment(**variables: str) -> dict[str, str]:
    """An explicit environment for the CLI under test: this process's (HOME is the suite's
    empty one, see tests/conftest.py) without `BOT_VARIABLES`, plus `variables`."""
    base = {key: value for key, value in os.environ.items() if key not in BOT_VARIABLES}
    return base | variables


async def run_cli(
    args: Sequence[str], *, cwd: Path, env: Mapping[str, str], within: float = 60
) -> tuple[int, str]:
    """``codex-orchestrator ARGS`` as a process in `cwd` with exactly `env`: exit code and
    output (stdout and stderr together)."""
    with trio.fail_after(within):
        result = await trio.run_process(
            [sys.executable, "-c", ENTRY, *args],
            env=dict(env),
            cwd=cwd,
            capture_stdout=True,
            stderr=subprocess.STDOUT,
            check=False,
        )
    output = result.stdout.decode(errors="replace")
    print(output)
    return result.returncode, output


def write_config(
    folder: Path,
    *,
    telegram_url: str,
    user: int,
    codex_command: Sequence[str],
    codex_env: Mapping[str, str],
    batch_window: float,
    profile: Mapping[str, object] | None = None,
    codex: Mapping[str, str | float] | None = None,
    telegram: Mapping[str, float | int | bool] | None = None,
) -> Path:
    """``folder/conf.toml`` for a bot under test: one allowed `user`, the fake Telegram at
    `telegram_url`, two workers, and a single-mode default profile working in ``folder/work``
    (with `profile`'s extra keys; `codex` adds keys to ``[codex]``, e.g. the backend;
    `telegram`'s go to ``[telegram]``). Values are written as JSON, which TOML reads too."""
    work = folder / "work"
    work.mkdir(exist_ok=True)
    command = ", ".join(json.dumps(part) for part in codex_command)
    env = "".join(f"{key} = {json.dumps(value)}\n" for key, value in codex_env.items())
    codex_keys = "".join(f"{key} = {json.dumps(value)}\n" for key, value in (codex or {}).items())
    extra = "".join(f"{key} = {json.dumps(value)}\n" for key, value in (profile or {}).items())
    telegram_keys = "".join(
        f"{key} = {json.dumps(value)}\n" for key, value in (telegram or {}).items()
    )
    path = folder / "conf.toml"
    path.write_text(
        f"""
state_dir = {json.dumps(str(folder / "state"))}
[telegram]
allowed_users = [{user}]
api_base_url = {json.dumps(telegram_url)}
{telegram_keys}[telegram.polling]
timeout = 5
[codex]
command = [{command}]
pool_size = 2
{codex_keys}[codex.env]
{env}[sessions]
batch_window = {batch_window}
[shutdown]
drain_grace = 10
[profiles.default]
working_directory = {json.dumps(str(work))}
default_mode = "single"
{extra}"""
    )
    return path


@dataclass
class Bot:
    process: trio.Process
    output: bytearray
    changed: trio.Event = field(default_factory=trio.Event)

    def text(self) -> str:
        return self.output.decode(errors="replace")

    async def wait_for_output(self, predicate: Callable[[str], bool]) -> None:
        """Wait until `predicate(text so far)` holds (no sleeping: woken by new output)."""
        while not predicate(self.text()):
            if self.process.returncode is not None and not self.changed.is_set():
                raise AssertionError(f"the bot exited before that was printed:\n{self.text()}")
            await self.changed.wait()


async def _read_all(process: trio.Process, bot: Bot) -> None:
    assert process.stdout is not None
    while chunk := await process.stdout.receive_some(65536):
        bot.output += chunk
        bot.changed.set()
        bot.changed = trio.Event()
    await process.wait()
    bot.changed.set()


@asynccontextmanager
async def running(
    config: Path,
    token: str | None,
    *,
    exit_within: float = 60,
    entry: str = ENTRY,
    environment: Mapping[str, str] | None = None,
) -> AsyncIterator[Bot]:
    """`codex-orchestrator start` as a process, its output collected.

    After the body the bot has `exit_within` seconds to stop by itself. Whatever the test
    does, nothing outlives it: a bot still running at the end is killed with its whole tree,
    and its output is printed so that a failure shows what it said. `token` None: the token
    is not put in the environment (the config names a token file). `entry`: the Python code
    the process runs (a test may patch a part of the bot before ``main()``). `environment`:
    variables added to the process's (a proxy, a certificate authority).
    """
    env = cli_environment(CODEX_CONF_PATH=str(config), **(environment or {}))
    if token is not None:  # None: the config names a token file
        env["TELEGRAM_BOT_TOKEN"] = token
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", entry, "start"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=config.parent,
    )
    bot = Bot(process, bytearray())
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read_all, process, bot)
            yield bot
            with trio.fail_after(exit_within):
                await process.wait()
    finally:
        if process.returncode is None:
            for pid in tree(process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with trio.CancelScope(shield=True):
                await process.wait()
        print(bot.text())


@asynccontextmanager
async def polling(
    tg: FakeTelegram, config: Path, token: str | None, **options: Any
) -> AsyncIterator[Bot]:
    """`running`, once the bot asked `tg` for its first updates: ready for messages (an
    earlier bot's polls on the same `tg` do not count). A bot that exits first (a config
    error) fails the test at once, with what it printed, instead of at the test's ceiling."""
    seen = len(tg.calls_of("getUpdates"))
    async with running(config, token, **options) as bot:
        async with trio.open_nursery() as race:

            async def polled() -> None:
                await tg.wait_for(lambda t: len(t.calls_of("getUpdates")) > seen)
                race.cancel_scope.cancel()

            race.start_soon(polled)
            await bot.process.wait()
            race.cancel_scope.cancel()
        if bot.process.returncode is not None:
            raise AssertionError(
                f"the bot exited ({bot.process.returncode}) before it polled:\n{bot.text()}"
            )
        yield bot


async def stop_while_telegram_answers(bot: Bot) -> None:
    """Stop `bot` (SIGSTOP: a Ctrl-Z, a laptop's lid) while it waits for Telegram's answer to
    a call the test delayed by 0.5 s, continue it once that answer and the bot's 1 s request
    timeout have passed, give it the time to send the call again if it would, then SIGTERM."""
    await trio.sleep(0.2)  # idle, the stop lands in its wait for the answer
    bot.process.send_signal(signal.SIGSTOP)
    try:  # stopped until Telegram answered and the 1 s timeout has passed
        await trio.sleep(2.5)
    finally:
        bot.process.send_signal(signal.SIGCONT)
    await trio.sleep(1.5)  # time to send it again, if it would
    bot.process.send_signal(signal.SIGTERM)
