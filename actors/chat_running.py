"""The chat's running request: how it starts, what is on record while it runs, how it ends.

`actors.chat_request` serves one request (the workflow, its progress message, the result);
this module is the chat's side around it. A prompt becomes a `Request` that follows the
chat's or topic's binding and goes on record as ``running`` in one save before Codex sees it
(`start_request`), the next queued prompt starts when the chat is free (`start_next_queued`),
the request's progress message and open approval questions are kept on that record
(`remember_live`, `remember_questions`) so the start after a kill can close them, and its
outcome is applied to the session, shielded (`end_request`, `settle`; the pure half is
`actors.chat_settle`). `Chat.serve`, the child task a request runs in, stays a method of the
chat: ``actors.chat.Chat.serve`` is the task name ``bench/task_steps.py`` reports. The state
lives on the `Chat`; this module is what changes it for its request.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import msgspec
import trio

from actors import chat_sessions, chat_steer, chat_texts, chat_topics
from actors.chat_request import (
    FINISH_GRACE,
    CancelledByUser,
    Completed,
    Request,
    stopped_outcome,
)
from actors.chat_settle import settled
from orchestrator.session_store import QuestionRecord, RequestRecord

if TYPE_CHECKING:
    from actors.chat import Chat
    from actors.chat_approvals import OpenQuestions
    from actors.chat_request import RequestOutcome

__all__ = [
    "end_request",
    "remember_live",
    "remember_questions",
    "settle",
    "start_next_queued",
    "start_request",
    "stop_waiting_for_answers",
]


async def start_request(
    chat: Chat, prompt: str, *, queue: tuple[str, ...] | None = None, images: tuple[str, ...] = ()
) -> None:
    """Start serving `prompt`; the session file says it runs (and, with `queue`, that it
    left the queue) in one write before Codex sees it, so a kill leaves it on record."""
    chat.requests_started += 1
    if chat.steer_offers:
        await chat_steer.withdraw(chat)  # their request is over
    pasted_secret, prompt = chat.for_codex(prompt)
    request = Request(
        number=chat.requests_started,
        prompt=prompt,
        mode=chat.state.mode,
        token=secrets.token_urlsafe(9),
        started=trio.current_time(),
        images=images,
        quoting=chat.out.quoting,
    )
    chat.request = request  # before any wait: no second request starts meanwhile
    if not await chat_topics.follow(chat):  # the user may not run here (they were told)
        chat.request = None
        if chat.state.queue or chat.state.batch or chat.state.batch_images:
            # nothing waiting could run here either
            chat.state = msgspec.structs.replace(chat.state, queue=(), batch=(), batch_images=())
            await chat.save()
        return
    request.mode = chat.state.mode  # following a binding may have switched the profile
    chat.state = msgspec.structs.replace(
        chat.state,
        running=RequestRecord(prompt=prompt, images=images),
        batch=(),
        batch_images=(),
        queue=chat.state.queue if queue is None else queue,
    )
    await chat.save()
    if pasted_secret:
        await chat.out.say(chat_texts.SECRET_IN_PROMPT, plain=True)
    chat.nursery.start_soon(chat.serve, request)


async def start_next_queued(chat: Chat) -> None:
    if chat.request is not None or not chat.state.queue or chat.closing:
        return
    prompt, *rest = chat.state.queue
    if not rest:
        chat.joinable = False
        chat.joined = 0
    await start_request(chat, prompt, queue=tuple(rest))


async def remember_live(chat: Chat, request: Request, message_id: int) -> None:
    """The request's progress message is `message_id`: on record, to close it after a kill."""
    running = chat.state.running
    if chat.request is request and running is not None:
        chat.state = msgspec.structs.replace(
            chat.state,
            running=msgspec.structs.replace(running, live_message_id=message_id),
        )
        await chat.save()


async def remember_questions(chat: Chat, questions: OpenQuestions) -> None:
    """The running request's approval questions now open: on record, so that the start
    after a kill takes their buttons away (`actors.chat_recovery`)."""
    running = chat.state.running
    if chat.request is None or running is None:
        return
    records = tuple(QuestionRecord(message_id=m, text=text) for m, text in questions)
    if records != running.questions:
        running = msgspec.structs.replace(running, questions=records)
        chat.state = msgspec.structs.replace(chat.state, running=running)
        await chat.save()


def stop_waiting_for_answers(chat: Chat) -> None:
    """Once the inbox has ended (the bot is stopping) no button press can reach this
    chat: a request that waits for an approval is interrupted at once, as at the end of
    the drain grace, instead of holding the stop for the whole grace (a minute by
    default, for an answer that cannot come)."""
    if chat.closing and chat.request is not None and chat.request.progress.asking:
        chat.request.interrupt()


async def end_request(chat: Chat, request: Request, outcome: RequestOutcome | None) -> None:
    """Settle `request` (stopped from outside when `outcome` is None), shielded."""
    ended = outcome if outcome is not None else stopped_outcome(request)
    # A queued prompt starts at once: its save (before Codex sees it) carries this
    # request's end too, one fsync'd write instead of two (bench/scale.py).
    follows = outcome is not None and bool(chat.state.queue) and not chat.closing
    with trio.move_on_after(FINISH_GRACE) as cleanup:
        cleanup.shield = True
        await settle(chat, request, ended, save=not follows)
        chat.request = None
        if follows:
            await start_next_queued(chat)
    chat.request = None if chat.request is request else chat.request
    request.settled.set()


async def settle(
    chat: Chat, request: Request, outcome: RequestOutcome, *, save: bool = True
) -> None:
    """Apply how a request ended to the session, save it (unless the caller's next save
    carries it), and trace the end."""
    chat.state, end = settled(chat.state, request, outcome)
    if isinstance(outcome, Completed | CancelledByUser):  # a cancel may keep its thread
        chat_sessions.remember(chat, request.prompt)
    if save:
        await chat.save()
    chat.out.trace(
        msgspec.structs.replace(
            end,
            mode=request.mode,
            profile=chat.state.profile,
            duration_ms=round(outcome.elapsed * 1000, 1),
        )
    )
