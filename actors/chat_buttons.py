"""The chat's button presses: each callback query goes to the module that owns its button.

The chat actor (`actors.chat`) hands every press here, on its own task, so a press is
ordered with the chat's messages. The callback data codecs are `actors.button_data`'s
(Cancel, Approve/Deny, Run again, Show diff, Add to the running request, Stop, model and
effort), `actors.chat_sessions`' (a session to pick up) and `actors.chat_branches`' (the
confirmation of ``/branch rm``). A press none of them reads is answered "Unknown button." and
does nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final, assert_never

from actors import (
    chat_background,
    chat_branches,
    chat_commands,
    chat_diff,
    chat_model,
    chat_recovery,
    chat_sessions,
    chat_steer,
)
from actors.button_data import (
    ApprovalButton,
    CancelButton,
    DiffButton,
    EffortButton,
    ModelButton,
    RerunButton,
    SteerButton,
    StopButton,
    decode_button,
    folder_mark,
)

if TYPE_CHECKING:
    from actors.chat import Chat
    from orchestrator.messages import InboundCallback

__all__ = ["GONE", "on_press"]


GONE: Final = "That button is no longer on this message."
"""The answer to a press whose data the message does not show."""


async def on_press(chat: Chat, press: InboundCallback) -> None:
    """Carry out `press` (answering its callback query, always). A press whose data the
    message does not show (a button of an earlier keyboard of it, or data a client made up:
    Telegram passes on what the client sends) does nothing; when Telegram gave no buttons
    with the message (one too old to show), the owners' own checks decide."""
    if press.keyboard and press.data not in press.keyboard:
        await chat.out.answer(press, GONE)
        return
    session_thread = chat_sessions.decode_button(press.data)
    if session_thread is not None:
        await chat_sessions.pick(chat, press, session_thread)
        return
    if chat_branches.is_button(press.data):
        await chat_branches.press(chat, press)
        return
    button = decode_button(press.data)
    match button:
        case CancelButton():
            request = chat.request
            if request is not None and button.token == request.token:
                await chat.out.answer(press, "Cancelling…")
                await chat_commands.cancel(chat, "button")
            else:
                await chat.out.answer(press, "That request is no longer running.")
        case ApprovalButton():
            await chat.approvals.press(press, button)
        case RerunButton():
            await chat_recovery.run_again(chat, press, button.token)
        case DiffButton():
            await chat.out.answer(press, "")
            await _show_diff(chat, button)
        case SteerButton():
            await chat_steer.press(chat, press, button.token)
        case StopButton():
            await chat_background.press(chat, press)
        case ModelButton() | EffortButton():
            await chat_model.press(chat, press, button)
        case None:
            await chat.out.answer(press, "Unknown button.")
        case _:
            assert_never(button)


async def _show_diff(chat: Chat, button: DiffButton) -> None:
    """The changes of the folder the result was made in: when this user's requests here run
    in another one now (``/branch``, ``/profile``), its diff would pass for the result's, so
    say so, and where the result's were made."""
    folder = chat.profile.working_directory
    if button.folder and button.folder != folder_mark(folder):
        current = Path(folder).name
        made_in = f"in {button.name}" if button.name else "in another folder"
        if button.name == current:  # two folders of one name (a branch named as its repository)
            made_in = "in another folder of the same name"
        await chat.out.say(
            f"That result's changes were made {made_in}, and your requests here now run in "
            f"{current}. Switch back (/branch or /profile) to see them; /diff shows the "
            f"changes in {current}.",
            plain=True,
        )
        return
    await chat_commands.read_behind_the_inbox(chat, lambda: chat_diff.show_diff(chat))
