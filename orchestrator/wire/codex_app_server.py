"""``codex app-server`` 0.171.0 on the wire: the requests the bot sends, the ones it answers.

Only what the bot uses (measured on Codex 0.171.0): the requests it sends, the responses
it reads, the two approval requests it answers. Decoding is tolerant: the server sends fields
the schema does not even list, so unknown fields are ignored. Field names are camelCase on the
wire (``rename="camel"``); ``tests/integration/test_app_server_schema.py`` checks every method
and field name here against the schema the pinned binary generates.

The notifications the server sends while a turn runs, and the items they carry, live beside
this module, in `orchestrator.wire.codex_app_server_notifications`; the pure translation of one
turn's notifications into the chat's `CodexProgress` messages in
`orchestrator.wire.codex_app_server_turn`; the types of the chat's controls (steer, models,
rate limits, configuration) in `orchestrator.wire.codex_app_server_controls`, whose requests
are registered here. Errors are told apart by their text here (`classify_error`): the code is
always -32600.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Final, Literal, TypeAlias

import msgspec

from orchestrator.codex_runs import ApprovalDecision, ApprovalPolicy, Sandbox
from orchestrator.wire.codex_app_server_controls import (
    ConfigReadParams,
    ConfigReadResponse,
    ModelEntry,
    RateLimitsReadParams,
    RateLimitsReadResponse,
    TurnSteerParams,
    TurnSteerResponse,
)
from orchestrator.wire.codex_app_server_notifications import _Turn
from orchestrator.wire.shell_words import shell_script

if TYPE_CHECKING:
    from collections.abc import Mapping


__all__ = [
    "CLIENT_NOTIFICATIONS",
    "CLIENT_REQUESTS",
    "CODEX_APP_SERVER_VERSION",
    "EXPERIMENTAL_METHODS",
    "SERVER_REQUESTS",
    "AccountReadParams",
    "AccountReadResponse",
    "ApprovalAnswer",
    "BackgroundTerminal",
    "BackgroundTerminalsResponse",
    "ClientInfo",
    "ErrorKind",
    "InitializeCapabilities",
    "InitializeParams",
    "InitializeResponse",
    "LoadedListParams",
    "LoadedListResponse",
    "LocalImageInput",
    "ModelListParams",
    "ModelListResponse",
    "TextInput",
    "ThreadIdParams",
    "ThreadResponse",
    "ThreadResumeParams",
    "ThreadStartParams",
    "TurnInterruptParams",
    "TurnResponse",
    "TurnStartParams",
    "approval_answer",
    "classify_error",
    "command_text",
    "route_of",
    "server_version",
]

CODEX_APP_SERVER_VERSION: Final = "0.171.0"
"""The Codex release this module was measured and schema-checked against."""


class _Wire(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Base of the wire structs: camelCase names, unknown fields ignored."""


class _Params(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """Base of what we send: fields left at their default are not sent."""


# --------------------------------------------------------------------- routing


class _Id(_Wire, frozen=True):
    id: str = ""


class _Route(_Wire, frozen=True):
    thread_id: str | None = None
    turn_id: str | None = None
    turn: _Id | None = None
    thread: _Id | None = None


# --------------------------------------------------------------------- client requests


class ClientInfo(_Params, frozen=True):
    name: str
    version: str
    title: str | None = None


class InitializeCapabilities(_Params, frozen=True):
    """`experimental_api` is needed for ``thread/backgroundTerminals/clean``."""

    experimental_api: bool
    opt_out_notification_methods: list[str] | None = None


class InitializeParams(_Params, frozen=True):
    client_info: ClientInfo
    capabilities: InitializeCapabilities


class InitializeResponse(_Wire, frozen=True):
    user_agent: str = ""
    codex_home: str = ""


class ThreadStartParams(_Params, frozen=True):
    """A fresh thread; `config` overrides Codex's config for it (the permission profile of
    `orchestrator.agent_fence`, sent instead of `sandbox`, which would win over it)."""

    cwd: str | None = None
    model: str | None = None
    sandbox: Sandbox | None = None
    config: dict[str, object] | None = None
    approval_policy: ApprovalPolicy | None = None
    developer_instructions: str | None = None
    ephemeral: bool | None = None
    """No rollout is written (``doctor``'s trial thread)."""


class ThreadResumeParams(_Params, frozen=True):
    """Resume without full history (its hydration is deprecated), in the profile's folder,
    sandbox and approval policy: a bare resume ran in Codex's own configured ones (measured:
    a ``danger-full-access`` config.toml let a resumed thread of a ``workspace-write``
    profile write anywhere, unasked)."""

    thread_id: str
    exclude_turns: bool
    cwd: str | None = None
    sandbox: Sandbox | None = None
    config: dict[str, object] | None = None
    approval_policy: ApprovalPolicy | None = None


class ThreadResponse(_Wire, frozen=True):
    """``thread/start`` and ``thread/resume``: the thread, with the model, reasoning effort
    (None: the model's default) and permission profile it runs with."""

    thread: _Id
    model: str | None = None
    reasoning_effort: str | None = None
    active_permission_profile: _Id | None = None
    """The permission profile the thread runs in (None: the legacy sandbox setting)."""


class TextInput(_Params, frozen=True, tag_field="type", tag="text"):
    text: str


class LocalImageInput(_Params, frozen=True, tag_field="type", tag="localImage"):
    """An image file on this machine that goes with the turn's text (``UserInput``
    ``localImage`` in the 0.171.0 schema); Codex reads it and sends it as ``input_image``."""

    path: str


class TurnStartParams(_Params, frozen=True):
    """`model` and `effort` override the thread's for this turn and the later ones."""

    thread_id: str
    input: list[TextInput | LocalImageInput]
    model: str | None = None
    effort: str | None = None


class TurnResponse(_Wire, frozen=True):
    turn: _Turn


class TurnInterruptParams(_Params, frozen=True):
    thread_id: str
    turn_id: str


class ThreadIdParams(_Params, frozen=True):
    thread_id: str


class LoadedListParams(_Params, frozen=True):
    limit: int | None = None


class LoadedListResponse(_Wire, frozen=True):
    data: list[str] = []


class BackgroundTerminal(_Wire, frozen=True):
    """A command still running after its turn (the 10 s yield); `process_id` is the
    unified-exec session id, not an OS pid."""

    command: str = ""
    cwd: str = ""
    item_id: str = ""
    process_id: str = ""


class BackgroundTerminalsResponse(_Wire, frozen=True):
    data: list[BackgroundTerminal] = []


class AccountReadParams(_Params, frozen=True):
    refresh_token: bool | None = None


class _Account(_Wire, frozen=True):
    type: str = ""
    email: str | None = None
    plan_type: str | None = None


class AccountReadResponse(_Wire, frozen=True):
    """``account/read``: who Codex is logged in as (None: nobody), and whether the
    configured provider needs an OpenAI login at all."""

    account: _Account | None = None
    requires_openai_auth: bool = False


class ModelListParams(_Params, frozen=True):
    limit: int | None = None


class ModelListResponse(_Wire, frozen=True):
    data: list[ModelEntry] = []


class _EmptyResponse(_Wire, frozen=True):
    """``{}``: the result of ``turn/interrupt`` and ``backgroundTerminals/clean``."""


# --------------------------------------------------------------------- server requests


class _CommandApprovalParams(_Wire, frozen=True):
    thread_id: str
    turn_id: str
    item_id: str
    command: str | None = None
    cwd: str | None = None
    reason: str | None = None


class _FileChangeApprovalParams(_Wire, frozen=True):
    thread_id: str
    turn_id: str
    item_id: str
    reason: str | None = None
    grant_root: str | None = None


_WireDecision: TypeAlias = Literal["accept", "acceptForSession", "decline", "cancel"]


class ApprovalAnswer(_Params, frozen=True):
    decision: _WireDecision


_DECISIONS: Final[Mapping[ApprovalDecision, _WireDecision]] = {
    "approved": "accept",
    "approved_for_session": "acceptForSession",
    "denied": "decline",
}


def approval_answer(decision: ApprovalDecision) -> ApprovalAnswer:
    """The wire answer for the chat's decision (never ``cancel``: /cancel interrupts)."""
    return ApprovalAnswer(decision=_DECISIONS[decision])


# --------------------------------------------------------------------- the registry

CLIENT_REQUESTS: Final[Mapping[str, tuple[type[msgspec.Struct], type[msgspec.Struct]]]] = {
    "initialize": (InitializeParams, InitializeResponse),
    "thread/start": (ThreadStartParams, ThreadResponse),
    "thread/resume": (ThreadResumeParams, ThreadResponse),
    "turn/start": (TurnStartParams, TurnResponse),
    "turn/interrupt": (TurnInterruptParams, _EmptyResponse),
    "thread/backgroundTerminals/clean": (ThreadIdParams, _EmptyResponse),
    "thread/loaded/list": (LoadedListParams, LoadedListResponse),
    "thread/backgroundTerminals/list": (ThreadIdParams, BackgroundTerminalsResponse),
    "account/read": (AccountReadParams, AccountReadResponse),
    "model/list": (ModelListParams, ModelListResponse),
    "turn/steer": (TurnSteerParams, TurnSteerResponse),
    "account/rateLimits/read": (RateLimitsReadParams, RateLimitsReadResponse),
    "config/read": (ConfigReadParams, ConfigReadResponse),
}
"""Method → (params, result) of every request we send."""

CLIENT_NOTIFICATIONS: Final = frozenset({"initialized"})

EXPERIMENTAL_METHODS: Final = frozenset(
    {"thread/backgroundTerminals/clean", "thread/backgroundTerminals/list"}
)
"""Need ``experimentalApi`` at initialize (absent from the stable schema)."""


SERVER_REQUESTS: Final[Mapping[str, tuple[type[msgspec.Struct], type[msgspec.Struct]]]] = {
    "item/commandExecution/requestApproval": (_CommandApprovalParams, ApprovalAnswer),
    "item/fileChange/requestApproval": (_FileChangeApprovalParams, ApprovalAnswer),
}
"""Method → (params, result) of the server requests we answer; others get an error."""

_ROUTE: Final = msgspec.json.Decoder(_Route)


def route_of(params: bytes) -> tuple[str | None, str | None]:
    """(thread id, turn id) of a notification or server request, where it says them."""
    try:
        route = _ROUTE.decode(params or b"{}")
    except msgspec.DecodeError:
        return None, None
    thread_id = route.thread_id or (route.thread.id if route.thread else None)
    turn_id = route.turn_id or (route.turn.id if route.turn else None)
    return thread_id, turn_id


def server_version(user_agent: str) -> str:
    """``name/0.171.0 (Debian …) …`` → ``0.171.0``."""
    head = user_agent.split(" ", 1)[0]
    return head.split("/", 1)[1] if "/" in head else ""


def command_text(command: str) -> str:
    """The command as a user would type it: the ``/bin/bash -lc '…'`` wrapper removed."""
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    script = shell_script(words)
    return command if script is None else script


ErrorKind: TypeAlias = Literal[
    "thread_not_found",
    "active_writer",
    "no_active_turn",
    "experimental_required",
    "not_initialized",
    "unknown_method",
    "other",
]

_ERROR_TEXTS: Final[tuple[tuple[str, ErrorKind], ...]] = (
    ("thread not found", "thread_not_found"),
    ("no rollout found", "thread_not_found"),
    ("already has an active writer", "active_writer"),
    ("no active turn to interrupt", "no_active_turn"),
    ("requires experimentalApi capability", "experimental_required"),
    ("Not initialized", "not_initialized"),
    ("unknown variant", "unknown_method"),
)


def classify_error(message: str) -> ErrorKind:
    """What a JSON-RPC error means, from its text (every code observed is -32600)."""
    for text, kind in _ERROR_TEXTS:
        if text in message:
            return kind
    return "other"
