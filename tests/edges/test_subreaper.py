"""The bot as child subreaper, in separate interpreters (a subreaper pytest would outlive
the test): orphans come to it, and what nobody waits for is reaped."""

from __future__ import annotations

import os
import sys
import textwrap
from typing import TYPE_CHECKING

import trio

from orchestrator.edges.subreaper import enable_child_subreaper
from tests.edges.test_processes import CEILING

if TYPE_CHECKING:
    import pytest


ORPHANED = """
import os, subprocess
from orchestrator.edges.subreaper import AdoptedZombies, enable_child_subreaper
assert enable_child_subreaper()
out = subprocess.run(
    ["bash", "-c", "sleep 307 >/dev/null 2>&1 & echo $!"],
    capture_output=True, text=True, check=True,
).stdout
orphan = int(out)  # its parent has exited
"""
"""The start of a program run as a subreaper: `orphan` is a ``sleep`` its shell left."""


async def as_subreaper(program: str) -> str:
    """What `ORPHANED` followed by `program` prints, run in a separate interpreter: making
    pytest itself a subreaper would outlive the test."""
    with trio.fail_after(CEILING):
        result = await trio.run_process(
            [sys.executable, "-c", ORPHANED + textwrap.dedent(program)],
            capture_stdout=True,
            cwd=os.getcwd(),
        )
    return result.stdout.decode()


async def test_child_subreaper_adopts_orphans() -> None:
    said = await as_subreaper(
        """
        with open(f"/proc/{orphan}/stat") as handle:
            parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        os.kill(orphan, 9)
        os.waitpid(orphan, 0)  # only possible because it is now our child
        print("adopted" if parent == os.getpid() else f"parent {parent}")
        """
    )
    assert said.strip() == "adopted"


async def test_adopted_zombies_nobody_waits_for_are_reaped_and_ours_are_left_to_us() -> None:
    """Seen from outside: Codex 0.171.0 leaves a ``git`` to the bot (its subreaper) at each
    worker start, which stayed a zombie for as long as the bot ran. A zombie found at two
    sweeps in a row is reaped; one whose owner waits for it between sweeps keeps its exit
    status for the owner (a blanket ``waitpid(-1)`` would take it)."""
    said = await as_subreaper(
        """
        os.kill(orphan, 9)
        os.waitid(os.P_PID, orphan, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
        own = subprocess.Popen(["bash", "-c", "exit 5"])
        os.waitid(os.P_PID, own.pid, os.WEXITED | os.WNOWAIT)
        zombies = AdoptedZombies()
        first = zombies.sweep()
        assert own.wait() == 5  # its owner waits for it before the next sweep
        second = zombies.sweep()
        print(sorted(first), second == {orphan}, os.path.exists(f"/proc/{orphan}"))
        """
    )
    assert said.split() == ["[]", "True", "False"]


async def test_the_sweep_at_the_stop_reaps_every_zombie_child_at_once() -> None:
    """Once the bot waits for none of its processes (it stopped), the last sweep reaps each
    zombie child, also one no earlier sweep saw: PID 1 of a container may never reap what
    the bot would leave it. Codex 0.171.0 leaves one per command run in a permission
    profile (seen from outside)."""
    said = await as_subreaper(
        """
        os.kill(orphan, 9)
        os.waitid(os.P_PID, orphan, os.WEXITED | os.WNOWAIT)
        zombies = AdoptedZombies()
        reaped = zombies.sweep(everything=True)
        print(reaped == {orphan}, os.path.exists(f"/proc/{orphan}"))
        """
    )
    assert said.split() == ["True", "False"]


def test_child_subreaper_is_linux_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert enable_child_subreaper() is False
