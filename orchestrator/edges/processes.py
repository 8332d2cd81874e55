"""Process trees: find every descendant of a worker and make sure all of them die.

Codex starts each shell command in its own session (``setsid``, session id = the command's
shell), so killing the MCP server's process group does not reach them: measured on Codex
0.153.4, a SIGTERM or SIGKILL of the server kills it and its shell child within 10 ms, but the
grandchildren survive as orphans. This module therefore

- snapshots a process's descendants from ``/proc`` before anything is killed: parent links,
  plus every process whose session or group is led by one already found (a setsid'd command
  whose shell exited keeps the shell's session id), repeated to catch forks during the scan;
  once the server dies its children are re-parented and the parent links are gone;
- kills the tree with a ladder: SIGTERM to the group and to every snapshotted pid, a bounded
  wait, then SIGKILL to the survivors;
- counts on the orchestrator being a *child subreaper* (`orchestrator.edges.subreaper`), so
  orphans of our workers are re-parented to us instead of PID 1: they stay findable, and we
  reap them.

A snapshot reads every ``/proc/<pid>/stat`` of the machine (one tree cannot be listed more
cheaply everywhere: ``/proc/<pid>/task/<tid>/children`` is not always built into the kernel),
so the async functions here scan in a worker thread, never on the event loop. Polling
``/proc`` during the bounded wait is the one place where a short sleep loop is the right tool:
process exit of non-children cannot be awaited any other way.

A Codex server's whole life, for either backend, is here too: `spawn_server` starts it
(its own session, no bot token), `serve_worker` runs its transport and snapshots around the
handshake and stops it with its tree.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
from typing import TYPE_CHECKING, BinaryIO, Final, NamedTuple, Protocol, TypeVar, final

import trio

from orchestrator.config import TOKEN_VARIABLE
from orchestrator.errors import WorkerStartError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence, Set
    from pathlib import Path

__all__ = [
    "WORKER_MARK",
    "WORKER_TAG",
    "ProcessStat",
    "TreeSnapshots",
    "alive",
    "command_lines",
    "descendants",
    "kill_orphans",
    "kill_tree",
    "marked_processes",
    "process_stats",
    "reap_children",
    "rss_mb",
    "serve_worker",
    "snapshot_tree",
    "spawn_server",
    "stop_leftovers",
    "stop_tagged",
]

logger: Final = logging.getLogger(__name__)

KILL_POLL_INTERVAL: Final = 0.02
"""Seconds between checks of /proc while waiting for killed processes to exit."""

SNAPSHOT_ROUNDS: Final = 3
"""Snapshots merged per kill: a command forking during the scan is caught by the next."""

SCAN_ALLOWANCE: Final = 5.0
"""Seconds a kill may spend on its ``/proc`` scans on top of its two bounded waits (a scan
takes milliseconds): with them, the bound of the shielded ladder."""

SWEEP_LIMIT: Final = 15.0
"""Seconds `stop_tagged` may take after a server stopped: a ``/proc`` scan and the kill of
what it found (each at most ``2 * grace + SCAN_ALLOWANCE``; nearly always nothing)."""


class ProcessStat(NamedTuple):
    """The fields of ``/proc/<pid>/stat`` we use."""

    ppid: int
    pgrp: int
    session: int
    state: bytes
    """``b"Z"`` for a zombie (whose group and session then read 0)."""


def _every_process(name: str) -> Iterator[tuple[int, bytes]]:
    """(pid, bytes of ``/proc/<pid>/<name>``) for every process whose file can be read."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/{name}", "rb") as handle:
                yield int(entry), handle.read()
        except OSError:
            continue


def process_stats() -> dict[int, ProcessStat]:
    """pid → (parent, process group, session, state) for every visible process (blocking:
    a scan of ``/proc``)."""
    stats: dict[int, ProcessStat] = {}
    for pid, stat in _every_process("stat"):
        # The command name may contain spaces and parentheses: split after the last ')'.
        # Then: state ppid pgrp session ...
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 3:
            stats[pid] = ProcessStat(int(fields[1]), int(fields[2]), int(fields[3]), fields[0])
    return stats


def descendants(pid: int, *, known: Set[int] = frozenset()) -> set[int]:
    """Every living descendant of `pid` (not `pid` itself), from one scan of ``/proc``.

    Besides parent links, a process counts when its session or process group is led by `pid`
    or by a process already found (or listed in `known`, pids seen in an earlier snapshot):
    a command Codex ``setsid``-ed whose intermediate shell has exited is re-parented away
    from the server, but it keeps its session id.
    """
    stats = process_stats()
    children: dict[int, list[int]] = {}
    for child, stat in stats.items():
        children.setdefault(stat.ppid, []).append(child)
    leaders = {pid} | set(known)
    found: set[int] = set()
    stack = [pid, *known]
    while True:
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in found:
                    found.add(child)
                    leaders.add(child)
                    stack.append(child)
        # Session / group members whose link to the tree was cut by an exited parent.
        orphans = [
            other
            for other, stat in stats.items()
            if other not in found
            and other != pid
            and (stat.session in leaders or stat.pgrp in leaders)
        ]
        if not orphans:
            break
        for other in orphans:
            found.add(other)
            leaders.add(other)
            stack.append(other)
    found.discard(os.getpid())
    return found


def _living_tree(pid: int, known: Set[int]) -> set[int]:
    """Those of `known` still alive, plus every descendant of `pid` (see `descendants`).

    Those of `known` that exited are reaped: orphans re-parented to us (subreaper) are ours."""
    living = {known_pid for known_pid in known if alive(known_pid)}
    reap_children(set(known) - living)
    return living | descendants(pid, known=known)


async def snapshot_tree(pid: int, *, known: Set[int] = frozenset()) -> set[int]:
    """The living descendants of `pid`, found as `descendants` finds them (with `known`, an
    earlier snapshot, as leaders too), plus those of `known` that still live.

    One scan of ``/proc``, in a worker thread; not cancellable while it runs (milliseconds).
    """
    return await trio.to_thread.run_sync(_living_tree, pid, frozenset(known))


@final
class TreeSnapshots:
    """The living descendants of one server process, remembered so a kill still reaches them.

    If the server dies, the commands it ``setsid``-ed are re-parented and only an earlier
    snapshot (their pids and session ids) leads `kill_tree` to them. Each scan runs in a
    worker thread (`snapshot_tree`), one at a time since each starts from the one before.
    `want` asks for a snapshot without waiting (a command just started); `keep`, a task of
    the edge, takes them, and requests made meanwhile coalesce into one scan.
    """

    def __init__(self, process: trio.Process) -> None:
        self._process = process
        self.known: set[int] = set()
        """The descendants found so far (still alive at the last scan)."""
        self._lock = trio.Lock()
        self._due = trio.Event()

    async def take(self) -> set[int]:
        """Scan now (after a scan under way) and return everything known."""
        async with self._lock:
            if self._process.returncode is None:
                self.known = await snapshot_tree(self._process.pid, known=self.known)
            return set(self.known)

    def want(self) -> None:
        """Have `keep` take a snapshot soon (for callers that cannot wait)."""
        self._due.set()

    async def keep(self) -> None:
        """Take the snapshots `want` asks for, until cancelled."""
        while True:
            await self._due.wait()
            self._due = trio.Event()
            await self.take()


def _kill_targets(pid: int, known: Set[int]) -> set[int]:
    """`pid`, the living pids of `known` and `SNAPSHOT_ROUNDS` merged scans of its tree."""
    found: set[int] = {known_pid for known_pid in known if alive(known_pid)}
    for _ in range(SNAPSHOT_ROUNDS):
        found |= descendants(pid, known=set(known) | found)
    return found | {pid}


def _late_children(pid: int, known: Set[int]) -> set[int]:
    """Descendants of `pid` that are not in `known` (forked while dying)."""
    return descendants(pid, known=known) - set(known)


WORKER_MARK: Final = "CODEX_ORCHESTRATOR_STATE_DIR"
"""The variable `start` adds to its workers' environment, valued with its ``state_dir``:
what the next start looks for to stop what a killed bot left running."""


WORKER_TAG: Final = "CODEX_ORCHESTRATOR_WORKER"
"""The variable `serve_worker` adds to one server's environment, valued uniquely: once the
server has stopped, what still carries it is a command it started that no snapshot found
(started after the last one, its shell gone), and `stop_tagged` ends it."""


def marked_processes(mark: str, variable: str = WORKER_MARK) -> set[int]:
    """The processes (those of this user whose environment can be read) that carry
    `variable` with the value `mark`, this one left out (blocking: reads ``/proc``)."""
    needle = f"\0{variable}={mark}\0".encode()
    return {
        pid
        for pid, environ in _every_process("environ")
        if pid != os.getpid() and needle in b"\0" + environ + b"\0" and alive(pid)
    }


async def stop_leftovers(mark: str) -> set[int]:
    """Kill what a bot that was killed left running on this state (its Codex servers stay
    alive while a question waits, and commands they ``setsid``-ed outlive them), each with
    its whole tree; return the pids found. Only for a bot that holds the state's lock, so
    nothing found can belong to a running bot."""
    return await _stop_marked(mark, WORKER_MARK)


async def stop_tagged(tag: str) -> set[int]:
    """Kill what a stopped server left carrying its `WORKER_TAG` `tag`, each with its tree;
    return the pids found. Shielded and bounded, as `kill_tree`: it runs as the server's
    teardown, a shutdown's cancel included."""
    with trio.move_on_after(SWEEP_LIMIT, shield=True):
        return await _stop_marked(tag, WORKER_TAG)
    return set()


async def _stop_marked(mark: str, variable: str) -> set[int]:
    found = await trio.to_thread.run_sync(marked_processes, mark, variable)
    for pid in sorted(found):
        if alive(pid):
            await kill_tree(pid)
    return found


SHELL_SNAPSHOT_MARK: Final = b"# Snapshot file"
"""In the script of the shell Codex 0.153.4 starts to take a snapshot of the user's login
environment (``/bin/bash -lc 'if [ -z "$BASH_ENV" ] && [ -r "$HOME/.bashrc" ]; then . …;
echo '# Snapshot file' …'``), around its commands and at a session's start. With a slow
``.bashrc`` (pyenv, nvm, conda) it is still running when a quick call ends."""


def command_lines(pids: Set[int]) -> list[list[str]]:
    """The argument lists (``/proc/<pid>/cmdline``) of those of `pids` that have no child
    among them: the commands themselves, not the sandbox and shell wrappers above them.

    Leaves out what runs under a shell snapshot of Codex's own (`SHELL_SNAPSHOT_MARK`): it
    is no command of the user's or the model's, and naming ``pyenv init -`` as one left
    running would be a false alarm. (Killing is decided elsewhere, on every pid: a command
    that puts the mark in its own command line only loses its mention.)"""
    stats = process_stats()
    parents = {stats[pid].ppid for pid in pids if pid in stats}
    cmdlines: dict[int, bytes] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmdlines[pid] = handle.read().rstrip(b"\0")
        except OSError:
            continue

    def under_a_snapshot(pid: int) -> bool:
        while pid in pids:
            if SHELL_SNAPSHOT_MARK in cmdlines.get(pid, b""):
                return True
            if pid not in stats:
                return False
            pid = stats[pid].ppid
        return False

    return [
        [word.decode(errors="replace") for word in cmdlines[pid].split(b"\0")]
        for pid in sorted(cmdlines)
        if pid in stats and pid not in parents and not under_a_snapshot(pid)
    ]


def alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return False
    state = stat[stat.rfind(b")") + 2 :].split()[:1]
    return state != [b"Z"]


def rss_mb(pids: set[int]) -> float:
    """Resident memory of `pids` together, in MB (VmRSS from /proc)."""
    total_kb = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", "rb") as handle:
                for line in handle:
                    if line.startswith(b"VmRSS:"):
                        total_kb += int(line.split()[1])
                        break
        except (OSError, ValueError):
            continue
    return total_kb / 1024


def _signal(pids: set[int], group: int | None, signum: int) -> None:
    if group is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signum)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def orphans_of(pid: int, known: Set[int]) -> set[int]:
    """Those of `known` alive but no longer under `pid` by parent links: re-parented to us
    (we are a child subreaper) or to init after their parent exited."""
    stats = process_stats()
    orphans: set[int] = set()
    for candidate in known:
        stat = stats.get(candidate)
        if stat is None or not alive(candidate):
            continue
        ancestor, seen = stat.ppid, {candidate}
        while ancestor not in (pid, 0, 1, os.getpid()) and ancestor not in seen:
            seen.add(ancestor)
            parent = stats.get(ancestor)
            if parent is None:
                break
            ancestor = parent.ppid
        if ancestor != pid:
            orphans.add(candidate)
    return orphans


async def kill_orphans(pid: int, known: Set[int], *, grace: float = 2.0) -> set[int]:
    """SIGKILL the processes of `known` that left `pid`'s tree (`orphans_of`), wait up to
    `grace` for them to go, and reap those re-parented to us. Returns the pids that were
    killed. For a server that stays: its own living tree is untouched."""
    orphans = orphans_of(pid, known)
    if orphans:
        _signal(orphans, None, signal.SIGKILL)
        await _wait_gone(orphans, orphans, grace)
        reap_children(orphans)
    return orphans


def reap_children(pids: set[int]) -> None:
    """Collect those of `pids` that are exited children of ours, without blocking.

    Orphans re-parented to us (subreaper) become our children. Only the given pids are
    reaped: a blanket ``waitpid(-1)`` would steal exit statuses trio waits for.
    """
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


async def kill_tree(
    pid: int, *, grace: float = 2.0, known: Set[int] = frozenset(), spare_root: bool = False
) -> set[int]:
    """Kill `pid`, its process group and every descendant; return the pids that were signalled.

    The ladder: snapshot the tree (`SNAPSHOT_ROUNDS` scans merged, to catch forks during the
    scan), SIGTERM the group and every snapshotted pid, scan again (children forked while
    dying, found through the session of a snapshotted pid), wait up to `grace` seconds for all
    to exit, SIGKILL the survivors, wait up to `grace` again, and reap those that are our
    children (the subreaper case; never `pid` itself, whose owner waits for it).

    Args:
        pid: the root, normally a worker's MCP server (its own process group leader).
        grace: seconds between SIGTERM and SIGKILL, and the bound on the final wait.
        known: pids snapshotted earlier, e.g. before `pid` exited: once it is gone, its
            orphans are no longer linked to it by parent pid, only by session.
        spare_root: kill only the descendants: `pid` and its process group stay (a server
            whose finished turn left commands running).

    Shielded: runs to completion even inside a cancelled scope (teardown must not be
    skipped), and bounded: ``2 * grace`` seconds of waiting, plus `SCAN_ALLOWANCE` for the
    ``/proc`` scans, which run in a worker thread. `ProcessLookupError` means the process is
    already gone and is not an error.
    """
    targets: set[int] = {pid}
    with trio.move_on_after(2 * grace + SCAN_ALLOWANCE, shield=True):
        leaders = frozenset(known)
        targets = await trio.to_thread.run_sync(_kill_targets, pid, leaders)
        try:
            group: int | None = os.getpgid(pid)
        except ProcessLookupError:
            group = None
        if group is not None and group == os.getpgrp():
            group = None  # never signal our own group
        if spare_root:
            targets.discard(pid)
            group = None
        targets.discard(os.getpid())
        _signal(targets, group, signal.SIGTERM)
        # Children forked by a dying process after the snapshot are caught here.
        late = await trio.to_thread.run_sync(_late_children, pid, leaders | targets)
        _signal(late, None, signal.SIGTERM)
        targets |= late
        reapable = targets - {pid}
        await _wait_gone(targets, reapable, grace)
        survivors = {target for target in targets if alive(target)}
        if survivors:
            logger.warning("processes %s ignored SIGTERM; killing them", sorted(survivors))
            _signal(survivors, group, signal.SIGKILL)
            await _wait_gone(survivors, reapable, grace)
        reap_children(reapable)
    return targets


async def _wait_gone(pids: set[int], reapable: set[int], grace: float) -> None:
    """Wait up to `grace` seconds until none of `pids` is alive.

    Polls ``/proc`` every `KILL_POLL_INTERVAL`: the exit of a process that is not our child
    cannot be awaited. Reaps our own exited children (adopted orphans) as it goes.
    """
    with trio.move_on_after(grace):
        while True:
            reap_children(reapable)
            if not any(alive(target) for target in pids):
                return
            await trio.sleep(KILL_POLL_INTERVAL)


def _open_log(path: Path) -> BinaryIO:
    """Open a worker's stderr log for appending, creating its folder (blocking I/O)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("ab")


@contextlib.asynccontextmanager
async def spawn_server(
    argv: Sequence[str], *, env: Mapping[str, str], stderr_log: Path, cwd: str | None
) -> AsyncIterator[trio.Process]:
    """Start a Codex server (either backend): stdin and stdout piped, stderr appended to
    `stderr_log` (opened off the loop), in a session of its own so its tree can be found and
    killed, and never with the bot token in its environment (every command it runs sees it).

    Raises:
        WorkerStartError: the program cannot be started.
    """
    errlog = await trio.to_thread.run_sync(_open_log, stderr_log)
    with errlog:
        try:
            process = await trio.lowlevel.open_process(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errlog,
                env={key: value for key, value in env.items() if key != TOKEN_VARIABLE},
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as error:
            raise WorkerStartError(f"cannot start {argv[0]!r}: {error.strerror or error}") from None
        yield process


class _Transport(Protocol):
    async def read_loop(self) -> None: ...
    async def watch_exit(self) -> None: ...


class ServedWorker(Protocol):
    """A Codex worker `serve_worker` runs: its transport's tasks, its snapshots, its
    handshake and its stop."""

    @property
    def rpc(self) -> _Transport: ...
    @property
    def snapshots(self) -> TreeSnapshots: ...
    async def handshake(self) -> None: ...
    async def close(self) -> None: ...


W = TypeVar("W", bound=ServedWorker)


@contextlib.asynccontextmanager
async def serve_worker(
    argv: Sequence[str],
    make: Callable[[trio.Process, trio.Nursery], W],
    *,
    env: Mapping[str, str],
    stderr_log: Path,
    cwd: str | None,
    startup_timeout: float,
    what: str,
) -> AsyncIterator[W]:
    """One Codex server's whole life, either backend: spawn it (`spawn_server`), `make` its
    worker, run the transport's reader and exit watch and the tree snapshots, handshake
    within `startup_timeout` (``codex.startup_timeout``; `what` names the protocol in the
    error), and stop it with its whole tree (`close`) on exit.

    Raises:
        WorkerStartError: the program cannot be started, exits, or fails the handshake; the
            server is stopped first, so no process is left behind.
    """
    tag = secrets.token_hex(8)
    async with spawn_server(
        argv, env={**env, WORKER_TAG: tag}, stderr_log=stderr_log, cwd=cwd
    ) as process:
        try:
            async with trio.open_nursery() as nursery:
                worker = make(process, nursery)
                nursery.start_soon(worker.rpc.read_loop)
                nursery.start_soon(worker.rpc.watch_exit)
                nursery.start_soon(worker.snapshots.keep)
                failure = await _handshake_failure(
                    worker.handshake, startup_timeout=startup_timeout, what=what
                )
                if failure is None:
                    try:
                        yield worker
                    finally:
                        await worker.close()
                        nursery.cancel_scope.cancel()
                else:
                    await worker.close()
                    nursery.cancel_scope.cancel()
        finally:  # also when the worker died: what its commands left is what this is for
            left = await stop_tagged(tag)
            if left:
                logger.info("stopped %d processes the %s server left running", len(left), what)
        if failure is not None:
            raise failure


async def _handshake_failure(
    handshake: Callable[[], Awaitable[None]], *, startup_timeout: float, what: str
) -> WorkerStartError | None:
    """Run a server's `handshake` within ``codex.startup_timeout``; the reason it failed, or
    None. Returned, not raised: the caller must stop the server before it reports."""
    try:
        with trio.fail_after(startup_timeout):
            await handshake()
    except WorkerStartError as error:
        return error
    except trio.TooSlowError:
        return WorkerStartError(
            f"no {what} handshake within {startup_timeout:g} s (codex.startup_timeout)"
        )
    return None
