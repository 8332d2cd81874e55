"""The pure translation of one ``codex app-server`` turn (wire types: `codex_app_server` for
the approval requests, `codex_app_server_notifications` for the notifications and items).

`TurnTranslator` turns the notifications of one turn into the `CodexProgress` messages the
chat already understands, collects the final answer and the turn's own token usage (not the
thread's running total), and closes the items ``turn/completed`` leaves open (interrupted and
failed turns send no ``item/completed``, measured on Codex 0.171.0). Approval requests
become `ApprovalAsk`; a patch approval carries no diff, so the translator keeps the diffs of
the ``fileChange`` items it saw start and puts them in the ask's `diff`.
"""

from __future__ import annotations

from typing import Final, Literal, assert_never

import msgspec

from orchestrator.codex_runs import (
    AgentMessageDelta,
    ApprovalAsk,
    CodexNotice,
    CodexProgress,
    CommandFinished,
    CommandStarted,
    PatchApplied,
    Reasoning,
    RunStarted,
    TokenCount,
)
from orchestrator.codex_words import CONTEXT_COMPACTED
from orchestrator.wire.codex_app_server import (
    _CommandApprovalParams,
    _FileChangeApprovalParams,
    command_text,
)
from orchestrator.wire.codex_app_server_notifications import (
    _AgentMessageItem,
    _CommandExecutionItem,
    _ContextCompactionItem,
    _DeltaNotification,
    _ErrorNotification,
    _FileChangeItem,
    _FileUpdateChange,
    _ItemNotification,
    _PatchUpdatedNotification,
    _PlanNotification,
    _ReasoningItem,
    _ThreadItem,
    _TokenUsageBreakdown,
    _TokenUsageNotification,
    _Turn,
    _TurnNotification,
    _TurnStatus,
    _WarningNotification,
    decode_item,
)
from orchestrator.workflow_types import ContextFill, TokenUsage

__all__ = ["DIFF_IN_ASK_LIMIT", "TurnTranslator"]

DIFF_IN_ASK_LIMIT: Final = 1_000_000
"""Characters of a patch diff kept in the `ApprovalAsk`: the approval shows the whole diff (as a
file when long) and offers no Approve on a diff cut at this bound (a memory guard only)."""

_TURN: Final = msgspec.json.Decoder(_TurnNotification)
_ITEM_NOTE: Final = msgspec.json.Decoder(_ItemNotification)
_DELTA: Final = msgspec.json.Decoder(_DeltaNotification)
_TOKENS: Final = msgspec.json.Decoder(_TokenUsageNotification)
_PLAN: Final = msgspec.json.Decoder(_PlanNotification)
_PATCH_UPDATED: Final = msgspec.json.Decoder(_PatchUpdatedNotification)
_ERROR: Final = msgspec.json.Decoder(_ErrorNotification)
_WARNING: Final = msgspec.json.Decoder(_WarningNotification)
_COMMAND_ASK: Final = msgspec.json.Decoder(_CommandApprovalParams)
_PATCH_ASK: Final = msgspec.json.Decoder(_FileChangeApprovalParams)


def _usage(breakdown: _TokenUsageBreakdown) -> TokenUsage:
    return TokenUsage(
        input_tokens=breakdown.input_tokens,
        cached_input_tokens=breakdown.cached_input_tokens,
        output_tokens=breakdown.output_tokens,
        reasoning_output_tokens=breakdown.reasoning_output_tokens,
        total_tokens=breakdown.total_tokens,
    )


def _plan_text(note: _PlanNotification) -> str:
    marks = {"completed": "[x]", "inProgress": "[~]"}
    lines = [f"{marks.get(step.status, '[ ]')} {step.step}" for step in note.plan]
    head = f"plan: {note.explanation}" if note.explanation else "plan:"
    return "\n".join([head, *lines])


class TurnTranslator:
    """The notifications of one turn → `CodexProgress`, final answer, usage and status.

    Pure and synchronous: `feed` returns the progress a notification means. A turn is over
    when `status` is not None (after ``turn/completed``); items still open then are closed
    (a running command gets a `CommandFinished` without exit code).
    """

    def __init__(self, worker_id: int, thread_id: str = "") -> None:
        self.worker_id = worker_id
        self.thread_id = thread_id
        self.status: _TurnStatus | None = None
        self.error = ""
        self.usage = TokenUsage()
        """This turn's own usage: the sum of the ``last`` of each response it reported."""
        self.context: ContextFill | None = None
        """How full the thread's context is after the last response (when Codex said)."""
        self._thread_total: TokenUsage | None = None
        self.commands_started = False
        self._messages: list[_AgentMessageItem] = []
        self._summary: list[_AgentMessageItem] = []
        self._commands: dict[str, str] = {}
        self._patches: dict[str, _FileChangeItem] = {}

    @property
    def final_text(self) -> str:
        """The answer: the last ``final_answer`` message, else the last without a phase, else
        the last message at all (from ``item/completed``, else from the turn summary)."""
        messages = self._messages or self._summary
        for wanted in ("final_answer", None):
            for message in reversed(messages):
                if message.phase == wanted:
                    return message.text
        return messages[-1].text if messages else ""

    def feed(self, method: str, params: bytes) -> list[CodexProgress]:
        """Translate one notification; undecodable or unknown ones mean nothing."""
        try:
            return self._feed(method, params)
        except msgspec.DecodeError:
            return []

    def _feed(self, method: str, params: bytes) -> list[CodexProgress]:
        match method:
            case "turn/started":
                return [RunStarted(worker_id=self.worker_id, thread_id=self.thread_id)]
            case "item/started" | "item/completed":
                item = decode_item(_ITEM_NOTE.decode(params).item)
                if item is None:
                    return []
                if method == "item/started":
                    return self._started(item)
                return self._completed(item)
            case "item/fileChange/patchUpdated":
                update = _PATCH_UPDATED.decode(params)
                patch = self._patches.get(update.item_id)
                if patch is not None:  # an approval shows the newest diff
                    self._patches[update.item_id] = msgspec.structs.replace(
                        patch, changes=update.changes
                    )
                return []
            case "item/agentMessage/delta":
                return [AgentMessageDelta(text=_DELTA.decode(params).delta)]
            case "item/reasoning/summaryPartAdded":
                return [Reasoning(part_start=True)]
            case "item/reasoning/summaryTextDelta":
                return [Reasoning(text=_DELTA.decode(params).delta)]
            case "thread/tokenUsage/updated":
                return self._token_usage(_TOKENS.decode(params))
            case "turn/plan/updated":
                return [CodexNotice(level="warning", message=_plan_text(_PLAN.decode(params)))]
            case "error":
                error = _ERROR.decode(params)
                level: Literal["stream_error", "error"] = (
                    "stream_error" if error.will_retry else "error"
                )
                return [CodexNotice(level=level, message=error.error.message)]
            case "warning":
                return [CodexNotice(level="warning", message=_WARNING.decode(params).message)]
            case "turn/completed":
                return self._turn_completed(_TURN.decode(params).turn)
            case _:
                return []

    def _token_usage(self, note: _TokenUsageNotification) -> list[CodexProgress]:
        """Add one response's usage (``last``) when the thread's total moved. One notification
        per response was measured (0.171.0, rate-limit headers too); one sent again with the
        same total (Codex has paths that resend the figures) adds nothing."""
        window = note.token_usage.model_context_window
        if window:  # also from a re-estimate after a compaction: the context it left
            tokens = note.token_usage.last.total_tokens
            self.context = ContextFill(thread_id=self.thread_id, tokens=tokens, window=window)
        total = _usage(note.token_usage.total)
        if total == self._thread_total:
            return []
        self._thread_total = total
        self.usage += _usage(note.token_usage.last)
        return [TokenCount(usage=self.usage)]

    def _started(self, item: _ThreadItem) -> list[CodexProgress]:
        match item:
            case _CommandExecutionItem():
                self.commands_started = True
                command = command_text(item.command)
                self._commands[item.id] = command
                return [CommandStarted(command=command, cwd=item.cwd or "")]
            case _FileChangeItem():
                self._patches[item.id] = item
                return []
            case _ReasoningItem():
                return [Reasoning(item="start")]
            case _:
                return []

    def _completed(self, item: _ThreadItem) -> list[CodexProgress]:
        match item:
            case _AgentMessageItem():
                self._messages.append(item)
                return []
            case _CommandExecutionItem():
                command = self._commands.pop(item.id, None) or command_text(item.command)
                return [CommandFinished(command=command, exit_code=item.exit_code)]
            case _FileChangeItem():
                self._patches.pop(item.id, None)
                if item.status == "declined":
                    return []  # the approval prompt already told the user
                files = tuple(
                    path
                    for change in item.changes
                    for path in (change.path, change.kind.move_path)
                    if path
                )
                return [PatchApplied(files=files, success=item.status == "completed")]
            case _ContextCompactionItem():
                return [CodexNotice(level="warning", message=CONTEXT_COMPACTED)]
            case _ReasoningItem():
                return [Reasoning(item="end")]
            case _:
                assert_never(item)

    def _turn_completed(self, turn: _Turn) -> list[CodexProgress]:
        self.status = turn.status
        self.error = turn.error.message if turn.error else ""
        for raw in turn.items:
            item = decode_item(raw)
            if isinstance(item, _AgentMessageItem):
                self._summary.append(item)
        closed: list[CodexProgress] = [
            CommandFinished(command=command) for command in self._commands.values()
        ]
        self._commands.clear()
        self._patches.clear()  # never applied: nothing to report
        return closed

    def approval_ask(self, method: str, params: bytes) -> ApprovalAsk | None:
        """The `ApprovalAsk` of an approval request of this turn; None when undecodable."""
        try:
            if method == "item/commandExecution/requestApproval":
                ask = _COMMAND_ASK.decode(params)
                command = command_text(ask.command or "") or self._commands.get(ask.item_id, "")
                return ApprovalAsk(
                    kind="exec",
                    message=ask.reason or f"Allow Codex to run `{command}`?",
                    command=command,
                    cwd=ask.cwd or "",
                    worker_id=self.worker_id,
                    reason=ask.reason or "",
                    reported_started=ask.item_id in self._commands,
                )
            if method == "item/fileChange/requestApproval":
                patch = _PATCH_ASK.decode(params)
                item = self._patches.get(patch.item_id)
                changes = item.changes if item else []
                message = patch.reason or "Allow Codex to apply these changes?"
                diff = "\n".join(_readable_change(change) for change in changes)
                return ApprovalAsk(
                    kind="patch",
                    message=message,
                    diff=diff[:DIFF_IN_ASK_LIMIT],
                    changes=tuple(change.path for change in changes),
                    worker_id=self.worker_id,
                    reason=patch.reason or "",
                )
        except msgspec.DecodeError:
            return None
        return None


def _readable_change(change: _FileUpdateChange) -> str:
    """One file of a patch approval's diff, written as `orchestrator.wire.codex_mcp` writes
    it (one header per file, a new file's lines as ``+`` lines, a move in the header), so an
    approval reads the same on both backends; a deleted file's lines as ``-`` lines. The
    item gives a new or deleted file's content as is, and a move's unified diff followed by
    ``Moved to: PATH`` (0.171.0)."""
    kind, body = change.kind.type, change.diff
    if kind in ("add", "delete"):
        sign = "+" if kind == "add" else "-"
        body = "".join(f"{sign}{line}\n" for line in body.splitlines())
    moved = change.kind.move_path
    if moved:
        kind += f" → {moved}"
        stripped = body.rstrip()
        if stripped.endswith(f"Moved to: {moved}"):
            body = stripped.removesuffix(f"Moved to: {moved}").rstrip() + "\n"
    return f"--- {change.path} ({kind})\n{body}"
