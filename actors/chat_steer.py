"""Adding a queued message to the running request (steer), on the user's press.

A message sent while a request runs waits in the queue (`actors.chat`), and the queue stays
the default. On ``codex app-server`` in single mode the "Queued" notice carries a button,
"📨 Add to the running request": a press sends the queued message (with anything that joined
it since) into the running Codex turn with ``turn/steer`` (the edge passes that turn's id as
``expectedTurnId``) and takes it out of the queue. If the request ended meanwhile, or its
turn did (the server refuses a steer on a turn that moved on), the message stays queued and
runs next as usual, and the user is told so. On the MCP backend, and in plan mode (the
message would land in a reviewer's or planner's turn), there is no button.

The notice with the button is a live message (slot ``steer-{token}``), so the answer replaces
it and takes the button away; so does the start of the next request (`withdraw`). The offers
live in memory only: after a restart a press is answered as stale. The message leaves the
queue before the steer is sent, so a request that ends during the steer cannot start it a
second time; it goes back if the steer fails.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Final

import msgspec

from actors import chat_running, chat_texts
from actors.button_data import steer_data
from orchestrator.messages import Button, TraceRecord

if TYPE_CHECKING:
    from actors.chat import Chat
    from orchestrator.messages import InboundCallback

__all__ = ["ADD_BUTTON", "press", "say_queued", "withdraw"]

ADD_BUTTON: Final = "📨 Add to the running request"

OFFERS_KEPT: Final = 16
"""Offers remembered per chat (older buttons are answered as stale)."""


def _offers(chat: Chat) -> dict[str, tuple[str, int]]:
    """The chat's open offers: button token → (request token, queue index)."""
    return chat.steer_offers


async def say_queued(chat: Chat, position: int) -> None:
    """The one "Queued" notice for the prompt at `position` (1-based) of the queue; with the
    button where the running request can take it."""
    request = chat.request
    text = chat_texts.queued(position)
    if request is None or request.mode != "single" or chat.config.codex.backend != "app-server":
        await chat.out.say(text, plain=True)
        return
    token = secrets.token_urlsafe(9)
    offers = _offers(chat)
    for stale in list(offers)[: max(0, len(offers) - OFFERS_KEPT + 1)]:
        del offers[stale]
    offers[token] = (request.token, position - 1)
    await chat.out.show(f"steer-{token}", text, ((Button(ADD_BUTTON, steer_data(token)),),))


async def withdraw(chat: Chat) -> None:
    """A new request starts: the offers made to the one before are over (their buttons go)."""
    offers = _offers(chat)
    for token in list(offers):
        del offers[token]
        await chat.out.close(f"steer-{token}", WITHDRAWN)


async def press(chat: Chat, pressed: InboundCallback, token: str) -> None:
    """A press on the button of the offer `token`."""
    slot = f"steer-{token}"
    offer = _offers(chat).pop(token, None)
    request = chat.request
    if offer is None:
        # Withdrawn when the request it was for ended (the message then runs as the next
        # one); in a group a press reaches the presser's own session, where another
        # member's offer is not found either.
        gone = "That message is no longer waiting: it was added, or runs on its own."
        if pressed.chat_id < 0:
            gone = "That button is not yours, or its message is no longer waiting."
        await chat.out.answer(pressed, gone)
        if pressed.chat_id > 0:  # still showing its button: an offer from before a restart
            await chat.out.close(slot, WITHDRAWN, message_id=pressed.message_id)
        return
    request_token, index = offer
    if request is None or request.token != request_token or index >= len(chat.state.queue):
        await chat.out.answer(pressed, "That request already ended.")
        await chat.out.close(slot, ENDED_ALREADY)
        return
    queue = list(chat.state.queue)
    text = queue.pop(index)
    joinable, joined = chat.joinable, chat.joined
    if index == len(queue):  # it was the last entry: what comes next starts a new one
        chat.joinable, chat.joined = False, 0
    chat.state = msgspec.structs.replace(chat.state, queue=tuple(queue))
    await chat.save()
    pasted_secret, given = chat.for_codex(text)
    result = await chat.deps.pool.steer(chat.conversation, given)
    chat.out.trace(
        TraceRecord(event="queued", outcome=f"steer {result}", preview=chat.preview(text))
    )
    if result == "added":
        await chat.out.answer(pressed, "Added.")
        await chat.out.close(slot, ADDED)
        if pasted_secret:
            await chat.out.say(chat_texts.SECRET_IN_PROMPT, plain=True)
        return
    # Back where it was: it runs next, as if never pressed.
    queue = list(chat.state.queue)
    queue.insert(min(index, len(queue)), text)
    if index == len(chat.state.queue) and chat.request is request:
        chat.joinable, chat.joined = joinable, joined
    chat.state = msgspec.structs.replace(chat.state, queue=tuple(queue))
    await chat.save()
    await chat.out.answer(pressed, "Not added.")
    await chat.out.close(slot, ENDED_BEFORE if result == "ended" else UNSUPPORTED)
    await chat_running.start_next_queued(chat)  # the request may have ended during the steer


ADDED: Final = "📨 Added to the running request: Codex reads it in the turn it is working on."

ENDED_BEFORE: Final = (
    "Queued: the running request was not in a Codex turn that could take your message (its "
    "turn had ended, or had not started yet), so it stays queued and runs next."
)

ENDED_ALREADY: Final = (
    "Queued: that message is no longer waiting behind the request (it ran, or was dropped)."
)

WITHDRAWN: Final = (
    "Queued: the request it could join has ended, so it runs as a request of its own."
)

UNSUPPORTED: Final = (
    'Queued: adding to a running request needs backend = "app-server"; your message runs next.'
)
