"""One ``codex mcp-server`` process, spoken to as MCP over stdio: the Codex edge.

This module owns the subprocess and its wire protocol (newline-delimited JSON-RPC 2.0). It
speaks MCP itself rather than through the mcp SDK's `ClientSession`, because what Codex
0.153.4 needs is exactly what the SDK loses (reference/CODEX.md §5): ``codex/event``
notifications (dropped unless bound, dispatched out of order, possibly after the result),
the ``codex_*`` fields of ``elicitation/create`` (stripped), and Codex's non-standard
``{"decision": ...}`` answer (extra keys dropped). A reader task here sees every message
in wire order, routes responses to their callers, events to the call they belong to
(``_meta.requestId``) and approval requests to the caller's approval callback.

Lifecycle (`open_codex_process`): spawn in a new session (its own process group), stderr
appended to a log file, ``initialize`` + ``tools/list`` confirming ``codex`` and
``codex-reply``; on exit a shielded, bounded teardown: close stdin (Codex's graceful drain),
wait `GRACEFUL_EXIT`, then kill the whole tree including the commands Codex ``setsid``-ed
(`orchestrator.edges.processes.kill_tree`).

Process death is noticed at end of output, or by `CodexProcess.watch_exit` when the server
exited while a command it started still holds the pipe; either way calls in flight end with
``worker_died`` and `CodexProcess.alive` turns False (leaving the context does not). The
server's descendants are snapshotted whenever Codex starts a command, after each call and at
each ping, so `CodexProcess.kill` reaches commands orphaned by a server that died.

A cancelled call leaves the process unusable (CODEX.md §7: misrouted replies, stdin close no
longer stops it), so `CodexProcess.call` marks the process `poisoned` when its caller is
cancelled; the pool must then `kill` it and start a fresh one.
"""

from __future__ import annotations

import itertools
import logging
import shlex
import subprocess
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, final
from urllib.parse import unquote, urlsplit

import msgspec
import trio

from orchestrator.edges.processes import alive, descendants, kill_tree, rss_mb
from orchestrator.errors import WorkerStartError, WorkerUnavailable
from orchestrator.messages import (
    AgentMessageDelta,
    ApprovalAsk,
    CodexNotice,
    CodexProgress,
    CommandFinished,
    CommandStarted,
    JobDone,
    JobFailed,
    JobOutcome,
    PatchApplied,
    RunStarted,
    TokenCount,
)
from orchestrator.workflow_messages import TokenUsage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
    from pathlib import Path

    from orchestrator.messages import ApprovalDecision, CodexJob

__all__ = [
    "GRACEFUL_EXIT",
    "PROTOCOL_VERSION",
    "REQUIRED_TOOLS",
    "CodexProcess",
    "open_codex_process",
]

logger: Final = logging.getLogger(__name__)

_ProcessGone = WorkerUnavailable
"""The process exited or closed its pipes."""

PROTOCOL_VERSION: Final = "2025-06-18"
"""MCP protocol version we offer; Codex 0.153.4 echoes it."""

REQUIRED_TOOLS: Final = frozenset({"codex", "codex-reply"})

GRACEFUL_EXIT: Final = 2.0
"""Seconds after closing stdin before the process tree is killed (Codex exits in ~22 ms)."""

EXIT_DRAIN: Final = 0.5
"""Seconds the reader may keep draining stdout after the server exited; a command that
inherited the pipe would otherwise hold it open and hide the death."""

MAX_LINE: Final = 64 * 1024 * 1024
"""Longest JSON-RPC line accepted from the server (a huge tool result still fits)."""

CLIENT_INFO: Final = {"name": "codex-orchestrator", "version": "0.1.0"}


class _RpcError(msgspec.Struct, frozen=True):
    code: int = 0
    message: str = ""


class _Incoming(msgspec.Struct, frozen=True):
    """Any JSON-RPC message from the server."""

    id: int | str | None = None
    method: str | None = None
    params: msgspec.Raw = msgspec.Raw(b"")
    result: msgspec.Raw = msgspec.Raw(b"")
    error: _RpcError | None = None


class _Meta(msgspec.Struct, frozen=True):
    requestId: int | str | None = None


class _TokenTotals(msgspec.Struct, frozen=True):
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_output_tokens: int = 0
    total_tokens: int = 0


class _TokenInfo(msgspec.Struct, frozen=True):
    total_token_usage: _TokenTotals | None = None


class _EventMsg(msgspec.Struct, frozen=True):
    type: str
    call_id: str = ""
    delta: str = ""
    message: str = ""
    command: list[str] | str | None = None
    cwd: str = ""
    exit_code: int | None = None
    success: bool = True
    changes: dict[str, msgspec.Raw] | None = None
    info: _TokenInfo | None = None


class _EventParams(msgspec.Struct, frozen=True):
    msg: _EventMsg
    meta: _Meta = msgspec.field(default_factory=_Meta, name="_meta")


class _ElicitParams(msgspec.Struct, frozen=True):
    message: str = ""
    codex_elicitation: str = ""
    codex_mcp_tool_call_id: str | int | None = None
    codex_command: list[str] | None = None
    codex_cwd: str = ""
    codex_changes: dict[str, msgspec.Raw] | None = None


class _Tool(msgspec.Struct, frozen=True):
    name: str


class _ToolList(msgspec.Struct, frozen=True):
    tools: list[_Tool] = []


class _ServerInfo(msgspec.Struct, frozen=True):
    name: str = ""
    version: str = ""


class _InitializeResult(msgspec.Struct, frozen=True):
    serverInfo: _ServerInfo = _ServerInfo()


class _Content(msgspec.Struct, frozen=True):
    type: str = "text"
    text: str = ""


class _Structured(msgspec.Struct, frozen=True):
    threadId: str | None = None
    content: str | None = None


class _ToolResult(msgspec.Struct, frozen=True):
    content: list[_Content] = []
    structuredContent: _Structured | None = None
    isError: bool = False


_INCOMING: Final = msgspec.json.Decoder(_Incoming)
_EVENT: Final = msgspec.json.Decoder(_EventParams)
_ELICIT: Final = msgspec.json.Decoder(_ElicitParams)
_TOOLS: Final = msgspec.json.Decoder(_ToolList)
_INIT: Final = msgspec.json.Decoder(_InitializeResult)
_TOOL_RESULT: Final = msgspec.json.Decoder(_ToolResult)
_ENCODER: Final = msgspec.json.Encoder()


class _Response(msgspec.Struct, frozen=True):
    result: msgspec.Raw | None
    error: _RpcError | None


@dataclass
class _CallState:
    """A tools/call in flight: where its events and approval requests go."""

    on_event: Callable[[CodexProgress], None]
    on_approval: Callable[[ApprovalAsk], Awaitable[ApprovalDecision]]
    usage: TokenUsage = field(default_factory=TokenUsage)
    patch_files: tuple[str, ...] = ()
    commands: dict[str, str] = field(default_factory=dict)
    """Command text by Codex ``call_id``, for end events that do not repeat the command."""
    started_commands: bool = False
    """Codex ran a command during this call (its process tree is worth a snapshot)."""


def command_text(command: list[str] | str | None) -> str:
    """The command as a user would type it: the ``bash -lc`` wrapper removed."""
    if command is None:
        return ""
    if isinstance(command, str):
        return command
    if len(command) == 3 and command[0].endswith("sh") and command[1] in ("-lc", "-c"):
        return command[2]
    return shlex.join(command)


def local_path(where: str) -> str:
    """A folder as a path: Codex 0.153.4 sends ``exec_command_begin``'s cwd as a file URL."""
    if where.startswith("file://"):
        return unquote(urlsplit(where).path)
    return where


@final
class CodexProcess:
    """One running ``codex mcp-server``. Created by `open_codex_process`.

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
        self._ids = itertools.count(1)
        self._pending: dict[int | str, trio.MemorySendChannel[_Response]] = {}
        self._calls: dict[str, _CallState] = {}
        self._write_lock = trio.Lock()
        self._exited = trio.Event()
        self._reading = True
        self._reader_scope = trio.CancelScope()
        self._known: set[int] = set()
        assert process.stdin is not None
        self._stdin = process.stdin

    @property
    def alive(self) -> bool:
        """False once the server exited or closed its output (crashed, or stopped by us).

        Not turned False merely because the context is being left (the reader cancelled
        with everything else): a watcher that sees ``alive`` False may call it a crash.
        """
        return not self._exited.is_set()

    def _usable(self) -> bool:
        """Whether a request sent now can still get an answer."""
        return self._reading and not self._exited.is_set()

    def rss_mb(self) -> float:
        """Resident memory of the server process, in MB: where Codex's per-thread growth
        lives (commands it runs come and go). One small /proc read, cheap enough per run."""
        return rss_mb({self.pid})

    def _snapshot(self) -> set[int]:
        """Remember the server's living descendants (and return them all).

        Taken whenever Codex starts a command, after each call, at each ping and before a
        stop: if the server dies unexpectedly, its setsid'd commands are re-parented and only
        such a snapshot (and their session ids) still leads `kill` to them.
        """
        if self._process.returncode is None:
            self._known = {pid for pid in self._known if alive(pid)} | descendants(
                self.pid, known=self._known
            )
        return set(self._known)

    # ------------------------------------------------------------------ wire

    async def _write(self, message: Mapping[str, object]) -> None:
        data = _ENCODER.encode(message) + b"\n"
        async with self._write_lock:
            try:
                await self._stdin.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
                raise _ProcessGone("the Codex process closed its input") from error

    async def _request(self, method: str, params: Mapping[str, object]) -> _Response:
        if not self._usable():
            raise _ProcessGone("the Codex process has exited")
        request_id = next(self._ids)
        send, receive = trio.open_memory_channel[_Response](1)
        self._pending[request_id] = send
        try:
            with receive:
                await self._write(
                    {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
                )
                try:
                    return await receive.receive()
                except trio.EndOfChannel:
                    raise _ProcessGone("the Codex process exited mid-request") from None
        finally:
            self._pending.pop(request_id, None)

    async def read_loop(self) -> None:
        """Route every line from the server; on end of output, fail what is pending.

        Also ends (through `watch_exit`) when the server exited but a command it started still
        holds the pipe open.
        """
        try:
            with self._reader_scope:
                await self._read_lines()
            # Reached on end of output, or when `watch_exit` stopped the reader; not when
            # the reader is cancelled from outside (the context is being left).
            self._exited.set()
        finally:
            self._reading = False
            for send in self._pending.values():
                send.close()
            self._pending.clear()

    async def _read_lines(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        buffer = bytearray()
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while True:
                chunk = await stdout.receive_some(65536)
                if not chunk:
                    return
                buffer += chunk
                while True:
                    end = buffer.find(b"\n")
                    if end < 0:
                        if len(buffer) > MAX_LINE:
                            logger.error("worker %d sent an oversized line", self.worker_id)
                            buffer.clear()
                        break
                    line = bytes(buffer[:end])
                    del buffer[: end + 1]
                    if line.strip():
                        self._dispatch(line)

    async def watch_exit(self) -> None:
        """When the server exits, let the reader drain for `EXIT_DRAIN`, then stop it.

        Normally the reader sees end-of-file first. A command that inherited the server's
        stdout would keep the pipe open after the server died; without this, calls in flight
        would wait forever instead of failing with ``worker_died``.
        """
        await self._process.wait()
        with trio.move_on_after(EXIT_DRAIN):
            await self._exited.wait()
        if not self._exited.is_set():
            logger.warning(
                "worker %d exited but its output stays open (held by a child)", self.worker_id
            )
            self._reader_scope.cancel()

    def _dispatch(self, line: bytes) -> None:
        try:
            message = _INCOMING.decode(line)
        except msgspec.DecodeError:
            logger.warning("worker %d wrote a non-JSON line; ignored", self.worker_id)
            return
        if message.method is None:
            if message.id is not None:
                pending = self._pending.pop(message.id, None)
                if pending is not None:
                    result = message.result if len(message.result) else None
                    pending.send_nowait(_Response(result, message.error))
            return
        if message.id is None:
            if message.method == "codex/event" and len(message.params):
                self._on_event(message.params)
            return
        params = message.params if len(message.params) else None
        self._nursery.start_soon(self._serve_request, message.id, message.method, params)

    def _on_event(self, raw: msgspec.Raw) -> None:
        try:
            params = _EVENT.decode(raw)
        except msgspec.DecodeError:
            return
        call = self._calls.get(str(params.meta.requestId))
        if call is None:
            return
        progress = self._progress(params.msg, call)
        if progress is not None:
            call.on_event(progress)

    def _progress(self, msg: _EventMsg, call: _CallState) -> CodexProgress | None:
        match msg.type:
            case "task_started":
                return RunStarted(worker_id=self.worker_id)
            case "agent_message_content_delta" | "agent_message_delta":
                return AgentMessageDelta(text=msg.delta)
            case "exec_command_begin":
                call.started_commands = True
                self._snapshot()  # a new command: remember it before it can be orphaned
                command = command_text(msg.command)
                if msg.call_id:
                    call.commands[msg.call_id] = command
                return CommandStarted(command=command, cwd=local_path(msg.cwd))
            case "exec_command_end":
                command = command_text(msg.command) or call.commands.pop(msg.call_id, "")
                return CommandFinished(command=command, exit_code=msg.exit_code)
            case "patch_apply_begin":
                call.patch_files = tuple(msg.changes or {})
                return None
            case "patch_apply_end":
                files = tuple(msg.changes or {}) or call.patch_files
                return PatchApplied(files=files, success=msg.success)
            case "token_count":
                totals = msg.info.total_token_usage if msg.info else None
                if totals is None:
                    return None
                call.usage = TokenUsage(
                    input_tokens=totals.input_tokens,
                    cached_input_tokens=totals.cached_input_tokens,
                    output_tokens=totals.output_tokens,
                    reasoning_output_tokens=totals.reasoning_output_tokens,
                    total_tokens=totals.total_tokens,
                )
                return TokenCount(usage=call.usage)
            case "stream_error":
                return CodexNotice(level="stream_error", message=msg.message)
            case "warning":
                return CodexNotice(level="warning", message=msg.message)
            case "error":
                return CodexNotice(level="error", message=msg.message)
            case _:
                return None

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
        with suppress(_ProcessGone):
            await self._write({"jsonrpc": "2.0", "id": request_id, "result": result})

    async def _reply_error(self, request_id: int | str, code: int, text: str) -> None:
        with suppress(_ProcessGone):
            await self._write(
                {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": text}}
            )

    async def _decide(self, params: msgspec.Raw | None) -> ApprovalDecision:
        """Ask the caller whose call raised the approval; deny when nobody can answer.

        Never answers ``abort``: Codex then never responds to the tools/call (CODEX.md §4).
        """
        try:
            ask = _ELICIT.decode(params or b"{}")
        except msgspec.DecodeError:
            return "denied"
        call = self._calls.get(str(ask.codex_mcp_tool_call_id))
        if call is None and len(self._calls) == 1:
            call = next(iter(self._calls.values()))
        if call is None:
            logger.warning("worker %d: an approval request matched no call; denied", self.worker_id)
            return "denied"
        kind: Literal["exec", "patch"] = (
            "patch" if ask.codex_elicitation == "patch-approval" else "exec"
        )
        approval = ApprovalAsk(
            kind=kind,
            message=ask.message,
            command=command_text(ask.codex_command),
            cwd=local_path(ask.codex_cwd),
            changes=tuple(ask.codex_changes or {}),
            worker_id=self.worker_id,
        )
        try:
            return await call.on_approval(approval)
        except Exception:  # the approval UI failed: the safe answer is no
            logger.exception("worker %d: asking for approval failed; denied", self.worker_id)
            return "denied"

    # ------------------------------------------------------------------ API

    async def handshake(self) -> None:
        """``initialize`` + ``tools/list``; raises `WorkerStartError` when not a Codex."""
        try:
            init = await self._request(
                "initialize",
                {
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {"elicitation": {}},
                    "clientInfo": CLIENT_INFO,
                },
            )
            if init.error is not None or init.result is None:
                raise WorkerStartError(f"initialize failed: {_error_text(init.error)}")
            self.server_version = _INIT.decode(init.result).serverInfo.version
            await self._write({"jsonrpc": "2.0", "method": "notifications/initialized"})
            listed = await self._request("tools/list", {})
        except _ProcessGone as error:
            raise WorkerStartError(
                f"the Codex MCP server exited during startup ({error})"
            ) from None
        if listed.error is not None or listed.result is None:
            raise WorkerStartError(f"tools/list failed: {_error_text(listed.error)}")
        tools = {tool.name for tool in _TOOLS.decode(listed.result).tools}
        missing = REQUIRED_TOOLS - tools
        if missing:
            raise WorkerStartError(
                f"the MCP server lacks {', '.join(sorted(missing))}: use Codex 0.153.4, the "
                "last release with `codex mcp-server`"
            )

    async def ping(self) -> None:
        """MCP ``ping``. Raises `WorkerUnavailable` when the process died;
        a wedged process simply does not answer: bound it with the caller's deadline."""
        self._snapshot()
        response = await self._request("ping", {})
        if response.error is not None:
            raise _ProcessGone(f"ping failed: {_error_text(response.error)}")

    async def call(
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

        Cancellation: if the caller is cancelled, ``notifications/cancelled`` is sent (shielded,
        bounded), the process is marked `poisoned` (CODEX.md §7: it would misroute replies and
        ignore stdin close) and Cancelled propagates; the owner must `kill` the process.
        """
        fresh = job.thread_id is None
        if fresh:
            prompt = (
                f"{job.context_preamble}\n\n{job.prompt}" if job.context_preamble else job.prompt
            )
            arguments: dict[str, object] = {
                "prompt": prompt,
                "cwd": job.cwd,
                "sandbox": job.sandbox,
                "approval-policy": job.approval_policy,
            }
            if job.model:
                arguments["model"] = job.model
            if job.developer_instructions:
                arguments["developer-instructions"] = job.developer_instructions
            tool = "codex"
        else:
            arguments = {"prompt": job.prompt, "threadId": job.thread_id}
            tool = "codex-reply"
        if not self._usable():
            return JobFailed(
                failure="worker_died",
                message="the Codex worker had already exited",
                worker_id=self.worker_id,
                thread_id=job.thread_id,
            )
        request_id = str(next(self._ids))
        state = _CallState(on_event=on_event, on_approval=on_approval)
        self._calls[request_id] = state
        send, receive = trio.open_memory_channel[_Response](1)
        self._pending[request_id] = send
        try:
            with receive:
                try:
                    await self._write(
                        {
                            "jsonrpc": "2.0",
                            "id": request_id,
                            "method": "tools/call",
                            "params": {"name": tool, "arguments": arguments},
                        }
                    )
                    response = await receive.receive()
                except (trio.EndOfChannel, _ProcessGone):
                    return JobFailed(
                        failure="worker_died",
                        message="the Codex worker died during the run",
                        worker_id=self.worker_id,
                        thread_id=job.thread_id,
                    )
        except trio.Cancelled:
            self.poisoned = True
            with trio.move_on_after(0.5) as cleanup:
                cleanup.shield = True
                with suppress(_ProcessGone):
                    await self._write(
                        {
                            "jsonrpc": "2.0",
                            "method": "notifications/cancelled",
                            "params": {"requestId": request_id, "reason": "cancelled by user"},
                        }
                    )
            raise
        finally:
            self._calls.pop(request_id, None)
            self._pending.pop(request_id, None)
            if self._known or state.started_commands:
                self._snapshot()  # a /proc scan: only when commands ran
        return self._outcome(response, job, state, fresh)

    def _outcome(
        self, response: _Response, job: CodexJob, state: _CallState, fresh: bool
    ) -> JobOutcome:
        if response.error is not None or response.result is None:
            return JobFailed(
                failure="codex_error",
                message=f"Codex refused the call: {_error_text(response.error)}",
                worker_id=self.worker_id,
                thread_id=job.thread_id,
            )
        try:
            result = _TOOL_RESULT.decode(response.result)
        except msgspec.DecodeError:
            return JobFailed(
                failure="codex_error",
                message="Codex returned a result of an unknown shape",
                worker_id=self.worker_id,
                thread_id=job.thread_id,
            )
        structured = result.structuredContent or _Structured()
        text = structured.content
        if text is None:
            text = "\n".join(item.text for item in result.content if item.type == "text")
        thread_id = structured.threadId or job.thread_id
        if fresh and structured.threadId:
            self.threads += 1
        if result.isError or thread_id is None:
            return JobFailed(
                failure="codex_error",
                message=text or "Codex reported an error",
                worker_id=self.worker_id,
                thread_id=thread_id,
            )
        return JobDone(text=text, thread_id=thread_id, worker_id=self.worker_id, usage=state.usage)

    async def kill(self) -> None:
        """Kill the server and every process it started (shielded, bounded).

        Reaches the commands Codex ``setsid``-ed, even those orphaned by a server that
        already died, through the snapshots taken while it ran.
        """
        await kill_tree(self.pid, known=self._snapshot())

    async def close(self) -> None:
        """Graceful stop: close stdin, give Codex `GRACEFUL_EXIT`, then kill the tree."""
        with trio.CancelScope(shield=True):
            # Snapshot first: once the server exits, its setsid'd commands are orphans.
            started = self._snapshot()
            if not self.poisoned:
                with suppress(trio.BrokenResourceError):
                    await self._stdin.aclose()
                with trio.move_on_after(GRACEFUL_EXIT):
                    await self._process.wait()
            await kill_tree(self.pid, known=started | self._snapshot())
            with trio.move_on_after(GRACEFUL_EXIT):
                await self._process.wait()


def _error_text(error: _RpcError | None) -> str:
    return f"{error.message} ({error.code})" if error else "no result"


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

    Raises:
        WorkerStartError: the program cannot be started, exits, or is not a Codex MCP server.
    """
    stderr_log.parent.mkdir(parents=True, exist_ok=True)
    with stderr_log.open("ab") as errlog:
        try:
            process = await trio.lowlevel.open_process(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errlog,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as error:
            raise WorkerStartError(f"cannot start {argv[0]!r}: {error.strerror or error}") from None
        failure: WorkerStartError | None = None
        async with trio.open_nursery() as nursery:
            codex = CodexProcess(process, worker_id, nursery)
            nursery.start_soon(codex.read_loop)
            nursery.start_soon(codex.watch_exit)
            try:
                with trio.fail_after(startup_timeout):
                    await codex.handshake()
            except WorkerStartError as error:
                failure = error
            except trio.TooSlowError:
                failure = WorkerStartError(
                    f"no MCP handshake within {startup_timeout:g} s (codex.startup_timeout)"
                )
            if failure is None:
                try:
                    yield codex
                finally:
                    await codex.close()
                    nursery.cancel_scope.cancel()
            else:
                await codex.close()
                nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure
