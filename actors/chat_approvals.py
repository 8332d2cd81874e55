"""A chat's approvals: Codex's questions shown with buttons, the presses, the timeout.

This module owns:

- the callback data of the chat's buttons (`cancel_data`, `approval_data`, `decode_button`):
  ``cx:{token}`` cancels the request whose Cancel button carries `token`, ``ap:{token}:{a|s|d}``
  approves, approves for the session, or denies the question carrying `token`, ``rr:{token}``
  runs again the request a kill interrupted, ``df:`` shows the working directory's diff
  (``/diff``; it carries no token: it only reads, and only in the presser's chat),
  ``st:{token}`` adds the queued message offered
  with `token` to the running request, ``bg:{token}`` stops the commands the result of the
  request `token` left running, ``md:{model}`` and ``ef:{effort}`` pick a model and a
  reasoning effort for the chat (`actors.chat_model`). Tokens are
  unguessable, and the data stays within Telegram's 64 bytes of callback data;
- `Approvals`, the open questions of one chat: each question the pool relays is shown with
  Approve / Approve for session / Deny buttons; the first valid press wins, every press is
  answered, and no answer within the timeout means deny. When the request ends, the questions
  still open are denied and their buttons taken away.

A press reaches only the chat of the presser's own session key (the router sees to that), so
a token is never looked up in another user's chat.

An approval shows exactly what it approves (`approval_view`): the whole command or the whole
diff, with whitespace runs, control characters, bidi overrides and invisible characters made
visible (`visible`: 3000 spaces as ``␠`` and the count, ``\x07``, ``<U+202E>``). What does
not fit one message goes first as a file, and the message with the buttons says "the full
command is in the file above"; the sender sends that message only once the file was
delivered. Approve is never offered on a shortened view.
"""

from __future__ import annotations

import collections
import hashlib
import os.path
import re
import secrets
import unicodedata
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING, Final, NamedTuple, TypeAlias

import msgspec
import trio

from actors.chat_progress import may_write
from orchestrator.channels import reply_nowait
from orchestrator.messages import ApprovalDecision, Button, TraceRecord
from orchestrator.redaction import REDACTED, TOKEN_PATTERN
from orchestrator.words import one_line

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from actors.chat_output import ChatOutput
    from actors.chat_progress import Progress
    from orchestrator.messages import ApprovalAsk, ApprovalRequest, InboundCallback, Keyboard

__all__ = [
    "APPROVAL_BUFFER",
    "APPROVAL_TEXT_LIMIT",
    "STALE_QUESTION",
    "ApprovalButton",
    "ApprovalView",
    "Approvals",
    "CancelButton",
    "ControlButton",
    "DiffButton",
    "EffortButton",
    "ModelButton",
    "OpenQuestions",
    "RerunButton",
    "SteerButton",
    "StopButton",
    "approval_data",
    "approval_view",
    "cancel_data",
    "decode_button",
    "diff_data",
    "effort_data",
    "folder_mark",
    "model_data",
    "rerun_data",
    "steer_data",
    "stop_data",
    "visible",
]

APPROVAL_BUFFER: Final = 4
"""Questions a request's workflow can relay before its Codex call waits for the chat to show
them (the chat shows each at once; Codex asks one question at a time per call)."""

REASON_LIMIT: Final = 300
"""Characters of the model's reason shown in an approval (it is the model's text, not what
is approved: the command or diff is shown whole)."""

APPROVAL_TEXT_LIMIT: Final = 2000
"""Characters of an approval message. The sender cuts a live message at 2,048 characters; an
approval longer than this sends its command or diff as a file instead, never cut."""

RUN_SHOWN_FROM: Final = 8
"""A run of this many of one whitespace or invisible character shows as the character, the
multiplication sign and the count: 3,000 spaces pushed ``; curl … | sh`` out of sight."""
NEWLINE_RUN_SHOWN_FROM: Final = 3
TIMES: Final = "\N{MULTIPLICATION SIGN}"
DIFF_CUT_AT: Final = 1_000_000
"""The backends keep at most this many characters of a diff in an `ApprovalAsk`
(``DIFF_IN_ASK_LIMIT`` of both wires): a diff this long may be cut, so it gets Deny only."""
SUBJECT_CHARS: Final = 200
"""Characters of the command or file list in the line that replaces a decided approval."""

OpenQuestions: TypeAlias = tuple[tuple[int, str], ...]
"""The open questions shown so far: (message id, text) each."""

SHOWN_BUFFER: Final = 2
"""Message ids of one question the sender may report before they are put on record (it
reports one each time it sends the question anew)."""

ENDED_KEPT: Final = 256
"""Ended questions a chat remembers, so a late press on one leaves its message as it is."""

STALE_QUESTION: Final = (
    "⌛ Closed: the bot stopped while this question was open, so it can't be answered any "
    "more. The request did not go on from here."
)
"""Added under a question shown before a restart when its button is pressed; the buttons go."""

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


class DiffButton(msgspec.Struct, frozen=True):
    """A press on "Show diff" under a result that changed files."""

    folder: str
    """`folder_mark` of the folder the result's changes were made in; empty on a button
    made before it carried one."""
    name: str = ""
    """That folder's name (its start, when long)."""


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


def diff_data(folder: str) -> str:
    """The callback data of the "Show diff" button under a result that changed `folder`:
    its mark and as much of its name as Telegram's 64 bytes leave room for."""
    head = f"df:{folder_mark(folder)}:"
    room = CALLBACK_DATA_LIMIT - len(head)
    name = PurePath(folder).name
    if len(name.encode()) > room:  # cut, and said to be: it names no folder as it stands
        name = name.encode()[: room - len("…".encode())].decode(errors="ignore") + "…"
    return head + name


CALLBACK_DATA_LIMIT: Final = 64
"""Bytes of a button's callback data Telegram takes."""


def folder_mark(folder: str) -> str:
    """A short mark of a working directory, for a button to name it within 64 bytes."""
    return hashlib.sha256(folder.encode()).hexdigest()[:12]


class SteerButton(msgspec.Struct, frozen=True):
    """A press on "Add to the running request" under a "Queued" notice."""

    token: str


class StopButton(msgspec.Struct, frozen=True):
    """A press on "Stop background commands" under a result."""

    token: str


class ModelButton(msgspec.Struct, frozen=True):
    """A press on a model of /model ("" for the profile's)."""

    model: str


class EffortButton(msgspec.Struct, frozen=True):
    """A press on a reasoning effort of /effort ("" for the model's default)."""

    effort: str


ControlButton: TypeAlias = SteerButton | StopButton | ModelButton | EffortButton
"""The buttons of the chat's controls (`actors.chat_model`, `chat_steer`, `chat_background`)."""


def steer_data(token: str) -> str:
    """The callback data of "Add to the running request" on the offer carrying `token`."""
    return f"st:{token}"


def stop_data(token: str) -> str:
    """The callback data of the Stop button under the result of the request `token`."""
    return f"bg:{token}"


def model_data(model: str) -> str:
    """The callback data of the button that picks `model` (at most 61 bytes of model id)."""
    return f"md:{model}"


def effort_data(effort: str) -> str:
    """The callback data of the button that picks `effort`."""
    return f"ef:{effort}"


def decode_button(
    data: str,
) -> CancelButton | ApprovalButton | RerunButton | DiffButton | ControlButton | None:
    """Read a button's callback data; None when it is none of ours."""
    kind, _, rest = data.partition(":")
    if kind == "df":
        mark, _, name = rest.partition(":")
        return DiffButton(mark, name)
    if kind == "cx":
        return CancelButton(rest)
    if kind == "rr":
        return RerunButton(rest)
    if kind == "st":
        return SteerButton(rest)
    if kind == "bg":
        return StopButton(rest)
    if kind == "md":
        return ModelButton(rest)
    if kind == "ef":
        return EffortButton(rest)
    if kind == "ap":
        token, _, choice = rest.partition(":")
        return ApprovalButton(token, _DECISIONS.get(choice))
    return None


def _char(ch: str) -> str:
    """One character as the user must see it."""
    if ch in " \n":
        return ch
    if ch == "\t":
        return "\\t"
    if ch == "\r":
        return "\\r"
    category = unicodedata.category(ch)
    if category == "Cc":
        return f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"<U+{ord(ch):04X}>"
    if category in ("Cf", "Zl", "Zp", "Co", "Cn", "Cs") or (category == "Zs" and ch != " "):
        return f"<U+{ord(ch):04X}>"  # bidi overrides, zero-width and odd spaces
    return ch


def visible(text: str) -> str:
    """`text` with nothing hidden: control characters as ``\x07`` (``\t``, ``\r``), bidi
    overrides, zero-width and other invisible characters as ``<U+202E>``, and long runs of
    one whitespace or invisible character as ``␠``, `TIMES` and the count (``⏎`` for blank
    lines)."""
    out: list[str] = []
    index, end = 0, len(text)
    while index < end:
        ch = text[index]
        stop = index
        while stop < end and text[stop] == ch:
            stop += 1
        run = stop - index
        shown = _char(ch)
        hidden = ch.isspace() or shown != ch
        if ch == "\n" and run >= NEWLINE_RUN_SHOWN_FROM:
            out.append(f"⏎{TIMES}{run}\n")
        elif hidden and ch != "\n" and run >= RUN_SHOWN_FROM:
            out.append(f"{'␠' if ch == ' ' else shown}{TIMES}{run}")
        else:
            out.append(shown * run)
        index = stop
    return "".join(out)


class ApprovalView(NamedTuple):
    """An approval as shown: the message with the buttons, and the file sent before it."""

    text: str
    document: bytes = b""
    document_name: str = ""
    document_caption: str = ""
    approvable: bool = True
    """False when the view cannot be whole (a cut diff): Deny is the only button."""


def approval_view(ask: ApprovalAsk, working_directory: str) -> ApprovalView:
    """The whole of what `ask` approves, made `visible`; as a file when it does not fit."""
    why = _why(ask) + _hidden(ask)
    if ask.kind == "exec":
        where = visible(ask.cwd or working_directory)
        command = visible(ask.command)
        text = f"Codex asks to run:\n$ {command}\nin {where}{why}"
        if len(text) <= APPROVAL_TEXT_LIMIT:
            return ApprovalView(text)
        size = f"{len(ask.command):,} characters"
        return ApprovalView(
            f"Codex asks to run a command of {size}: the full command is in the file "
            f"above.\nin {where}{why}\nRead it there before you approve.",
            document=f"{command}\n".encode(),
            document_name="command.txt",
            document_caption=f"The full command Codex asks to run ({size}; whitespace runs, "
            "control and invisible characters made visible)",
        )
    listing = (
        "\n".join(f"• {visible(_named(path, working_directory))}" for path in ask.changes)
        or "(no files listed)"
    )
    if len(ask.diff) >= DIFF_CUT_AT:
        return ApprovalView(
            f"Codex asks to change files:\n{listing}"[:APPROVAL_TEXT_LIMIT]
            + f"\nThe diff is too long to show whole (over {DIFF_CUT_AT:,} characters), so it "
            "cannot be approved here: deny it and ask Codex for smaller changes.",
            approvable=False,
        )
    diff = visible(_named_headers(ask.diff, ask.changes, working_directory))
    text = f"Codex asks to change files:\n{listing}{why}" + (f"\n\n{diff}" if diff else "")
    if len(text) <= APPROVAL_TEXT_LIMIT:
        return ApprovalView(text)
    count = f"{len(ask.changes)} file" + ("" if len(ask.changes) == 1 else "s")
    what = "diff" if diff else "list of files"
    head = f"Codex asks to change {count}: the full {what} is in the file above.{why}"
    text = f"{head}\n{listing}"
    if len(text) > APPROVAL_TEXT_LIMIT:
        text = f"{head} Every file is named there."
    return ApprovalView(
        f"{text}\nRead it there before you approve.",
        document=(diff or f"{listing}\n").encode(),
        document_name="changes.diff" if diff else "changes.txt",
        document_caption=f"The full {what} Codex asks to apply ({count})",
    )


def _why(ask: ApprovalAsk) -> str:
    """The model's reason for asking, as a line to add (at most `REASON_LIMIT` characters),
    or "" when the backend gave none."""
    reason = one_line(ask.reason, REASON_LIMIT)
    if not reason:
        return ""
    return f"\nWhy, in Codex's words: {visible(reason)}"


def _hidden(ask: ApprovalAsk) -> str:
    """A warning when part of what is approved will show as ``[REDACTED]``: every text a
    chat gets hides what is shaped like a bot token, so a command could hide a payload of
    that shape from the person approving it."""
    shown = " ".join((ask.command, ask.diff, *ask.changes))
    if TOKEN_PATTERN.search(shown) is None:
        return ""
    return (
        f"\n⚠️ Part of it is shaped like a Telegram bot token and shows as {REDACTED}: deny "
        "unless you know what it is."
    )


def _named(path: str, working_directory: str) -> str:
    """A file a patch would change, as the question names it: relative to the working
    directory when it lies inside (a phone shows little of a long absolute path), else whole
    and said to be outside, since that is the change to read twice. Decided on the path as
    written (``..`` resolved, links not followed: the sandbox judges the real write)."""
    root = os.path.normpath(working_directory)
    full = os.path.normpath(os.path.join(root, path))
    if os.path.isabs(root) and full != root and os.path.commonpath([full, root]) == root:
        return os.path.relpath(full, root)
    return f"{full} (outside the working directory)"


_MOVED: Final = re.compile(r" \((\w+) → (.+)\)")
"""The kind of a file header that moves the file (`orchestrator.wire.codex_mcp`)."""


def _named_headers(diff: str, changes: Sequence[str], working_directory: str) -> str:
    """`diff` with each file's header line (``--- PATH``, ``--- PATH (update)`` or
    ``--- PATH (update → NEW)``, as both wires write it) naming the files as the list above
    it does (`_named`); the rest, the changes themselves, exactly as the backend sent them."""
    paths = sorted(changes, key=len, reverse=True)  # "/w/a.py.bak" is not "/w/a.py" + ".bak"
    lines = diff.split("\n")
    for number, line in enumerate(lines):
        if not line.startswith("--- "):
            continue
        header = line[4:]
        for path in paths:
            if header == path or header.startswith(path + " ("):
                kind = header[len(path) :]
                if moved := _MOVED.fullmatch(kind):  # " (update → /w/new.py)"
                    kind = f" ({moved[1]} → {_named(moved[2], working_directory)})"
                lines[number] = f"--- {_named(path, working_directory)}{kind}"
                break
    return "\n".join(lines)


def _subject(ask: ApprovalAsk, working_directory: str) -> str:
    """What an approval was about, for the line that replaces its buttons (may be cut: it
    carries no button)."""
    files = (_named(path, working_directory) for path in ask.changes)
    subject = f"$ {ask.command}" if ask.kind == "exec" else ", ".join(files)
    shown = visible(subject) or "file changes"
    return shown if len(shown) <= SUBJECT_CHARS else shown[: SUBJECT_CHARS - 1] + "…"


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
    watching: trio.CancelScope | None = None
    """The task that puts its message on record (`Approvals._remember_shown`)."""
    decided: trio.Event = field(default_factory=trio.Event)

    def settle(self) -> None:
        """Decided (or ended): the request's progress no longer waits for this question."""
        self.decided.set()
        if self.watching is not None:
            self.watching.cancel()
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
                timers.start_soon(self._expire, token, question)
                timers.start_soon(self._remember_shown, question, shown_receive)
                self._on_asked()

    async def _remember_shown(self, question: _Open, shown: trio.MemoryReceiveChannel[int]) -> None:
        """Put the question's message on record each time the sender shows it, until it is
        decided."""
        with shown, trio.CancelScope() as watching:
            question.watching = watching
            if question.decided.is_set():
                return
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

    async def _expire(self, token: str, question: _Open) -> None:
        with trio.move_on_after(self._timeout):
            await question.decided.wait()
        if not question.decided.is_set():
            await self._decide(token, "denied", by="timeout")

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
        await self._out.answer(press, "Approved" if button.decision != "denied" else "Denied")
        await self._decide(button.token, button.decision, by="button")

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
        what = _subject(question.request.ask, question.working_directory)
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
            subject = _subject(question.request.ask, question.working_directory)
            await self._out.close(
                question.slot, f"⏹ Not answered before the request ended: {subject}"
            )
