"""The Stop button under a result whose turn left commands running (``codex app-server``).

After every completed turn the app-server edge lists the thread's background terminals (a
command handed back to the model after about 10 s keeps running when the turn completes) and
the job says which (``JobDone.background``). Only the developer's are left running, as its
work may need them (a server to try); the result names them (`background_note`) and carries
a button, "⏹ Stop background commands": a press stops what the conversation's thread left
running (``thread/backgroundTerminals/clean`` through the pool) and answers with the
commands it stopped. A stale press gets a plain answer: nothing ran any more (stopped by
``/cancel``, ``/new`` or an earlier press), or the worker that ran them is gone (its whole
tree was killed with it). While a request runs the button waits: its own commands would go too.

Once what it stops is stopped (a press, ``/cancel``, ``/new``, a switch of profile, branch or
session), the conversation's Stop buttons go from their results, which keep their other
buttons, and their note says the commands were stopped (`stopped_note`;
`forget_stop_buttons`). Best effort: the results this chat actor sent
(`actors.chat_output.KEYBOARDS_KEPT`; the actor ends after ``sessions.idle_ttl`` or with the
bot); an older one keeps its button, whose press then says nothing runs any more.

What the selector, the planner and the reviewer leave running is stopped as soon as their
call ends (`actors.role_caller`): their threads are never continued, so nothing could stop it
later but a restart of their worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from actors.button_data import stop_data
from orchestrator.messages import Button, TraceRecord

if TYPE_CHECKING:
    from collections.abc import Sequence

    from actors.chat import Chat
    from orchestrator.messages import InboundCallback, Keyboard

__all__ = [
    "STOP_BUTTON",
    "background_note",
    "forget_stop_buttons",
    "press",
    "stop_keyboard",
    "stop_slot",
    "stopped_note",
    "stopped_text",
]

STOP_BUTTON: Final = "⏹ Stop background commands"

NOTHING_LEFT: Final = "Nothing of this conversation runs in the background any more."

WORKER_GONE: Final = (
    "Those commands are no longer running: the Codex worker that ran them was restarted, "
    "and they stopped with it."
)

BUSY: Final = "A request is running now; press Stop again once it ends, or /cancel it."


_SLOT_PREFIX: Final = "stop-"


def background_note(commands: Sequence[str]) -> str:
    """The lines added to a result whose developer turn left `commands` running."""
    them = "it" if len(commands) == 1 else "them"
    return (
        f"\n\n⏳ Still running in the background: {_named(commands)}. The Stop button or "
        f"/cancel stops {them}; so do /new, a switch of profile, branch or session, and a "
        "restart of the bot."
    )


def stopped_note(commands: Sequence[str]) -> str:
    """What `background_note` reads once its Stop button went: the commands were stopped
    (a press, /cancel, /new, a switch) or ended with their worker."""
    return f"\n\n⏹ Left running in the background, and stopped since: {_named(commands)}."


def _named(commands: Sequence[str]) -> str:
    shown = ", ".join(f"`{command[:80]}`" for command in commands[:3])
    return shown + (f" and {len(commands) - 3} more" if len(commands) > 3 else "")


def stop_keyboard(token: str) -> Keyboard:
    """The Stop button under the result of the request `token`."""
    return ((Button(STOP_BUTTON, stop_data(token)),),)


def stop_slot(token: str) -> str:
    """The `keyboard_slot` of the result of the request `token` when it has a Stop button."""
    return f"{_SLOT_PREFIX}{token}"


async def forget_stop_buttons(chat: Chat) -> None:
    """Take the Stop button away from every result of this chat that has one (what it
    stops was stopped); their other buttons stay."""
    for slot, keyboard in list(chat.out.keyboards.items()):
        if slot.startswith(_SLOT_PREFIX):
            stop = stop_data(slot.removeprefix(_SLOT_PREFIX))
            kept = tuple(row for row in keyboard if all(b.callback_data != stop for b in row))
            await chat.out.change_buttons(slot, kept)


async def press(chat: Chat, pressed: InboundCallback) -> None:
    """Stop what the conversation's thread left running and say what that was."""
    if chat.request is not None:
        await chat.out.answer(pressed, "A request is running.")
        await chat.out.say(BUSY, plain=True)
        return
    thread = chat.state.developer_thread_id
    if thread is None:
        await chat.out.answer(pressed, "Nothing to stop.")
        await chat.out.say(NOTHING_LEFT, plain=True)
        await forget_stop_buttons(chat)
        return
    await chat.out.answer(pressed, "Stopping…")
    stopped = await chat.deps.pool.stop_background(thread, chat.state.developer_worker_id)
    chat.out.trace(
        TraceRecord(
            event="command",
            command="stop",
            detail="worker gone" if stopped is None else f"{len(stopped)} stopped",
        )
    )
    if stopped is None:
        await chat.out.say(WORKER_GONE, plain=True)
    elif not stopped:
        await chat.out.say(NOTHING_LEFT, plain=True)
    else:
        await chat.out.say(stopped_text("⏹ Stopped:", stopped), plain=True)
    await forget_stop_buttons(chat)  # the answer first: the edit is only tidying up


def stopped_text(head: str, stopped: tuple[str, ...]) -> str:
    """`head`, then the stopped commands, one per line (the first 10)."""
    shown = "\n".join(f"$ {command}" for command in stopped[:10])
    more = f"\n…and {len(stopped) - 10} more" if len(stopped) > 10 else ""
    return f"{head}\n{shown}{more}"
