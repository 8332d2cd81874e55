"""A chat's approvals: Codex's questions shown with buttons, the presses, the timeout.

This module owns:

- the callback data of the chat's buttons (`cancel_data`, `approval_data`, `decode_button`):
  ``cx:{token}`` cancels the request whose Cancel button carries `token`, ``ap:{token}:{a|s|d}``
  approves, approves for the session, or denies the question carrying `token`, ``rr:{token}``
  runs again the request a kill interrupted. Tokens are
  unguessable, and the data stays within Telegram's 64 bytes of callback data;
- `Approvals`, the open questions of one chat: each question the pool relays is shown with
  Approve / Approve for session / Deny buttons; the first valid press wins, every press is
  answered, and no answer within the timeout means deny. When the request ends, the questions
  still open are denied and their buttons taken away.

A press reaches only the chat of the presser's own session key (the router sees to that), so
a token is never looked up in another user's chat.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import msgspec
import trio

from orchestrator.channels import reply_nowait
from orchestrator.messages import ApprovalDecision, Button, TraceRecord

if TYPE_CHECKING:
    from actors.chat_output import ChatOutput
    from orchestrator.messages import ApprovalAsk, ApprovalRequest, InboundCallback

__all__ = [
    "APPROVAL_BUFFER",
    "ApprovalButton",
    "Approvals",
    "CancelButton",
    "RerunButton",
    "approval_data",
    "cancel_data",
    "decode_button",
    "rerun_data",
]

DIFF_SHOWN = 3000
"""Characters of a patch approval's diff shown with its buttons (a message holds 4096)."""

APPROVAL_BUFFER: Final = 4
"""Questions a request's workflow can relay before its Codex call waits for the chat to show
them (the chat shows each at once; Codex asks one question at a time per call)."""

_CHOICES: Final[dict[ApprovalDecision, str]] = {
    "approved": "a",
    "approved_for_session": "s",
    "denied": "d",
}
_DECISIONS: Final[dict[str, ApprovalDecision]] = {code: name for name, code in _CHOICES.items()}

_LABELS: Final[dict[ApprovalDecision, str]] = {
    "approved": "✅ Approved",
    "approved_for_session": "✅ Approved for this session",
    "denied": "⛔ Denied",
}


class CancelButton(msgspec.Struct, frozen=True):
    """A press on a request's Cancel button."""

    token: str


class RerunButton(msgspec.Struct, frozen=True):
    """A press on "Run again" under a request a kill interrupted."""

    token: str


class ApprovalButton(msgspec.Struct, frozen=True):
    """A press on an approval button; `decision` is None when the choice is not one we know."""

    token: str
    decision: ApprovalDecision | None


def cancel_data(token: str) -> str:
    """The callback data of the Cancel button of the request carrying `token`."""
    return f"cx:{token}"


def approval_data(token: str, decision: ApprovalDecision) -> str:
    """The callback data of the button that answers the question `token` with `decision`."""
    return f"ap:{token}:{_CHOICES[decision]}"


def rerun_data(token: str) -> str:
    """The callback data of the "Run again" button of the interrupted request `token`."""
    return f"rr:{token}"


def decode_button(data: str) -> CancelButton | ApprovalButton | RerunButton | None:
    """Read a button's callback data; None when it is none of ours."""
    kind, _, rest = data.partition(":")
    if kind == "cx":
        return CancelButton(rest)
    if kind == "rr":
        return RerunButton(rest)
    if kind == "ap":
        token, _, choice = rest.partition(":")
        return ApprovalButton(token, _DECISIONS.get(choice))
    return None


def _subject(ask: ApprovalAsk) -> str:
    """What an approval was about, for the line that replaces its buttons."""
    if ask.kind == "exec":
        return f"$ {ask.command}"
    return ", ".join(ask.changes) or "file changes"


@dataclass
class _Open:
    request: ApprovalRequest
    slot: str
    decided: trio.Event = field(default_factory=trio.Event)


class Approvals:
    """The open approval questions of one chat, by their buttons' token.

    `serve` runs in the request's nursery; `press` is called from the chat's inbox loop;
    `close_all` when the request ends. All of them run in the chat's tasks, one at a time
    between checkpoints, so the first decision of a question is the only one.
    """

    def __init__(self, out: ChatOutput, *, timeout: float) -> None:
        self._out = out
        self._timeout = timeout
        self._open: dict[str, _Open] = {}

    async def serve(
        self, requests: trio.MemoryReceiveChannel[ApprovalRequest], working_directory: str
    ) -> None:
        """Show each question with its buttons, and deny it after the timeout; until cancelled
        or `requests` ends (then until every question shown has been decided)."""
        async with trio.open_nursery() as timers:
            async for request in requests:
                token = secrets.token_urlsafe(9)
                question = _Open(request=request, slot=f"approval-{token}")
                self._open[token] = question
                ask = request.ask
                if ask.kind == "exec":
                    where = ask.cwd or working_directory
                    body = f"Codex asks to run:\n$ {ask.command}\nin {where}"
                else:
                    files = "\n".join(f"• {path}" for path in ask.changes) or "(no files listed)"
                    body = f"Codex asks to change files:\n{files}"
                    if ask.diff:
                        body += "\n\n" + ask.diff[:DIFF_SHOWN]
                keyboard = (
                    (
                        Button("✅ Approve", approval_data(token, "approved")),
                        Button("✅ For session", approval_data(token, "approved_for_session")),
                        Button("⛔ Deny", approval_data(token, "denied")),
                    ),
                )
                await self._out.show(question.slot, body, keyboard)
                timers.start_soon(self._expire, token, question)

    async def _expire(self, token: str, question: _Open) -> None:
        with trio.move_on_after(self._timeout):
            await question.decided.wait()
        if not question.decided.is_set():
            await self._decide(token, "denied", by="timeout")

    async def press(self, press: InboundCallback, button: ApprovalButton) -> None:
        """Answer a press on an approval button; the first valid one decides."""
        question = self._open.get(button.token)
        if question is None or button.decision is None or question.decided.is_set():
            await self._out.answer(press, "This button is not for you, or it has expired.")
            return
        await self._out.answer(press, "Approved" if button.decision != "denied" else "Denied")
        await self._decide(button.token, button.decision, by="button")

    async def _decide(self, token: str, decision: ApprovalDecision, *, by: str) -> None:
        question = self._open.pop(token, None)
        if question is None or question.decided.is_set():
            return
        question.decided.set()
        reply_nowait(question.request.reply_to, decision)
        question.request.reply_to.close()
        label = "⌛ No answer in time: denied" if by == "timeout" else _LABELS[decision]
        what = _subject(question.request.ask)
        await self._out.close(question.slot, f"{label}: {what}")
        self._out.trace(
            TraceRecord(
                event="approval",
                outcome="timeout" if by == "timeout" else decision,
                detail=what[:300],
            )
        )

    async def close_all(self) -> None:
        """The request ended with questions open: deny them and take their buttons away.

        Runs on the request's way out, maybe cancelled: the caller shields and bounds it.
        """
        ended = list(self._open.values())
        self._open.clear()
        for question in ended:
            question.decided.set()
            question.request.reply_to.close()  # a closed channel counts as denied
        for question in ended:
            subject = _subject(question.request.ask)
            await self._out.close(
                question.slot, f"⏹ Not answered before the request ended: {subject}"
            )
