"""The MCP dialect of ``codex mcp-server``: its wire types and their meaning for the bot.

Pure data, no I/O: the transport (`orchestrator.edges.codex_mcp`) decodes lines with the
decoders here and turns them into the bot's messages with the functions here. What the
types encode was measured on Codex `CODEX_MCP_VERSION`, the last release that has
``mcp-server`` (it is gone from 0.154.0; the successor is ``codex app-server``, a different
protocol):

- JSON-RPC 2.0, one message per line. ``initialize`` echoes our `PROTOCOL_VERSION`; the tools
  are ``codex`` (a fresh thread: prompt, cwd, sandbox, approval-policy, model,
  developer-instructions) and ``codex-reply`` (prompt, threadId). Both answer with
  ``structuredContent {threadId, content}``; a Codex failure is an ``isError`` result (such as
  "Session not found for thread_id" when a thread is continued in another process: threads
  never outlive their process).
- Progress arrives as ``codex/event`` notifications, ``params {msg: {type, ...}, _meta:
  {requestId}}``: ``requestId`` is the id of the ``tools/call`` they belong to. They are in
  wire order and may still arrive after the call's result: the result, not an event, ends a
  call.
- Approvals arrive as server → client ``elicitation/create`` requests whose ``codex_*``
  fields say what to approve; ``codex_mcp_tool_call_id`` names the call. Codex wants its own
  answer ``{"decision": ...}``, not the MCP standard one (which it reads as denied). Never
  answer ``abort``: Codex then aborts the turn and never answers the ``tools/call``.
- ``exec_command_begin`` sends its cwd as a ``file://`` URL and the command wrapped in
  ``bash -lc``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import unquote, urlsplit

import msgspec

from orchestrator.codex_runs import (
    AgentMessageDelta,
    ApprovalAsk,
    CodexNotice,
    CommandFinished,
    CommandStarted,
    JobDone,
    JobFailed,
    PatchApplied,
    Reasoning,
    RunStarted,
    TokenCount,
)
from orchestrator.codex_words import CONTEXT_COMPACTED
from orchestrator.wire.shell_words import shell_script
from orchestrator.workflow_types import ContextFill, TokenUsage

if TYPE_CHECKING:
    from collections.abc import Mapping

    from orchestrator.codex_runs import CodexJob, CodexProgress, JobOutcome
    from orchestrator.wire.jsonrpc import Response, RpcError

__all__ = [
    "CLIENT_INFO",
    "CODEX_MCP_VERSION",
    "ELICITATION",
    "ENCODER",
    "EVENT",
    "INITIALIZE_RESULT",
    "PROTOCOL_VERSION",
    "REQUIRED_TOOLS",
    "TOOL_LIST",
    "ElicitParams",
    "EventMsg",
    "EventParams",
    "InitializeResult",
    "ToolList",
    "TurnEvents",
    "approval_ask",
    "command_text",
    "error_text",
    "local_path",
    "tool_call",
    "tool_outcome",
]

CODEX_MCP_VERSION: Final = "0.153.4"
"""The pinned Codex release: the last one with ``codex mcp-server``."""

PROTOCOL_VERSION: Final = "2025-06-18"
"""MCP protocol version we offer; Codex `CODEX_MCP_VERSION` echoes it."""

REQUIRED_TOOLS: Final = frozenset({"codex", "codex-reply"})
"""The tools a Codex MCP server lists: a fresh thread, and a turn on an existing one."""

CLIENT_INFO: Final = {"name": "codex-orchestrator", "version": "0.1.0"}


class _Meta(msgspec.Struct, frozen=True):
    requestId: int | str | None = None


class _TokenInfo(msgspec.Struct, frozen=True):
    """``total_token_usage`` is the thread's running total; ``last_token_usage`` is one model
    response's usage, which Codex adds to the total before it sends ``token_count`` (once per
    response, measured also with rate-limit headers)."""

    total_token_usage: TokenUsage | None = None
    last_token_usage: TokenUsage = TokenUsage()
    model_context_window: int | None = None


class _EventItem(msgspec.Struct, frozen=True):
    """The ``item`` of an ``item_started`` or ``item_completed`` event: its type is enough."""

    type: str = ""


class EventMsg(msgspec.Struct, frozen=True):
    """The ``msg`` of a ``codex/event``: only the fields the bot shows."""

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
    item: _EventItem | None = None


class EventParams(msgspec.Struct, frozen=True):
    """``codex/event`` params; ``_meta.requestId`` is the ``tools/call`` it belongs to."""

    msg: EventMsg
    meta: _Meta = msgspec.field(default_factory=_Meta, name="_meta")

    @property
    def tool_call_id(self) -> str:
        """The id of the ``tools/call`` this event belongs to, as a string."""
        return str(self.meta.requestId)


class ElicitParams(msgspec.Struct, frozen=True):
    """``elicitation/create`` params with Codex's own fields (the MCP SDK strips them)."""

    message: str = ""
    codex_elicitation: str = ""
    codex_mcp_tool_call_id: str | int | None = None
    codex_command: list[str] | None = None
    codex_cwd: str = ""
    codex_changes: dict[str, msgspec.Raw] | None = None


class _Tool(msgspec.Struct, frozen=True):
    name: str


class ToolList(msgspec.Struct, frozen=True):
    """``tools/list`` result."""

    tools: list[_Tool] = []

    @property
    def names(self) -> frozenset[str]:
        """The names of the tools listed."""
        return frozenset(tool.name for tool in self.tools)


class _ServerInfo(msgspec.Struct, frozen=True):
    name: str = ""
    version: str = ""


class InitializeResult(msgspec.Struct, frozen=True):
    """``initialize`` result; ``serverInfo.version`` is the Codex release."""

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


EVENT: Final = msgspec.json.Decoder(EventParams)
ELICITATION: Final = msgspec.json.Decoder(ElicitParams)
TOOL_LIST: Final = msgspec.json.Decoder(ToolList)
INITIALIZE_RESULT: Final = msgspec.json.Decoder(InitializeResult)
_TOOL_RESULT: Final = msgspec.json.Decoder(_ToolResult)

_AFTER_COMPACTION: Final = "Heads up: Long threads and multiple compactions"
"""How the warning 0.153.4 sends right after ``context_compacted`` begins ("… can cause the
model to be less accurate. Start a new thread when possible …")."""
ENCODER: Final = msgspec.json.Encoder()


def command_text(command: list[str] | str | None) -> str:
    """The command as a user would type it: the ``bash -lc`` wrapper removed."""
    if command is None:
        return ""
    if isinstance(command, str):
        return command
    script = shell_script(command)
    return shlex.join(command) if script is None else script


def local_path(where: str) -> str:
    """A folder as a path: ``exec_command_begin``'s cwd comes as a file URL."""
    if where.startswith("file://"):
        return unquote(urlsplit(where).path)
    return where


def error_text(error: RpcError | None) -> str:
    """A JSON-RPC error for a message, or "no result" when there was neither."""
    return f"{error.message} ({error.code})" if error else "no result"


def tool_call(job: CodexJob) -> tuple[str, dict[str, object]]:
    """The tool and arguments that run `job`: ``codex`` for a fresh thread (the context
    preamble goes before the prompt), ``codex-reply`` to continue ``job.thread_id``."""
    if job.thread_id is not None:
        return "codex-reply", {"prompt": job.prompt, "threadId": job.thread_id}
    prompt = f"{job.context_preamble}\n\n{job.prompt}" if job.context_preamble else job.prompt
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
    return "codex", arguments


@dataclass
class TurnEvents:
    """The events of one ``tools/call`` as the bot's progress messages.

    Holds what later events need from earlier ones: the command of each ``call_id`` (its end
    event may not repeat it), the files of a patch being applied, the call's own token usage
    (`usage`: the sum of ``last_token_usage`` over the responses it reported, not the thread's
    running total) and that running total as last seen (`thread_total`: a ``token_count`` sent
    again with the same total adds nothing).
    """

    worker_id: int
    usage: TokenUsage = field(default_factory=TokenUsage)
    thread_total: TokenUsage | None = None
    context: tuple[int, int] | None = None
    """The context's tokens after the last response (or Codex's re-estimate after a
    compaction) and the model's window: a `ContextFill` once the thread is known."""
    patch_files: tuple[str, ...] = ()
    commands: dict[str, str] = field(default_factory=dict)
    compacted: bool = False
    """Codex compacted the thread in this call (`CONTEXT_COMPACTED` was said)."""

    def translate(self, msg: EventMsg) -> CodexProgress | None:
        """The progress message for `msg`, or None for an event the bot does not show."""
        match msg.type:
            case "task_started":
                return RunStarted(worker_id=self.worker_id)
            case "agent_message_content_delta" | "agent_message_delta":
                return AgentMessageDelta(text=msg.delta)
            case "item_started" | "item_completed" if msg.item and msg.item.type == "Reasoning":
                return Reasoning(item="start" if msg.type == "item_started" else "end")
            case "agent_reasoning_section_break":
                return Reasoning(part_start=True)
            case "reasoning_content_delta" | "agent_reasoning_delta":
                return Reasoning(text=msg.delta)
            case "exec_command_begin":
                command = command_text(msg.command)
                if msg.call_id:
                    self.commands[msg.call_id] = command
                return CommandStarted(command=command, cwd=local_path(msg.cwd))
            case "exec_command_end":
                command = command_text(msg.command) or self.commands.pop(msg.call_id, "")
                return CommandFinished(command=command, exit_code=msg.exit_code)
            case "patch_apply_begin":
                self.patch_files = changed_paths(msg.changes or {})
                return None
            case "patch_apply_end":
                files = changed_paths(msg.changes or {}) or self.patch_files
                return PatchApplied(files=files, success=msg.success)
            case "token_count":
                info = msg.info
                if info is not None and info.model_context_window:  # a re-estimate too
                    self.context = (info.last_token_usage.total_tokens, info.model_context_window)
                if info is None or info.total_token_usage in (None, self.thread_total):
                    return None  # no figures yet, or the same total resent: nothing new
                self.thread_total = info.total_token_usage
                self.usage += info.last_token_usage
                return TokenCount(usage=self.usage)
            case "stream_error":
                return CodexNotice(level="stream_error", message=msg.message)
            case "context_compacted":
                self.compacted = True
                return CodexNotice(level="warning", message=CONTEXT_COMPACTED)
            case "warning":
                if self.compacted and msg.message.startswith(_AFTER_COMPACTION):
                    return None  # said already, in the bot's words (/new, not "a new thread")
                return CodexNotice(level="warning", message=msg.message)
            case "error":
                return CodexNotice(level="error", message=msg.message)
            case _:
                return None


def approval_ask(ask: ElicitParams, worker_id: int) -> ApprovalAsk:
    """What an ``elicitation/create`` asks the user to approve."""
    kind: Literal["exec", "patch"] = (
        "patch" if ask.codex_elicitation == "patch-approval" else "exec"
    )
    return ApprovalAsk(
        kind=kind,
        message=ask.message,
        command=command_text(ask.codex_command),
        cwd=local_path(ask.codex_cwd),
        changes=tuple(ask.codex_changes or {}),
        worker_id=worker_id,
        diff=changes_diff(ask.codex_changes or {})[:DIFF_IN_ASK_LIMIT],
    )


DIFF_IN_ASK_LIMIT: Final = 1_000_000
"""Characters of a patch approval's diff kept in the `ApprovalAsk`: the approval shows the whole
diff (as a file when long) and offers no Approve on a diff cut at this bound, which only guards
memory against a runaway patch."""


class _FileChange(msgspec.Struct, frozen=True):
    """One entry of ``codex_changes``: ``{"type": "add"|"delete"|"update", …}``."""

    type: str = ""
    content: str = ""
    unified_diff: str = ""
    move_path: str | None = None


_FILE_CHANGE: Final = msgspec.json.Decoder(_FileChange)


def changed_paths(changes: Mapping[str, msgspec.Raw]) -> tuple[str, ...]:
    """The files a patch's ``changes`` touch: each path, and a renamed file's new one after
    it (an update with ``move_path``: the old name is gone, the new one holds the file)."""
    paths: list[str] = []
    for path, raw in changes.items():
        paths.append(path)
        try:
            change = _FILE_CHANGE.decode(raw)
        except msgspec.DecodeError:
            continue
        if change.move_path:
            paths.append(change.move_path)
    return tuple(paths)


def changes_diff(changes: Mapping[str, msgspec.Raw]) -> str:
    """A readable diff of a patch approval's ``codex_changes`` (unknown shapes: the path)."""
    parts: list[str] = []
    for path, raw in changes.items():
        try:
            change = _FILE_CHANGE.decode(raw)
        except msgspec.DecodeError:
            parts.append(f"--- {path}")
            continue
        match change.type:
            case "add":
                body = "".join(f"+{line}\n" for line in change.content.splitlines())
                parts.append(f"--- {path} (add)\n{body}")
            case "delete":
                parts.append(f"--- {path} (delete)")
            case "update":
                moved = f" → {change.move_path}" if change.move_path else ""
                parts.append(f"--- {path} (update{moved})\n{change.unified_diff}")
            case _:
                parts.append(f"--- {path}")
    return "\n".join(parts)


def tool_outcome(
    response: Response, job: CodexJob, *, worker_id: int, events: TurnEvents
) -> JobOutcome:
    """The outcome of `job` from its ``tools/call`` response, with what its `events` counted.

    `JobDone` with the thread id (a fresh one, or the job's own); `JobFailed`
    (``codex_error``) for a JSON-RPC error, an ``isError`` result or a result without a
    thread.
    """
    if response.error is not None or response.result is None:
        return JobFailed(
            failure="codex_error",
            message=f"Codex refused the call: {error_text(response.error)}",
            worker_id=worker_id,
            thread_id=job.thread_id,
        )
    try:
        result = _TOOL_RESULT.decode(response.result)
    except msgspec.DecodeError:
        return JobFailed(
            failure="codex_error",
            message="Codex returned a result of an unknown shape",
            worker_id=worker_id,
            thread_id=job.thread_id,
        )
    structured = result.structuredContent or _Structured()
    text = structured.content
    if text is None:
        text = "\n".join(item.text for item in result.content if item.type == "text")
    thread_id = structured.threadId or job.thread_id
    if result.isError or thread_id is None:
        return JobFailed(
            failure="codex_error",
            message=text or "Codex reported an error",
            worker_id=worker_id,
            thread_id=thread_id,
        )
    return JobDone(
        text=text,
        thread_id=thread_id,
        worker_id=worker_id,
        usage=events.usage,
        context=_context_fill(thread_id, events.context),
    )


def _context_fill(thread_id: str, context: tuple[int, int] | None) -> ContextFill | None:
    """`ContextFill` of `thread_id` from a translator's (tokens, window), if Codex said."""
    if context is None:
        return None
    tokens, window = context
    return ContextFill(thread_id=thread_id, tokens=tokens, window=window)
