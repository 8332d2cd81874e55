"""Prompts sent while the bot was offline: offered with a button, never run by themselves.

The poller marks a message late (`InboundMessage.late`) when it was sent while the bot could
not fetch updates (stopped, or cut off from Telegram) and waited there longer than
``sessions.stale_after`` (`actors.telegram_poller`). What was asked hours ago ("deploy it",
"drop the table") may no longer be wanted, and the user is not watching the chat when the
bot comes back: so its prompt is not run. It joins the chat's late offer
(`SessionState.late`): one message that quotes every late prompt of the chat, with a
"▶ Run now" button. A press runs them as one request, or queues them behind the running one
(`actors.chat_recovery.run_again`, which serves both kinds of offer); the offer is on record
in the session file, so its button still works after a restart.

Only what would start Codex waits for the press. Commands (``/cancel``, ``/new``, ``/mode``)
are served as usual, an edit is answered as usual, and a file still lands in the inbox (the
user sent it; saving it runs nothing): only its caption waits. A photo is kept as any photo
is (``files.image_retention``) and goes with the prompt when the button is pressed.

An offer holds at most ``sessions.queue_limit`` messages, as a queued prompt does; the
ones past it are counted, not kept, and the offer says so (send them again).

The offer is a live message: the sender folds a burst of late messages (a phone that sent
five while the bot was down) into one message edited to its last text, not five.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import msgspec

from actors import chat_texts
from actors.button_data import rerun_data
from orchestrator.messages import Button, TraceRecord
from orchestrator.session_store import LateRecord

if TYPE_CHECKING:
    from actors.chat import Chat
    from orchestrator.messages import InboundMessage

__all__ = ["offer", "slot"]


async def offer(
    chat: Chat, message: InboundMessage, prompt: str, *, images: tuple[str, ...] = ()
) -> None:
    """Add the late `message` (its `prompt` as Codex would get it, "" for a photo without
    a caption, and its stored `images`) to the chat's offer, and show the offer."""
    held = chat.state.late or LateRecord(token=secrets.token_urlsafe(9), first_sent=message.date)
    if held.messages >= chat.config.sessions.queue_limit:  # as many as a queued prompt joins
        held = msgspec.structs.replace(held, dropped=held.dropped + 1)
        outcome = "late_dropped"
    else:
        held = msgspec.structs.replace(
            held,
            texts=(*held.texts, prompt) if prompt else held.texts,
            images=(*held.images, *images),
            first_sent=min(held.first_sent, message.date),
            messages=held.messages + 1,
        )
        outcome = "late_offered"
    chat.state = msgspec.structs.replace(chat.state, late=held)
    chat.out.trace(
        TraceRecord(
            event="update",
            update_id=message.update_id,
            outcome=outcome,
            detail=f"waited {message.late} s; {held.messages} in the offer",
            preview=chat.preview(prompt) if prompt else None,
        )
    )
    # How long ago the first was sent, as of this message's arrival (the chat keeps no
    # clock of Telegram's: this message's date plus its wait is "now").
    ago = message.date + message.late - held.first_sent
    await chat.out.show(
        slot(held.token),
        chat_texts.late_offer(held, ago=ago),
        ((Button(chat_texts.RUN_NOW, rerun_data(held.token)),),),
    )


def slot(token: str) -> str:
    """The live message of the offer with `token`."""
    return f"late-{token}"
