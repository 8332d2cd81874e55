"""heap_snapshots: what the bot process holds, on request (for soak.py).

With ``BENCH_HEAP`` naming a folder, the benchmarks start the orchestrator with `install`:
tracemalloc records where every live allocation was made, and each SIGUSR1 runs a full
garbage collection, then writes a snapshot to ``heap-NNN.snapshot`` in that folder (written
under a temporary name, then renamed, so a reader never sees half a file). The benchmark
sends the signal when the bot is idle, between blocks of messages, so two snapshots differ
by what the messages in between left behind, not by what was in flight.

Why a signal: the snapshot is taken in the bot's own process, at a moment the benchmark
chooses, without any hook in the product. Python runs the handler in the main thread between
two bytecodes, which is where trio's loop runs too: the loop is paused while it writes.

Tracing costs time and memory (each block of frames is stored once): the RSS a traced run
reports is above the untraced bot's. soak.py runs without it unless asked.
"""

from __future__ import annotations

import itertools
from pathlib import Path

ENV = "BENCH_HEAP"

FRAMES = 12
"""Frames kept per allocation: enough to reach from the standard library, msgspec or trio
where the bytes are allocated up to the product's code that asked for them."""


def snapshot_path(folder: Path, number: int) -> Path:
    return folder / f"heap-{number:03d}.snapshot"


def install(folder: str) -> None:
    """Trace allocations from now on; write a snapshot into `folder` at each SIGUSR1."""
    import gc
    import os
    import signal
    import tracemalloc

    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    numbers = itertools.count()
    tracemalloc.start(FRAMES)

    def dump(signum: int, frame: object) -> None:
        gc.collect()
        path = snapshot_path(target, next(numbers))
        partial = path.with_suffix(".partial")
        tracemalloc.take_snapshot().dump(str(partial))
        os.replace(partial, path)

    signal.signal(signal.SIGUSR1, dump)


def entry_prefix() -> str:
    """What the benchmarks put before the bot's entry point when ``BENCH_HEAP`` is set."""
    folder = str(Path(__file__).resolve().parent)
    return (
        f"import os, sys; sys.path.insert(0, {folder!r}); import heap_snapshots; "
        f"heap_snapshots.install(os.environ[{ENV!r}])\n"
    )
