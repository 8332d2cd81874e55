"""task_steps: where the bot's event loop spends a message, step by step (for overhead.py).

    BENCH_STEPS=/tmp/steps.tsv uv run python bench/overhead.py --messages 60
    uv run python bench/task_steps.py /tmp/steps.tsv

With ``BENCH_STEPS`` set, the benchmarks start the orchestrator with `install`: a trio
Instrument that records every task step (its task, when it started, how long it held the
loop), every wait for I/O, and how long each socket ``send`` took inside its step, and writes
them to the file when the bot exits. Run as a script, this module reads such a file message
by message: a message is a burst of steps between two idle gaps of `GAP` seconds (the
benchmark sends 10 a second, one at a time), and its reply is the first ``send`` made in a
step of the sender's lane.

Why a timeline and not cProfile: a profile of a trio program counts a coroutine per
resumption and cannot say what ran *before the reply went out*, which is all the latency is
made of; and a step that contains a ``send`` on loopback can hold the loop for as long as the
kernel runs the receiving process in the sender's place (the fake Telegram in the
benchmark's process), after the fake has the reply. The timeline separates the two.

The instrument costs a few microseconds per step: its figures are for the shares, not for
the benchmark's own medians.
"""

from __future__ import annotations

import argparse
import atexit
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

GAP = 0.02
"""Seconds of idle loop that end a message's burst of steps."""

LANE = "_Sender._serve_lane"
"""The task that sends a chat's replies (`actors.telegram_sender`)."""

ENV = "BENCH_STEPS"

Row = tuple[str, str, float, float]
"""A recorded ``step``, ``wait`` or ``send``: kind, task name, start and end (perf_counter)."""


def install(output: str) -> None:
    """Record the steps of every `trio.run` of this process into `output` (at exit)."""
    import trio
    import trio._socket as trio_socket  # the raw send inside trio's wait-and-retry

    rows: list[Row] = []
    now = time.perf_counter

    class Steps(trio.abc.Instrument):
        started = 0.0
        waited = 0.0

        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            self.started = now()

        def after_task_step(self, task: trio.lowlevel.Task) -> None:
            rows.append(("step", task.name, self.started, now()))

        def before_io_wait(self, timeout: float) -> None:
            self.waited = now()

        def after_io_wait(self, timeout: float) -> None:
            rows.append(("wait", "", self.waited, now()))

    helper = trio_socket._SocketType._nonblocking_helper

    async def timed_helper(
        self: Any, wait_fn: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        if getattr(fn, "__name__", "") != "send":
            return await helper(self, wait_fn, fn, *args, **kwargs)

        def send(*call: Any, **named: Any) -> Any:
            began = now()
            try:
                return fn(*call, **named)
            finally:
                rows.append(("send", "", began, now()))

        return await helper(self, wait_fn, send, *args, **kwargs)

    trio_socket._SocketType._nonblocking_helper = timed_helper  # type: ignore[method-assign]

    real_run = trio.run

    def run(*args: Any, **kwargs: Any) -> Any:
        kwargs["instruments"] = [*kwargs.get("instruments", ()), Steps()]
        return real_run(*args, **kwargs)

    trio.run = run  # type: ignore[assignment]

    def dump() -> None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        with open(output, "w", encoding="utf-8") as file:
            file.writelines(f"{kind}\t{name}\t{a:.7f}\t{b:.7f}\n" for kind, name, a, b in rows)

    atexit.register(dump)


def entry_prefix() -> str:
    """What the benchmarks put before the bot's entry point when ``BENCH_STEPS`` is set."""
    folder = str(Path(__file__).resolve().parent)
    return (
        f"import os, sys; sys.path.insert(0, {folder!r}); import task_steps; "
        f"task_steps.install(os.environ[{ENV!r}])\n"
    )


@dataclass
class Message:
    """One message's steps up to its reply's ``send``."""

    to_reply: float = 0.0
    """Seconds from the burst's first step to the start of the reply's ``send``."""
    idle: float = 0.0
    """Of that, seconds the loop waited for I/O (Codex's answer, the fake's responses)."""
    steps: int = 0
    by_task: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    """Seconds of steps before the reply's ``send``, by task."""
    reply_send: float = 0.0
    """Seconds the reply's ``send`` call took (the kernel runs the receiver meanwhile)."""
    lane_step: float = 0.0
    """Seconds of the whole lane step that made it."""


def read(path: Path) -> list[Row]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        kind, name, start, end = line.split("\t")
        rows.append((kind, name, float(start), float(end)))
    return sorted(rows, key=lambda row: row[2])


def bursts(
    rows: Iterable[Row],
) -> list[list[Row]]:
    found: list[list[Row]] = [[]]
    for row in rows:
        if row[0] == "wait" and row[3] - row[2] >= GAP:
            found.append([])
        else:
            found[-1].append(row)
    return [burst for burst in found if burst]


def message_of(burst: list[Row]) -> Message | None:
    """The message in `burst`, or None when no reply went out in it."""
    lanes = [row for row in burst if row[0] == "step" and row[1].endswith(LANE)]
    sends = [row for row in burst if row[0] == "send"]
    for lane in lanes:
        inside = [send for send in sends if lane[2] <= send[2] <= lane[3]]
        if not inside:
            continue
        reply = inside[0]
        start = burst[0][2]
        message = Message(
            to_reply=reply[2] - start, reply_send=reply[3] - reply[2], lane_step=lane[3] - lane[2]
        )
        for kind, name, began, ended in burst:
            if began >= reply[2]:
                break
            if kind == "wait":
                message.idle += min(ended, reply[2]) - began
            elif kind == "step":
                message.steps += 1
                message.by_task[_short(name)] += min(ended, reply[2]) - began
        return message
    return None


def _short(name: str) -> str:
    """``actors.chat.Chat.serve`` → ``chat.Chat.serve``; a lambda's task by its function."""
    return ".".join(name.replace(".<locals>", "").split(".")[-3:])


def report(messages: list[Message]) -> str:
    def ms(values: Iterable[float]) -> str:
        return f"{statistics.median(values) * 1000:6.2f}"

    lines = [
        f"{len(messages)} messages; medians, ms:",
        f"  first step of the burst → the reply's send  {ms(m.to_reply for m in messages)}",
        f"    the loop idle (waiting for I/O)            {ms(m.idle for m in messages)}",
        f"    task steps ({statistics.median(m.steps for m in messages):.0f} of them)"
        f"                      {ms(m.to_reply - m.idle for m in messages)}",
        f"  the reply's send call                         {ms(m.reply_send for m in messages)}",
        f"  the lane step that made it                    {ms(m.lane_step for m in messages)}",
        "  task steps before the reply, by task (mean):",
    ]
    totals: dict[str, float] = defaultdict(float)
    for message in messages:
        for task, seconds in message.by_task.items():
            totals[task] += seconds
    for task, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        if seconds / len(messages) >= 0.00002:
            lines.append(f"    {seconds / len(messages) * 1000:6.3f}  {task}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("steps", type=Path, help=f"the file {ENV} named")
    arguments = parser.parse_args()
    messages = [m for burst in bursts(read(arguments.steps)) if (m := message_of(burst))]
    if not messages:
        raise SystemExit("no message with a reply in that file")
    print(report(messages))


if __name__ == "__main__":
    main()
