"""A chat's approvals: Codex's questions shown with buttons, the presses, the timeout.

`Approvals` holds the open questions of one chat: each question the pool relays is shown
(`actors.approval_view`: exactly what it approves) with Approve / Approve for session / Deny
buttons (`actors.button_data`: ``ap:{token}:{a|s|d}``); the first valid press wins, every
press is answered, and no answer within the timeout means deny. When the request ends, the
questions still open are denied and their buttons taken away. While a request runs the chat
keeps its open questions on record (`OpenQuestions`), so that the next start after a kill
closes them (`STALE_QUESTION`, `actors.chat_recovery`).

A press reaches only the chat of the presser's own session key (the router sees to that), so
a token is never looked up in another user's chat.
"""

from __future__ import annotations

import collections
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, TypeAlias

import trio

from actors.approval_view import approval_view, subject
from actors.button_data import approval_data
from actors.chat_progress import may_write
from orchestrator.channels import reply_nowait
from orchestrator.messages import Button, TraceRecord

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from actors.button_data import ApprovalButton
    from actors.chat_output import ChatOutput
    from actors.chat_progress import Progress
    from orchestrator.codex_runs import ApprovalDecision, ApprovalRequest
    from orchestrator.messages import InboundCallback, Keyboard

__all__ = [
    "APPROVAL_BUFFER",
    "STALE_QUESTION",
    "Approvals",
    "OpenQuestions",
]

APPROVAL_BUFFER: Final = 4
"""Questions a request's workflow can relay before its Codex call waits for the chat to show
them (the chat shows each at once; Codex asks one question at a time per call)."""

OpenQuestions: TypeAlias = tuple[tuple[int, str], ...]
"""The open questions shown so far: (message id, text) each."""

SHOWN_BUFFER: Final = 2
"""Message ids of one question the sender may report before they are put on record (it
reports one each time it sends the question anew)."""

LATE_PRESS: Final = 2.0
"""Seconds a question past its timeout still waits for a press already on its way, before it
is denied (`Approvals._expire`)."""

ENDED_KEPT: Final = 256
"""Ended questions a chat remembers, so a late press on one leaves its message as it is."""

STALE_QUESTION: Final = (
    "⌛ Closed: the bot stopped while this question was open, so it can't be answered any "
    "more. The request did not go on from here."
)
"""Added under a question shown before a restart when its button is pressed; the buttons go."""

_LABELS: Final[dict[ApprovalDecision, str]] = {
    "approved": "✅ Approved",
    "approved_for_session": "✅ Approved for this session",
    "denied": "⛔ Denied",
}


@dataclass
class _Open:
    request: ApprovalRequest
    slot: str
    progress: Progress | None = None
    """The asking request's progress: its message says it waits for the user meanwhile."""
    working_directory: str = ""
    approvable: bool = True
    held: bool = False
    """It holds a command reported started (`Progress.held`) until it is approved."""
    text: str = ""
    """What the question says (for `OpenQuestions`)."""
    message_id: int | None = None
    """Its message, once the sender showed it."""
    decided: trio.Event = field(default_factory=trio.Event)

    def settle(self) -> None:
        """Decided (or ended): the request's progress no longer waits for this question."""
        self.decided.set()
        if self.progress is not None:
            self.progress.asking -= 1
            self.progress.changed.set()


class Approvals:
    """The open approval questions of one chat, by their buttons' token.

    `serve` runs in the request's nursery; `press` is called from the chat's inbox loop;
    `close_all` when the request ends. All of them run in the chat's tasks, one at a time
    between checkpoints, so the first decision of a question is the only one.
    """

    def __init__(
        self,
        out: ChatOutput,
        *,
        timeout: float,
        on_asked: Callable[[], object] = lambda: None,
        on_open: Callable[[OpenQuestions], Awaitable[None]] | None = None,
    ) -> None:
        self._out = out
        self._timeout = timeout
        self._on_asked = on_asked
        """Called once each question is shown (the chat interrupts a request that asks one
        while the bot stops: no press can reach it then)."""
        self._on_open = on_open
        """Told the open questions' messages and texts whenever a question is shown or
        decided: the chat keeps them on record, so that the start after a kill takes
        their buttons away (`actors.chat_recovery`)."""
        self._open: dict[str, _Open] = {}
        self._ended: collections.deque[str] = collections.deque(maxlen=ENDED_KEPT)
        """Tokens of the latest questions this process decided or closed: a late press on
        one of them must not touch its message, which says how it ended."""

    async def serve(
        self,
        requests: trio.MemoryReceiveChannel[ApprovalRequest],
        working_directory: str,
        progress: Progress | None = None,
    ) -> None:
        """Show each question with its buttons, and deny it after the timeout; until cancelled
        or `requests` ends (then until every question shown has been decided). While one is
        open, `progress` counts it (`Progress.asking`)."""
        async with trio.open_nursery() as timers:
            async for request in requests:
                token = secrets.token_urlsafe(9)
                question = _Open(
                    request=request,
                    slot=f"approval-{token}",
                    progress=progress,
                    working_directory=working_directory,
                )
                if progress is not None:
                    progress.asking += 1
                    progress.changed.set()
                    ask = request.ask
                    if ask.kind == "exec" and ask.reported_started and may_write(progress.phase):
                        question.held = True
                        progress.held += 1
                self._open[token] = question
                view = approval_view(request.ask, working_directory)
                question.approvable = view.approvable
                deny = Button("⛔ Deny", approval_data(token, "denied"))
                keyboard: Keyboard = (
                    (
                        Button("✅ Approve", approval_data(token, "approved")),
                        Button("✅ For session", approval_data(token, "approved_for_session")),
                        deny,
                    ),
                )
                if not view.approvable:
                    keyboard = ((deny,),)
                question.text = view.text
                shown_send, shown_receive = trio.open_memory_channel[int](SHOWN_BUFFER)
                await self._out.show(
                    question.slot,
                    view.text,
                    keyboard,
                    shown_to=shown_send,
                    document=view.document,
                    document_name=view.document_name,
                    document_caption=view.document_caption,
                )
                timers.start_soon(self._expire, token, question, shown_receive)
                self._on_asked()

    async def _expire(
        self, token: str, question: _Open, shown: trio.MemoryReceiveChannel[int]
    ) -> None:
        """Deny `question` once the timeout is over; until it is decided, put its message on
        record each time the sender shows it.

        The timeout is judged after the presses on their way are in (`LATE_PRESS`): a bot
        stopped (Ctrl-Z, a paused machine) past the timeout wakes with the deadline passed
        and the user's press, made in time, waiting in its long poll's socket; the press
        takes a few passes of the run loop to get here, and the deadline would deny first.
        So it is a second wait, not a longer first one: it starts once the bot is awake.
        """
        async with trio.open_nursery() as watching:
            watching.start_soon(self._remember_shown, question, shown)
            with trio.move_on_after(self._timeout):
                await question.decided.wait()
            with trio.move_on_after(LATE_PRESS):
                await question.decided.wait()
            watching.cancel_scope.cancel()
        if not question.decided.is_set():
            await self._decide(token, "denied", by="timeout")

    async def _remember_shown(self, question: _Open, shown: trio.MemoryReceiveChannel[int]) -> None:
        """Put the question's message on record each time the sender shows it."""
        with shown:
            async for message_id in shown:
                question.message_id = message_id
                await self._report_open()

    async def _report_open(self) -> None:
        """Tell the chat which questions are open now (`on_open`)."""
        if self._on_open is not None:
            await self._on_open(
                tuple(
                    (question.message_id, question.text)
                    for question in self._open.values()
                    if question.message_id is not None
                )
            )

    async def press(self, press: InboundCallback, button: ApprovalButton) -> None:
        """Answer a press on an approval button; the first valid one decides."""
        question = self._open.get(button.token)
        refused = question is not None and not question.approvable and button.decision != "denied"
        if refused:
            await self._out.answer(press, "This change can only be denied here.")
            return
        if question is None or button.decision is None or question.decided.is_set():
            # A press in a group reaches the presser's own session: someone else's question
            # is not found there, just like a closed one.
            closed = "That question is closed: answered, timed out, or its request ended."
            if press.chat_id < 0:
                closed = "That question is not yours, or it is closed."
            await self._out.answer(press, closed)
            if question is None and self._stale(press, button.token):
                assert press.message_id is not None  # checked by _stale
                self._ended.append(button.token)  # a double tap closes it once
                await self._out.close(
                    f"stale-{press.message_id}",
                    f"{press.message_text}\n\n{STALE_QUESTION}",
                    message_id=press.message_id,
                )
            return
        # Decided first (its check and settling take no checkpoint), then told: a timeout
        # that came while the toast waited for a busy sender would have made it a lie.
        await self._decide(button.token, button.decision, by="button")
        await self._out.answer(press, "Approved" if button.decision != "denied" else "Denied")

    def _stale(self, press: InboundCallback, token: str) -> bool:
        """Whether `press` is on a question shown before a restart: not one this process
        ended, still with the very button pressed (so a question, with text to keep: a press
        that carries an approval's data on another message, such as the progress message,
        must not rewrite it), and surely the presser's own (a private chat, or a group
        message that answers theirs)."""
        return (
            token not in self._ended
            and press.message_id is not None
            and press.data in press.keyboard
            and bool(press.message_text)
            and not press.message_text.endswith(STALE_QUESTION)
            and (press.chat_type == "private" or press.owner_id == press.user_id)
        )

    async def _decide(self, token: str, decision: ApprovalDecision, *, by: str) -> None:
        question = self._open.pop(token, None)
        self._ended.append(token)
        if question is None or question.decided.is_set():
            return
        question.settle()
        if question.held and question.progress is not None and decision != "denied":
            question.progress.held -= 1  # it runs now
        reply_nowait(question.request.reply_to, decision)
        question.request.reply_to.close()
        label = "⌛ Denied, no answer in time" if by == "timeout" else _LABELS[decision]
        what = subject(question.request.ask, question.working_directory)
        await self._out.close(question.slot, f"{label}: {what}")
        if question.message_id is not None:
            await self._report_open()  # its message says how it ended: no longer to close
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
        Nothing to tell `on_open`: the chat's record of them ends with the request's.
        """
        ended = list(self._open.values())
        self._ended.extend(self._open)
        self._open.clear()
        for question in ended:
            question.settle()
            question.request.reply_to.close()  # a closed channel counts as denied
        for question in ended:
            what = subject(question.request.ask, question.working_directory)
            await self._out.close(question.slot, f"⏹ Not answered before the request ended: {what}")
