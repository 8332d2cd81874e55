"""The Stop button under a result whose turn left commands running (``codex app-server``).

After every completed turn the app-server edge lists the thread's background terminals (a
command handed back to the model after about 10 s keeps running when the turn completes) and
the answer names them (``JobDone.background``). The result then carries a button, "⏹ Stop
background commands": a press stops what the conversation's thread left running
(``thread/backgroundTerminals/clean`` through the pool) and answers with the commands it
stopped. A stale press gets a plain answer: nothing ran any more (stopped by ``/cancel``,
``/new`` or an earlier press), or the worker that ran them is gone (its whole tree was
killed with it). While a request runs the button waits: its own commands would go too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from actors.chat_approvals import stop_data
from orchestrator.messages import Button, TraceRecord

if TYPE_CHECKING:
    from actors.chat import Chat
    from orchestrator.messages import InboundCallback, Keyboard

__all__ = ["STOP_BUTTON", "press", "stop_keyboard", "stopped_text"]

STOP_BUTTON: Final = "⏹ Stop background commands"

NOTHING_LEFT: Final = "Nothing of this conversation runs in the background any more."

WORKER_GONE: Final = (
    "Those commands are no longer running: the Codex worker that ran them was restarted, "
    "and they stopped with it."
)

BUSY: Final = "A request is running now; press Stop again once it ends, or /cancel it."


def stop_keyboard(token: str) -> Keyboard:
    """The Stop button under the result of the request `token`."""
    return ((Button(STOP_BUTTON, stop_data(token)),),)


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


def stopped_text(head: str, stopped: tuple[str, ...]) -> str:
    """`head`, then the stopped commands, one per line (the first 10)."""
    shown = "\n".join(f"$ {command}" for command in stopped[:10])
    more = f"\n…and {len(stopped) - 10} more" if len(stopped) > 10 else ""
    return f"{head}\n{shown}{more}"
