"""Process-tree discovery and killing (`orchestrator.edges.processes`): real processes, real clock.

Every test starts real ``bash``/``sleep`` processes, so it runs on the real clock (never
autojump) under a `CEILING` hang limit, learns pids from what the processes print (no sleeps
used as synchronisation), and kills whatever it started even when it fails.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from orchestrator.edges.processes import (
    alive,
    command_lines,
    descendants,
    kill_tree,
    rss_mb,
    snapshot_tree,
)
from tests.procfs import cmdline, living, tree

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


CEILING = 15  # seconds: a hang fails fast instead of blocking CI


class Lines:
    """Reads a child's stdout line by line."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdout is not None
        self._stream = process.stdout
        self._buffer = b""

    async def next(self) -> str:
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some(4096)
            assert chunk, "the child closed its output early"
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()


@asynccontextmanager
async def spawned(script: str) -> AsyncIterator[tuple[trio.Process, Lines]]:
    """``bash -c script`` in its own session; its whole tree is killed afterwards."""
    process = await trio.lowlevel.open_process(
        ["bash", "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    seen = tree(process.pid)
    try:
        yield process, Lines(process)
    finally:
        with trio.fail_after(CEILING, shield=True):
            await kill_tree(process.pid, grace=0.5, known=seen | descendants(process.pid))
            await process.wait()
            if process.stdin is not None:
                await process.stdin.aclose()
            if process.stdout is not None:
                await process.stdout.aclose()


async def test_descendants_follow_parents_and_setsid() -> None:
    script = "sleep 300 & echo $!; setsid sleep 301 & echo $!; wait"
    with trio.fail_after(CEILING):
        async with spawned(script) as (process, lines):
            plain = int(await lines.next())
            detached = int(await lines.next())
            found = descendants(process.pid)
            assert {plain, detached} <= found
            assert process.pid not in found
            assert os.getpid() not in found
            assert tree(process.pid) == {process.pid, plain, detached}


async def running_as(pids: set[int], command: str) -> None:
    """Until every one of `pids` runs `command` (polled: /proc has nothing to wait on)."""
    while True:
        if all(cmdline(pid).startswith(command) for pid in pids):
            return
        await trio.sleep(0.01)


async def test_command_lines_name_the_commands_not_codexs_shell_snapshot() -> None:
    """A leftover under Codex's shell snapshot (a slow ``.bashrc``) is not named as a command
    left running; a command beside it is, by its own words, not its shell's."""
    script = textwrap.dedent(
        """
        bash -c 'sleep 303 & echo $!; wait # Snapshot file' &
        bash -c 'sleep 304 & echo $!; wait' &
        wait
        """
    )
    with trio.fail_after(CEILING):
        async with spawned(script) as (process, lines):
            sleeps = {int(await lines.next()), int(await lines.next())}
            await running_as(sleeps, "sleep")  # `$!` is known before the fork exec'd it
            found = descendants(process.pid)
            assert len(found) == 4  # two shells, a sleep under each
            assert sleeps <= found
            assert command_lines(found) == [["sleep", "304"]]


async def test_orphan_found_by_session_of_a_known_pid() -> None:
    # Codex's shape: a setsid'd shell backgrounds a command, then the shell exits; the
    # command is re-parented away from the server but keeps the shell's session id.
    script = textwrap.dedent(
        """
        setsid bash -c 'sleep 300 & echo $$ $!; read x'
        echo shell-exited
        exec sleep 302
        """
    )
    with trio.fail_after(CEILING):
        async with spawned(script) as (process, lines):
            shell, orphan = map(int, (await lines.next()).split())
            snapshot = descendants(process.pid)
            assert {shell, orphan} <= snapshot
            assert process.stdin is not None
            await process.stdin.send_all(b"\n")
            assert await lines.next() == "shell-exited"
            assert not alive(shell)
            assert orphan not in descendants(process.pid)  # the parent link is gone
            assert orphan in descendants(process.pid, known={shell})
            killed = await kill_tree(process.pid, grace=1.0, known=snapshot)
            assert {process.pid, orphan} <= killed
            assert living({orphan}) == set()


async def test_a_snapshot_keeps_what_an_earlier_one_found() -> None:
    # The edge's snapshots (in a worker thread): the orphan is found through the session of
    # the shell seen earlier, and stays known once that shell is gone.
    script = textwrap.dedent(
        """
        setsid bash -c 'sleep 300 & echo $$ $!; read x'
        echo shell-exited
        exec sleep 302
        """
    )
    with trio.fail_after(CEILING):
        async with spawned(script) as (process, lines):
            shell, orphan = map(int, (await lines.next()).split())
            first = await snapshot_tree(process.pid)
            assert {shell, orphan} <= first
            assert process.stdin is not None
            await process.stdin.send_all(b"\n")
            assert await lines.next() == "shell-exited"
            second = await snapshot_tree(process.pid, known=first)
            assert orphan in second
            assert shell not in second  # gone: only the living are kept
            await kill_tree(process.pid, grace=1.0, known=second)  # the orphan is ours to end
            assert living({orphan}) == set()


async def test_kill_tree_finds_orphans_by_the_session_of_a_dead_pid() -> None:
    # Only the (now dead) shell was snapshotted, not the command it forked.
    script = textwrap.dedent(
        """
        setsid bash -c 'sleep 300 & echo $$ $!; read x'
        echo shell-exited
        exec sleep 302
        """
    )
    with trio.fail_after(CEILING):
        async with spawned(script) as (process, lines):
            shell, orphan = map(int, (await lines.next()).split())
            assert process.stdin is not None
            await process.stdin.send_all(b"\n")
            assert await lines.next() == "shell-exited"
            killed = await kill_tree(process.pid, grace=1.0, known={shell})
            assert orphan in killed
            assert living({orphan}) == set()


async def test_orphan_found_by_process_group() -> None:
    # A subshell forks a sleep and exits: the sleep is re-parented but stays in the group.
    script = "(sleep 303 & echo $!); echo forked; exec sleep 304"
    with trio.fail_after(CEILING):
        async with spawned(script) as (process, lines):
            orphan = int(await lines.next())
            assert await lines.next() == "forked"
            assert orphan in descendants(process.pid)
            await kill_tree(process.pid, grace=1.0)
            assert living({orphan}) == set()


async def test_kill_tree_reaches_setsid_grandchildren() -> None:
    script = "setsid bash -c 'sleep 305 & echo $!; wait' & wait"
    with trio.fail_after(CEILING):
        async with spawned(script) as (process, lines):
            grandchild = int(await lines.next())
            everything = tree(process.pid)
            assert grandchild in everything
            assert len(everything) == 3  # bash, the setsid'd bash, its sleep
            killed = await kill_tree(process.pid, grace=1.0)
            assert everything <= killed
            assert living(everything) == set()
            assert await process.wait() == -15  # SIGTERM was enough


async def test_kill_tree_escalates_to_sigkill() -> None:
    script = "trap '' TERM; sleep 306 & echo $!; wait; wait"
    grace = 0.3
    with trio.fail_after(CEILING):
        async with spawned(script) as (process, lines):
            child = int(await lines.next())
            started = trio.current_time()
            await kill_tree(process.pid, grace=grace)
            assert trio.current_time() - started >= grace
            assert living({process.pid, child}) == set()
            assert await process.wait() == -9


async def test_kill_tree_of_a_process_already_gone() -> None:
    with trio.fail_after(CEILING):
        async with spawned("echo bye") as (process, lines):
            assert await lines.next() == "bye"
            await process.wait()
            killed = await kill_tree(process.pid, grace=0.5)
            assert killed == {process.pid}


async def test_alive_treats_zombies_as_gone() -> None:
    with trio.fail_after(CEILING):
        async with spawned("exit 0") as (process, _):
            # Wait for the exit without reaping: the child stays a zombie.
            await trio.to_thread.run_sync(os.waitid, os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
            assert os.path.exists(f"/proc/{process.pid}")
            assert not alive(process.pid)
            assert await process.wait() == 0
    assert alive(os.getpid())


def test_rss_of_this_process() -> None:
    own = rss_mb({os.getpid()})
    assert 5 < own < 10_000
    assert rss_mb({os.getpid(), 2**22 + 12345}) == own  # a missing pid counts as nothing
