"""What an approval question shows: exactly what it approves, nothing hidden.

An approval shows the whole command or the whole diff (`approval_view`), with whitespace
runs, control characters, bidi overrides and invisible characters made visible (`visible`:
3000 spaces as ``␠`` and the count, ``\x07``, ``<U+202E>``). What does not fit one message
goes first as a file, and the message with the buttons says "the full command is in the file
above"; the sender sends that message only once the file was delivered. Approve is never
offered on a shortened view. Files are named relative to the working directory when they lie
inside it, and said to be outside otherwise.

The questions themselves, their buttons and presses, are `actors.chat_approvals`'.
"""

from __future__ import annotations

import os.path
import posixpath
import re
import unicodedata
from typing import TYPE_CHECKING, Final, NamedTuple

from orchestrator.redaction import REDACTED, TOKEN_PATTERN
from orchestrator.words import DRAWN_AS_NOTHING, one_line

if TYPE_CHECKING:
    from collections.abc import Sequence

    from orchestrator.codex_runs import ApprovalAsk

__all__ = [
    "APPROVAL_TEXT_LIMIT",
    "DIFF_CUT_AT",
    "TIMES",
    "ApprovalView",
    "approval_view",
    "subject",
    "visible",
]

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


def _char(ch: str) -> str:
    """One character as the user must see it."""
    if ch in " \n":
        return ch
    if ch == "\t":
        return "\\t"
    if ch == "\r":
        return "\\r"
    if ch in DRAWN_AS_NOTHING:  # letters and marks drawn as nothing
        return f"<U+{ord(ch):04X}>"
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
    why = _hidden(ask) + _why(ask)  # the warning first: nothing may push it out of view
    if ask.kind == "exec":
        where = visible(_folder(ask.cwd or working_directory))
        command = visible(ask.command)
        text = f"Codex asks to run:\n$ {command}\nin {where}{why}"
        if len(text) <= APPROVAL_TEXT_LIMIT:
            return ApprovalView(text)
        size = f"{len(ask.command):,} characters"
        head = f"Codex asks to run a command of {size}: the full command is in the file above."
        text = f"{head}\nin {where}{why}\nRead it there before you approve."
        if len(text) > APPROVAL_TEXT_LIMIT:  # a folder's name as long as the message: the
            # file names it too, whole, and the message must not be cut under its buttons
            text = f"{head}{why}\nThe folder it runs in is named there. Read it before you approve."
        return ApprovalView(
            text,
            document=f"{command}\n\nin {where}\n".encode(),
            document_name="command.txt",
            document_caption=f"The full command Codex asks to run ({size}; whitespace runs, "
            "control and invisible characters made visible), and where",
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
    reason = visible(one_line(ask.reason, REASON_LIMIT))
    if not reason:
        return ""
    if len(reason) > REASON_LIMIT:  # made visible, one character can become nine
        reason = reason[:REASON_LIMIT] + "…"
    return f"\nWhy, in Codex's words: {reason}"


def _folder(path: str) -> str:
    """A working directory as the system will take it: ``/w/./../x`` is ``/x`` (its ``..``
    and ``.`` are what a padded name hides past the edge of the screen)."""
    return posixpath.normpath(path) if path.startswith("/") else path


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


def subject(ask: ApprovalAsk, working_directory: str) -> str:
    """What an approval was about, for the line that replaces its buttons (may be cut: it
    carries no button)."""
    files = (_named(path, working_directory) for path in ask.changes)
    subject = f"$ {ask.command}" if ask.kind == "exec" else ", ".join(files)
    shown = visible(subject) or "file changes"
    return shown if len(shown) <= SUBJECT_CHARS else shown[: SUBJECT_CHARS - 1] + "…"
