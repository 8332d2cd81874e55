"""One ``codex mcp-server`` process, spoken to as MCP over stdio: the Codex MCP edge.

This module owns the subprocess; its transport, newline-delimited JSON-RPC 2.0 on the
process's stdin and stdout, is `orchestrator.edges.jsonrpc_lines.LineRpc`, as for the
app-server edge. The wire types and what they mean are in
`orchestrator.wire.codex_mcp`; `CodexProcess` implements the `orchestrator.ports.CodexWorker`
port with them. It speaks MCP itself rather than through the mcp SDK's `ClientSession`,
because what Codex needs is exactly what the SDK loses (measured with mcp 2.3.0 on Codex
0.153.4): ``codex/event`` notifications are dropped unless bound, and dispatched one task
each, so out of order and sometimes after the call's result; the ``codex_*`` fields of
``elicitation/create`` are stripped; and Codex's non-standard ``{"decision": ...}`` answer
loses its extra key. The transport's reader sees every message in wire order and routes
responses to their callers; this edge routes events to the call they belong to
(``_meta.requestId``) and approval requests to the caller's approval callback.

Lifecycle (`open_codex_process`): spawn in a new session (its own process group), stderr
appended to a log file, ``initialize`` + ``tools/list`` confirming ``codex`` and
``codex-reply``; on exit a shielded, bounded teardown: close stdin (Codex's graceful drain:
a call in flight still finishes, then the process exits in about 22 ms), wait
`GRACEFUL_EXIT`, then kill the whole tree including the commands Codex ``setsid``-ed
(`orchestrator.edges.processes.kill_tree`).

Process death is noticed at end of output, or by the transport's `LineRpc.watch_exit` when
the server exited while a command it started still holds the pipe; either way calls in
flight end with ``worker_died`` and `CodexProcess.alive` turns False (leaving the context
does not). An answer that cannot be read at all ends its call at once and the process is
not reused (the transport's `garbled`). The server's descendants are snapshotted (in a
worker thread, see `orchestrator.edges.processes.TreeSnapshots`) whenever Codex starts a
command, after each call that ran one, at each ping and before a stop, so
`CodexProcess.interrupt` reaches commands orphaned by a server that died.

A cancelled call leaves the process unusable. Measured on Codex 0.153.4: after
``notifications/cancelled`` no response ever comes for that call, the commands it started
keep running, a ``codex-reply`` on its thread gets the answers misrouted (off by one
request), and closing stdin no longer stops the process. So `CodexProcess.run_turn` marks the
process `poisoned` when its caller is cancelled (`reusable` turns False); the pool must then
`interrupt` it (a kill of its whole tree) and start a fresh one.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, final

import msgspec
import trio

from orchestrator.codex_runs import CommandStarted, JobDone, JobFailed
from orchestrator.edges.jsonrpc_lines import LineRpc
from orchestrator.edges.processes import (
    TreeSnapshots,
    command_lines,
    kill_tree,
    rss_mb,
    serve_worker,
)
from orchestrator.errors import WorkerStartError, WorkerUnavailable
from orchestrator.wire.codex_mcp import (
    CLIENT_INFO,
    CODEX_MCP_VERSION,
    ELICITATION,
    EVENT,
    INITIALIZE_RESULT,
    PROTOCOL_VERSION,
    REQUIRED_TOOLS,
    TOOL_LIST,
    TurnEvents,
    approval_ask,
    command_text,
    error_text,
    tool_call,
    tool_outcome,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
    from pathlib import Path

    from orchestrator.codex_runs import (
        ApprovalAsk,
        ApprovalDecision,
        CodexJob,
        CodexProgress,
        JobOutcome,
    )
    from orchestrator.ports import ModelChoice, RateLimits, SteerResult
    from orchestrator.wire.jsonrpc import Incoming

__all__ = [
    "CANCEL_NOTICE_GRACE",
    "GRACEFUL_EXIT",
    "STOP_DEADLINE",
    "CodexProcess",
    "open_codex_process",
]

logger: Final = logging.getLogger(__name__)

GRACEFUL_EXIT: Final = 2.0
"""Seconds after closing stdin before the process tree is killed (Codex exits in ~22 ms)."""

CANCEL_NOTICE_GRACE: Final = 0.5
"""Seconds a cancelled call may spend telling Codex (``notifications/cancelled``)."""

STOP_DEADLINE: Final = 20.0
"""Bound of the shielded stop: a snapshot, `GRACEFUL_EXIT` twice and a kill ladder (about
4 s plus its scans) fit well within it; it only matters if a step hangs."""


@dataclass
class _CallState:
    """A tools/call in flight: where its events and approval requests go."""

    on_event: Callable[[CodexProgress], None]
    on_approval: Callable[[ApprovalAsk], Awaitable[ApprovalDecision]]
    events: TurnEvents
    started_commands: bool = False
    """Codex ran a command during this call (its process tree is worth a snapshot)."""


@final
class CodexProcess:
    """One running ``codex mcp-server``, the MCP `orchestrator.ports.CodexWorker`.

    Created by `open_codex_process`.

    Attributes:
        worker_id: the pool's number for this worker.
        pid: the server's pid (its process group id too).
        threads: Codex threads started in this process (each costs ~0.7 MB, never freed).
        poisoned: a call was cancelled: the process must be killed, not reused.
        server_version: what the server reported at ``initialize``.
    """

    def __init__(self, process: trio.Process, worker_id: int, nursery: trio.Nursery) -> None:
        self._process = process
        self._nursery = nursery
        self.worker_id = worker_id
        self.pid = process.pid
        self.threads = 0
        self.poisoned = False
        self.server_version = ""
        self._calls: dict[str, _CallState] = {}
        self.snapshots = TreeSnapshots(process)
        self.rpc = LineRpc(
            process, label=f"Codex worker {worker_id}", on_message=self._dispatch, version="2.0"
        )

    @property
    def alive(self) -> bool:
        """False once the server exited or closed its output (crashed, or stopped by us).

        Not turned False merely because the context is being left (the reader cancelled
        with everything else): a watcher that sees ``alive`` False may call it a crash. The
        exit counts as the transport's `watch_exit` sees it: a command holding the pipe must
        not let a dead server take the next job while its output drains.
        """
        return not self.rpc.exited.is_set() and not self.rpc.process_ended

    resumes_threads: Final = False
    """A thread lives in its process only (``codex-reply`` to another fails)."""

    @property
    def reusable(self) -> bool:
        """Whether another call may be sent: the process runs, no call was cancelled and no
        answer was unreadable (the transport's `garbled`)."""
        return not self.poisoned and self.rpc.usable()

    async def wait_exited(self) -> None:
        """Return once the server exited or closed its output (the transport's `exited`)."""
        await self.rpc.exited.wait()

    def rss_mb(self) -> float:
        """Resident memory of the server process, in MB: where Codex's per-thread growth
        lives (commands it runs come and go). One small /proc read, cheap enough per run."""
        return rss_mb({self.pid})

    # ------------------------------------------------------------------ wire

    def _dispatch(self, message: Incoming) -> None:
        """A notification or server request, in wire order (responses went to their calls)."""
        if message.id is None:
            if message.method == "codex/event" and len(message.params):
                self._on_event(message.params)
            return
        assert message.method is not None
        params = message.params if len(message.params) else None
        self._nursery.start_soon(self._serve_request, message.id, message.method, params)

    def _on_event(self, raw: msgspec.Raw) -> None:
        try:
            params = EVENT.decode(raw)
        except msgspec.DecodeError:
            return
        call = self._calls.get(params.tool_call_id)
        if call is None:
            return
        progress = call.events.translate(params.msg)
        if isinstance(progress, CommandStarted):
            call.started_commands = True
            self.snapshots.want()  # a new command: remember it before it can be orphaned
        if progress is not None:
            call.on_event(progress)

    async def _serve_request(
        self, request_id: int | str, method: str, params: msgspec.Raw | None
    ) -> None:
        """Answer a server → client request (approvals, pings)."""
        if method == "ping":
            result: Mapping[str, object] = {}
        elif method == "elicitation/create":
            result = {"decision": await self._decide(params)}
        else:
            await self._reply_error(request_id, -32601, f"method not found: {method}")
            return
        with suppress(WorkerUnavailable):
            await self.rpc.write({"id": request_id, "result": result})

    async def _reply_error(self, request_id: int | str, code: int, text: str) -> None:
        with suppress(WorkerUnavailable):
            await self.rpc.write({"id": request_id, "error": {"code": code, "message": text}})

    async def _decide(self, params: msgspec.Raw | None) -> ApprovalDecision:
        """Ask the caller whose call raised the approval; deny when nobody can answer.

        Never answers ``abort``: Codex then never responds to the tools/call.
        """
        try:
            ask = ELICITATION.decode(params or b"{}")
        except msgspec.DecodeError:
            return "denied"
        call = self._calls.get(str(ask.codex_mcp_tool_call_id))
        if call is None and len(self._calls) == 1:
            call = next(iter(self._calls.values()))
        if call is None:
            logger.warning("worker %d: an approval request matched no call; denied", self.worker_id)
            return "denied"
        try:
            return await call.on_approval(approval_ask(ask, self.worker_id))
        except Exception:  # the approval UI failed: the safe answer is no
            logger.exception("worker %d: asking for approval failed; denied", self.worker_id)
            return "denied"

    # ------------------------------------------------------------------ the port

    async def handshake(self) -> None:
        """``initialize`` + ``tools/list``; raises `WorkerStartError` when not a Codex."""
        try:
            init = await self.rpc.request(
                "initialize",
                {
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {"elicitation": {}},
                    "clientInfo": CLIENT_INFO,
                },
            )
            if init.error is not None or init.result is None:
                raise WorkerStartError(f"initialize failed: {error_text(init.error)}")
            self.server_version = INITIALIZE_RESULT.decode(init.result).serverInfo.version
            await self.rpc.write({"method": "notifications/initialized"})
            listed = await self.rpc.request("tools/list", {})
        except WorkerUnavailable as error:
            raise WorkerStartError(
                f"the Codex MCP server exited during startup ({error})"
            ) from None
        if listed.error is not None or listed.result is None:
            raise WorkerStartError(f"tools/list failed: {error_text(listed.error)}")
        missing = REQUIRED_TOOLS - TOOL_LIST.decode(listed.result).names
        if missing:
            raise WorkerStartError(
                f"the MCP server lacks {', '.join(sorted(missing))}: use Codex "
                f"{CODEX_MCP_VERSION}, the last release with `codex mcp-server`"
            )

    async def ping(self) -> None:
        """MCP ``ping``. Raises `WorkerUnavailable` when the process died; a wedged process
        simply does not answer: bound it with the caller's deadline. The tree's snapshot it
        asks for is taken beside it, not awaited (as `CodexAppServer.ping`)."""
        self.snapshots.want()
        response = await self.rpc.request("ping", {})
        if response.error is not None:
            raise WorkerUnavailable(f"ping failed: {error_text(response.error)}")

    async def run_turn(
        self,
        job: CodexJob,
        *,
        on_event: Callable[[CodexProgress], None],
        on_approval: Callable[[ApprovalAsk], Awaitable[ApprovalDecision]],
    ) -> JobOutcome:
        """Run one ``codex`` (fresh thread) or ``codex-reply`` call and return its outcome.

        The answer is the tool result, never a late event. Events of this call (matched by
        ``_meta.requestId``) reach `on_event` in wire order, synchronously from the reader
        task: `on_event` must not block (the pool forwards with ``send_nowait``). Approval
        requests of this call are awaited through `on_approval`; an exception there denies.

        Returns:
            `JobDone`; or `JobFailed` with ``codex_error`` (an ``isError`` result such as
            "Session not found for thread_id", or a JSON-RPC error) or ``worker_died`` (the
            process exited or closed its pipes mid-call; returned rather than raised, so the
            pool handles every run's end in one place, and `alive` turns False).

        Cancellation: if the caller is cancelled, ``notifications/cancelled`` is sent
        (shielded, bounded by `CANCEL_NOTICE_GRACE`), the process is marked `poisoned` (see
        the module docstring: it would misroute replies and ignore stdin close) and
        Cancelled propagates; the owner must `interrupt` the process.
        """
        if not self.rpc.usable():
            return JobFailed(
                failure="worker_died",
                message="the Codex worker had already exited",
                worker_id=self.worker_id,
                thread_id=job.thread_id,
            )
        if job.images:  # the chat refuses photos on MCP; an image is never dropped silently
            return JobFailed(
                failure="codex_error",
                message='images need backend = "app-server" (the codex tool takes only text)',
                worker_id=self.worker_id,
                thread_id=job.thread_id,
            )
        tool, arguments = tool_call(job)
        # A text id, known before the answer: events name their call by it (_meta.requestId).
        request_id = str(self.rpc.next_id())
        state = _CallState(on_event, on_approval, TurnEvents(worker_id=self.worker_id))
        self._calls[request_id] = state
        try:
            try:
                response = await self.rpc.request(
                    "tools/call", {"name": tool, "arguments": arguments}, request_id=request_id
                )
            except WorkerUnavailable:
                return JobFailed(
                    failure="worker_died",
                    message="the Codex worker died during the run",
                    worker_id=self.worker_id,
                    thread_id=job.thread_id,
                )
        except trio.Cancelled:
            self.poisoned = True
            with trio.move_on_after(CANCEL_NOTICE_GRACE, shield=True), suppress(WorkerUnavailable):
                await self.rpc.write(
                    {
                        "method": "notifications/cancelled",
                        "params": {"requestId": request_id, "reason": "cancelled by user"},
                    },
                    seconds=CANCEL_NOTICE_GRACE,
                )
            self.snapshots.want()
            raise
        finally:
            self._calls.pop(request_id, None)
        left = ""
        if self.snapshots.known or state.started_commands:
            # Before the outcome: a crash right after must not hide them.
            running = await self.snapshots.take()
            if running and not self._calls:  # no other call's command among them
                left = await self._stop_leftovers(running)
        outcome = tool_outcome(response, job, worker_id=self.worker_id, events=state.events)
        if job.thread_id is None and outcome.thread_id is not None:
            self.threads += 1
        if left and isinstance(outcome, JobDone):
            outcome = msgspec.structs.replace(outcome, text=outcome.text + left)
        return outcome

    async def _stop_leftovers(self, running: set[int]) -> str:
        """Kill the commands a finished call left running, and the note that says so.

        Codex 0.153.4 hands a command that runs over about 10 s back to the model ("Process
        running with session ID …") and answers while it still runs. Nothing on this
        backend can list or stop it later, so no command outlives its call: the server's
        whole tree below it goes when no other call runs on this process.
        """
        names = await trio.to_thread.run_sync(command_lines, frozenset(running))
        await kill_tree(self.pid, known=running, spare_root=True)
        await self.snapshots.take()
        logger.info("worker %d: stopped %d processes the call left", self.worker_id, len(running))
        if not names:  # only Codex's own shell snapshot (`command_lines`): nothing to tell
            return ""
        shown = ", ".join(f"`{command_text(words)[:80]}`" for words in names[:3])
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        return (
            f"\n\n⏹ Stopped when Codex answered (on this bot's backend no command outlives "
            f"its request): {shown}{more}."
        )

    async def release_thread(self, thread_id: str) -> tuple[str, ...]:
        """Nothing to do: on this backend no command outlives its turn."""
        return ()

    controls: Final = False
    """``codex mcp-server`` has no steer, model list, rate limits or background commands."""

    async def steer(self, conversation: str, text: str) -> SteerResult:
        """A running MCP tool call takes no more input."""
        return "unsupported"

    async def models(self) -> tuple[ModelChoice, ...]:
        """MCP lists no models."""
        return ()

    async def rate_limits(self) -> RateLimits | None:
        """MCP reports no rate limits."""
        return None

    async def stop_background(self, thread_id: str) -> tuple[str, ...]:
        """No command outlives its turn here."""
        return ()

    async def interrupt(self) -> None:
        """Kill the server and every process it started (shielded, bounded).

        Stopping a call in place is not possible on this backend (see the module
        docstring), so this kills: the process is gone afterwards. Reaches the commands Codex
        ``setsid``-ed, even those orphaned by a server that already died, through the
        snapshots taken while it ran.
        """
        await kill_tree(self.pid, known=self.snapshots.known)

    async def close(self) -> None:
        """Graceful stop: close stdin, give Codex `GRACEFUL_EXIT`, then kill the tree.

        Shielded, bounded by `STOP_DEADLINE`; after a cancelled call (`poisoned`) closing
        stdin would not stop Codex, so it kills at once.
        """
        with trio.move_on_after(STOP_DEADLINE, shield=True):
            # Snapshot first: once the server exits, its setsid'd commands are orphans.
            started = await self.snapshots.take()
            if not self.poisoned:
                await self.rpc.close_input()
                with trio.move_on_after(GRACEFUL_EXIT):
                    await self._process.wait()
            await kill_tree(self.pid, known=started | self.snapshots.known)
            with trio.move_on_after(GRACEFUL_EXIT):
                await self._process.wait()


@asynccontextmanager
async def open_codex_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    worker_id: int,
    stderr_log: Path,
    cwd: str | None = None,
    startup_timeout: float = 60.0,
) -> AsyncIterator[CodexProcess]:
    """Start a Codex MCP server, handshake, and stop it (with its whole tree) on exit.

    `startup_timeout` bounds the spawn-to-tools/list handshake (``codex.startup_timeout``).
    A `orchestrator.ports.CodexWorkerFactory` once its other arguments are bound.

    Raises:
        WorkerStartError: the program cannot be started, exits, or is not a Codex MCP server.
    """
    async with serve_worker(
        argv,
        lambda process, nursery: CodexProcess(process, worker_id, nursery),
        env=env,
        stderr_log=stderr_log,
        cwd=cwd,
        startup_timeout=startup_timeout,
        what="MCP",
    ) as codex:
        yield codex
