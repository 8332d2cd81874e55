"""The turns in flight in one ``codex app-server`` process, and where each message goes.

This module owns, for `orchestrator.edges.codex_app_server.CodexAppServer` (one
`AppServerCalls` per process): the calls running a turn, one per thread (`Call`), and the
routing of what the server sends outside our requests. Every notification goes to the turn
running on its ``threadId`` (through that turn's `TurnTranslator`), and every server request is
answered: an approval with the decision of that turn's approval callback (cancelled when the
server withdraws it, ``serverRequest/resolved``), anything else with an error. Notifications
that arrive before ``turn/start`` answered (the turn id not known yet) wait in the turn's
buffer. Notices are only logged; rate-limit updates go to the chat's controls.

It is separate because it is the reader's side of the process: `AppServerCalls.dispatch` runs
synchronously in the transport's reader task, in wire order, and must not block (answers are
written from tasks of the process's nursery), while `CodexAppServer` awaits its requests. The
turns' lifecycle (start, interrupt, outcome) stays with `CodexAppServer`.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, final

import msgspec
import trio

from orchestrator.codex_runs import CommandStarted
from orchestrator.errors import WorkerUnavailable
from orchestrator.logging import SaidOnce
from orchestrator.wire.codex_app_server import approval_answer, route_of
from orchestrator.wire.codex_app_server_notifications import (
    NOTICES,
    ResolvedNotification,
    notice_text,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from orchestrator.codex_runs import ApprovalAsk, ApprovalDecision, CodexProgress
    from orchestrator.edges.codex_app_server_controls import AppServerControls
    from orchestrator.edges.jsonrpc_lines import LineRpc
    from orchestrator.edges.processes import TreeSnapshots
    from orchestrator.wire.codex_app_server_turn import TurnTranslator
    from orchestrator.wire.jsonrpc import Incoming

__all__ = ["AppServerCalls", "Call"]

logger: Final = logging.getLogger("orchestrator.edges.codex_app_server")  # one logger per worker

_ProcessGone = WorkerUnavailable
"""The process exited or closed its pipes."""

_RESOLVED: Final = msgspec.json.Decoder(ResolvedNotification)

SAID_AT_START: Final = frozenset({"configWarning", "deprecationNotice"})
"""Notices every worker says alike as it starts (0.171.0 without bubblewrap on PATH: "Codex
could not find bubblewrap on PATH…", 300 characters): the log has each once a run at INFO
(one per worker was a screenful at start and at every restart), repeats at DEBUG."""
SAID_AT_START_KEPT: Final = 64
"""Distinct such notices remembered, so a chatty Codex cannot grow the set for weeks."""
_said_at_start = SaidOnce(SAID_AT_START_KEPT)

_APPROVALS: Final = frozenset(
    {"item/commandExecution/requestApproval", "item/fileChange/requestApproval"}
)


@dataclass(eq=False)
class Call:
    """A turn in flight on one thread: where its notifications and approvals go."""

    translator: TurnTranslator
    conversation: str
    on_event: Callable[[CodexProgress], None]
    on_approval: Callable[[ApprovalAsk], Awaitable[ApprovalDecision]]
    turn_id: str | None = None
    buffered: list[tuple[str, bytes, int | str | None]] = field(default_factory=list)
    """(method, params, server request id) received before the turn id was known."""
    known: trio.Event = field(default_factory=trio.Event)
    """Set once the turn id is known, or the turn can no longer start."""
    done: trio.Event = field(default_factory=trio.Event)
    died: bool = False
    approvals: dict[int | str, trio.CancelScope] = field(default_factory=dict)

    def end(self) -> None:
        self.known.set()
        self.done.set()
        for scope in self.approvals.values():
            scope.cancel()


@final
class AppServerCalls:
    """The calls of one ``codex app-server`` process and the routing of its messages.

    Attributes:
        by_thread: the call running a turn on each thread (at most one per thread).
    """

    def __init__(
        self,
        rpc: LineRpc,
        worker_id: int,
        nursery: trio.Nursery,
        *,
        snapshots: TreeSnapshots,
        controls: AppServerControls,
    ) -> None:
        self.rpc = rpc
        self.worker_id = worker_id
        self._nursery = nursery
        self._snapshots = snapshots
        self._controls = controls
        self.by_thread: dict[str, Call] = {}

    def process_gone(self) -> None:
        for call in self.by_thread.values():
            call.died = True
            call.end()

    def dispatch(self, message: Incoming) -> None:
        """A notification or server request, in wire order: route it by thread and turn."""
        assert message.method is not None
        params = bytes(message.params) or b"{}"
        if message.method in NOTICES:
            text = notice_text(message.method, params)[:500]
            level = logging.INFO
            if message.method in SAID_AT_START:
                level = _said_at_start.level(text, logging.INFO)
            logger.log(
                level,
                "worker %d: Codex %s: %s",
                self.worker_id,
                NOTICES[message.method],
                text,
            )
        if message.method == "serverRequest/resolved":
            self._resolved(params)
        if message.method == "account/rateLimits/updated":
            self._controls.rate_limits_updated(params)
            return
        thread_id, turn_id = route_of(params)
        call = self.by_thread.get(thread_id) if thread_id is not None else None
        if call is not None and call.turn_id is None:
            if message.method == "turn/started" and turn_id is not None:
                self.turn_known(call, turn_id)
            else:
                call.buffered.append((message.method, params, message.id))
                return
        if call is not None and turn_id not in (None, call.turn_id):
            call = None  # a notification of another (earlier) turn
        self._route(call, message.method, params, message.id)

    def _route(
        self, call: Call | None, method: str, params: bytes, request_id: int | str | None
    ) -> None:
        if request_id is not None:
            self._serve_request(call, method, params, request_id)
            return
        if call is None or call.done.is_set():
            return
        progress = call.translator.feed(method, params)
        for event in progress:
            if isinstance(event, CommandStarted):
                self._snapshots.want()  # a new command: remember it before it can be orphaned
            call.on_event(event)
        if call.translator.status is not None:
            call.end()

    def turn_known(self, call: Call, turn_id: str) -> None:
        """The turn id is known: deliver what waited for it (in wire order)."""
        call.turn_id = turn_id
        call.known.set()
        buffered, call.buffered = call.buffered, []
        for method, params, request_id in buffered:
            _thread, buffered_turn = route_of(params)
            if buffered_turn in (None, turn_id):
                self._route(call, method, params, request_id)

    def _resolved(self, params: bytes) -> None:
        """The server withdrew a request (the turn was interrupted): stop asking the user."""
        with suppress(msgspec.DecodeError):
            resolved = _RESOLVED.decode(params)
            call = self.by_thread.get(resolved.thread_id)
            scope = call.approvals.get(resolved.request_id) if call else None
            if scope is not None:
                scope.cancel()

    def _serve_request(
        self, call: Call | None, method: str, params: bytes, request_id: int | str
    ) -> None:
        """Answer a server request: approvals through the call's callback, others with an
        error (an approval nobody can answer is declined)."""
        if method not in _APPROVALS:
            error = {"code": -32601, "message": f"method not supported: {method}"}
            self._nursery.start_soon(self._answer, {"id": request_id, "error": error})
            return
        ask = call.translator.approval_ask(method, params) if call else None
        if call is None or ask is None or call.done.is_set():
            logger.warning("worker %d: an approval matched no running turn", self.worker_id)
            answer = {"id": request_id, "result": approval_answer("denied")}
            self._nursery.start_soon(self._answer, answer)
            return
        scope = trio.CancelScope()
        call.approvals[request_id] = scope
        self._nursery.start_soon(self._approve, call, ask, request_id, scope)

    async def _approve(
        self, call: Call, ask: ApprovalAsk, request_id: int | str, scope: trio.CancelScope
    ) -> None:
        decision: ApprovalDecision = "denied"
        with scope:
            try:
                decision = await call.on_approval(ask)
            except Exception:  # the approval UI failed: the safe answer is no
                logger.exception("worker %d: asking for approval failed", self.worker_id)
            finally:
                call.approvals.pop(request_id, None)
            await self._answer({"id": request_id, "result": approval_answer(decision)})

    async def _answer(self, message: Mapping[str, object]) -> None:
        with suppress(_ProcessGone):
            await self.rpc.write(message)
