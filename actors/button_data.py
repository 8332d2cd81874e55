"""The callback data of the chat's buttons: what each button carries, and reading it back.

Telegram gives a pressed button's callback data back as it was sent, at most 64 bytes
(`CALLBACK_DATA_LIMIT`), and a client can send any data it likes: `decode_button` reads
ours and returns None for the rest. Each kind is two letters and a colon:

- ``cx:{token}`` cancels the request whose Cancel button carries `token`;
- ``ap:{token}:{a|s|d}`` approves, approves for the session, or denies the question carrying
  `token` (`actors.chat_approvals`);
- ``rr:{token}`` runs again the request a kill interrupted (`actors.chat_recovery`);
- ``df:{mark}:{name}`` shows the working directory's diff (``/diff``; it carries no token: it
  only reads, and only in the presser's chat), `folder_mark` naming the folder;
- ``st:{token}`` adds the queued message offered with `token` to the running request
  (`actors.chat_steer`);
- ``bg:{token}`` stops the commands the result of the request `token` left running
  (`actors.chat_background`);
- ``md:{model}`` and ``ef:{effort}`` pick a model and a reasoning effort for the chat
  (`actors.chat_model`).

Tokens are unguessable (`secrets`), made by the module that owns the button. The data of a
session to pick up and of ``/branch rm``'s confirmation belong to `actors.chat_sessions` and
`actors.chat_branches`.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePath
from typing import Final, TypeAlias

import msgspec

from orchestrator.codex_runs import ApprovalDecision

__all__ = [
    "CALLBACK_DATA_LIMIT",
    "ApprovalButton",
    "CancelButton",
    "ControlButton",
    "DiffButton",
    "EffortButton",
    "ModelButton",
    "RerunButton",
    "SteerButton",
    "StopButton",
    "approval_data",
    "cancel_data",
    "decode_button",
    "diff_data",
    "effort_data",
    "folder_mark",
    "model_data",
    "rerun_data",
    "steer_data",
    "stop_data",
]

_CHOICES: Final[dict[ApprovalDecision, str]] = {
    "approved": "a",
    "approved_for_session": "s",
    "denied": "d",
}
_DECISIONS: Final[dict[str, ApprovalDecision]] = {code: name for name, code in _CHOICES.items()}


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
