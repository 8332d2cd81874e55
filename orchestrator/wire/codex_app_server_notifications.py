"""``codex app-server`` 0.171.0 on the wire: what the server tells us while a turn runs.

The notifications the bot reads (turn and item lifecycle, deltas, token usage, plans, errors,
warnings, notices, ``serverRequest/resolved``), the thread items they carry, and the turn as the
server describes it. They are one group because they flow one way, server to bot, outside any
request of ours: `orchestrator.wire.codex_app_server_turn` translates them, and the edge only
logs the notices and drops resolved approvals. The requests we send and the approval requests
we answer are in `orchestrator.wire.codex_app_server`, which takes `_Turn` from here for the
``turn/start`` result. `SERVER_NOTIFICATIONS` and `ITEM_TYPES` register them
(``tests/integration/test_app_server_schema.py`` checks every name against the schema the
pinned binary generates). Decoding is tolerant, as in the rest of the wire: unknown fields are
ignored, and an item of a type we do not know is skipped, not an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal, TypeAlias

import msgspec

from orchestrator.wire.codex_app_server_controls import RateLimitsUpdatedNotification

if TYPE_CHECKING:
    from collections.abc import Mapping


__all__ = [
    "ITEM_TYPES",
    "NOTICES",
    "SERVER_NOTIFICATIONS",
    "ResolvedNotification",
    "SummaryNotification",
    "notice_text",
]


class _Wire(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Base of what we read: camelCase names, unknown fields ignored."""


# --------------------------------------------------------------------- the turn


class _TurnError(_Wire, frozen=True):
    message: str = ""
    additional_details: str | None = None


_TurnStatus: TypeAlias = Literal["completed", "interrupted", "failed", "inProgress"]


class _Turn(_Wire, frozen=True):
    id: str
    status: _TurnStatus = "inProgress"
    error: _TurnError | None = None
    items: list[msgspec.Raw] = []


# --------------------------------------------------------------------- items


class _Item(_Wire, frozen=True, tag_field="type"):
    id: str = ""


class _AgentMessageItem(_Item, frozen=True, tag="agentMessage"):
    text: str = ""
    phase: str | None = None


class _CommandExecutionItem(_Item, frozen=True, tag="commandExecution"):
    command: str = ""
    cwd: str | None = None
    status: str = "inProgress"
    aggregated_output: str | None = None
    exit_code: int | None = None


class _ChangeKind(_Wire, frozen=True):
    type: str = "update"
    move_path: str | None = msgspec.field(default=None, name="move_path")
    """A renamed file's new path (an ``update``; snake case on 0.171.0's wire)."""


class _FileUpdateChange(_Wire, frozen=True):
    path: str
    kind: _ChangeKind = _ChangeKind()
    diff: str = ""


class _FileChangeItem(_Item, frozen=True, tag="fileChange"):
    changes: list[_FileUpdateChange] = []
    status: str = "inProgress"


class _ReasoningItem(_Item, frozen=True, tag="reasoning"):
    """The model reasons (its summary streams in ``item/reasoning/*`` notifications, when
    summaries are on): started and completed around it, as measured on 0.171.0."""


class _ContextCompactionItem(_Item, frozen=True, tag="contextCompaction"):
    """Codex compacted the thread to fit the model's window (a turn's first item when it
    does it automatically; measured on 0.171.0)."""


_ThreadItem: TypeAlias = (
    _AgentMessageItem
    | _CommandExecutionItem
    | _FileChangeItem
    | _ContextCompactionItem
    | _ReasoningItem
)
_ITEM_TYPES: Final = frozenset(
    {"agentMessage", "commandExecution", "fileChange", "contextCompaction", "reasoning"}
)


class _ItemHead(_Wire, frozen=True):
    type: str = ""


# --------------------------------------------------------------------- notifications


class _TurnNotification(_Wire, frozen=True):
    thread_id: str
    turn: _Turn


class _ItemNotification(_Wire, frozen=True):
    thread_id: str
    turn_id: str
    item: msgspec.Raw


class _DeltaNotification(_Wire, frozen=True):
    thread_id: str
    turn_id: str
    item_id: str
    delta: str = ""


class _PatchUpdatedNotification(_Wire, frozen=True):
    """``item/fileChange/patchUpdated``: new changes for a fileChange item."""

    thread_id: str
    turn_id: str
    item_id: str
    changes: list[_FileUpdateChange] = []


class _TokenUsageBreakdown(_Wire, frozen=True):
    total_tokens: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_output_tokens: int = 0


class _ThreadTokenUsage(_Wire, frozen=True):
    """``total`` is the thread's running total; ``last`` is one model response's usage, which
    Codex adds to ``total`` before it sends this (once per response)."""

    total: _TokenUsageBreakdown = _TokenUsageBreakdown()
    last: _TokenUsageBreakdown = _TokenUsageBreakdown()
    model_context_window: int | None = None


class _TokenUsageNotification(_Wire, frozen=True):
    thread_id: str
    turn_id: str
    token_usage: _ThreadTokenUsage


class _PlanStep(_Wire, frozen=True):
    step: str = ""
    status: str = "pending"


class _PlanNotification(_Wire, frozen=True):
    thread_id: str
    turn_id: str
    plan: list[_PlanStep] = []
    explanation: str | None = None


class _ErrorNotification(_Wire, frozen=True):
    """``error``: `will_retry` true for "Reconnecting..." notices, which never end a turn."""

    thread_id: str
    turn_id: str
    error: _TurnError
    will_retry: bool = False


class _WarningNotification(_Wire, frozen=True):
    message: str = ""
    thread_id: str | None = None


class ResolvedNotification(_Wire, frozen=True):
    """``serverRequest/resolved``: a server request no longer wants an answer."""

    thread_id: str
    request_id: int | str


class SummaryNotification(_Wire, frozen=True):
    summary: str = ""
    details: str | None = None


# --------------------------------------------------------------------- the registry

SERVER_NOTIFICATIONS: Final[Mapping[str, type[msgspec.Struct]]] = {
    "turn/started": _TurnNotification,
    "turn/completed": _TurnNotification,
    "item/started": _ItemNotification,
    "item/completed": _ItemNotification,
    "item/agentMessage/delta": _DeltaNotification,
    "item/commandExecution/outputDelta": _DeltaNotification,
    "item/fileChange/patchUpdated": _PatchUpdatedNotification,
    "thread/tokenUsage/updated": _TokenUsageNotification,
    "turn/plan/updated": _PlanNotification,
    "error": _ErrorNotification,
    "warning": _WarningNotification,
    "serverRequest/resolved": ResolvedNotification,
    "configWarning": SummaryNotification,
    "deprecationNotice": SummaryNotification,
    "account/rateLimits/updated": RateLimitsUpdatedNotification,
}
"""Method → params of every notification we read."""

ITEM_TYPES: Final[tuple[type[msgspec.Struct], ...]] = (
    _AgentMessageItem,
    _CommandExecutionItem,
    _FileChangeItem,
)
"""The ``ThreadItem`` variants we read; items of other types are skipped."""

_ITEM_HEAD: Final = msgspec.json.Decoder(_ItemHead)
_ITEM: Final[msgspec.json.Decoder[_ThreadItem]] = msgspec.json.Decoder(_ThreadItem)


NOTICES: Final[Mapping[str, str]] = {
    "configWarning": "config warning",
    "deprecationNotice": "deprecation notice",
    "warning": "warning",
}
"""Notifications that only say something to the bot's owner (the log), in words."""


def notice_text(method: str, params: bytes) -> str:
    """What a `NOTICES` notification says, as text for the log (its JSON if unreadable)."""
    try:
        if method == "warning":
            return msgspec.json.decode(params, type=_WarningNotification).message
        notice = msgspec.json.decode(params, type=SummaryNotification)
    except msgspec.DecodeError:
        return params.decode("utf-8", "replace")
    return notice.summary + (f" ({notice.details})" if notice.details else "")


def decode_item(raw: bytes) -> _ThreadItem | None:
    """An item of a type we use; None for the others (reasoning, web search, …)."""
    try:
        if _ITEM_HEAD.decode(raw).type not in _ITEM_TYPES:
            return None
        return _ITEM.decode(raw)
    except msgspec.DecodeError:
        return None
