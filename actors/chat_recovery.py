"""A chat after a kill of the bot: the interrupted request is reported, never re-run by itself.

A file whose download a kill interrupted is reported too: the user is asked to send it again.

The session file records the running request (its prompt, progress message and open
approval questions) and any parts of a paste not started yet. At the next start `recover`
closes the stale progress message and questions (their buttons go: no answer can reach a
request that is gone), offers a "Run again" button with an unguessable token and waits
``batch_window`` again for the rest of a paste whose first parts were received (the rest is
often already waiting at Telegram), so it still runs as one request (an album's photos not
started yet are offered with "Run again");
`run_again` serves a press on that button once, and on the "Run now" button of what was
sent while the bot was offline (`actors.chat_late`). A request with photos runs again with them
while they are kept (`files.image_retention`), and only when the chat is idle (a photo cannot
wait in the text queue).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import trio

from actors import chat_batch, chat_files, chat_late, chat_running, chat_texts
from actors.button_data import rerun_data
from actors.chat_approvals import STALE_QUESTION
from orchestrator import disk
from orchestrator.messages import Button, TraceRecord
from orchestrator.session_store import RequestRecord

if TYPE_CHECKING:
    from actors.chat import Chat
    from orchestrator.messages import InboundCallback

__all__ = ["recover", "run_again"]


async def recover(chat: Chat) -> None:
    """At start: tell the user about a request a kill interrupted (its progress message
    closed, a "Run again" button; never run again by itself), and queue the parts of a
    paste that were received but not started."""
    state = chat.state
    if state.downloading:
        await chat.out.say(chat_texts.download_interrupted(state.downloading), plain=True)
        state = msgspec.structs.replace(state, downloading="")
    if state.batch_images and state.running is None:
        # an album still collecting: offered with "Run again", never run by itself (the
        # queue's HMAC does not cover its photos); it never ran, so no run failed
        images = state.batch_images
        prompt = chat_files.joined_prompt(state.batch, len(images))
        token = secrets.token_urlsafe(9)
        await chat.out.show(
            f"rerun-{token}",
            chat_texts.album_not_started(prompt, len(images)),
            ((Button(chat_texts.RUN_AGAIN, rerun_data(token)),),),
        )
        state = msgspec.structs.replace(
            state,
            interrupted=RequestRecord(prompt=prompt, token=token, images=images),
            batch=(),
            batch_images=(),
        )
    if state.batch and chat.config.sessions.batch_window > 0:
        # The first parts of a paste Telegram split: the rest is often already waiting at
        # Telegram and comes with the first updates. Wait for it again, as before the stop,
        # so the paste runs as one request, not as two.
        chat.batch = list(state.batch)
        chat.batch_due = trio.current_time() + chat.config.sessions.batch_window
    elif state.batch:
        state = msgspec.structs.replace(
            state, queue=(*state.queue, "\n\n".join(state.batch)), batch=()
        )
    running = state.running
    if running is None:
        if state is not chat.state:
            chat.state = state
            await chat.save()
        return
    token = secrets.token_urlsafe(9)
    if running.live_message_id is not None:
        await chat.out.close(
            "interrupted-live", chat_texts.STALE_PROGRESS, message_id=running.live_message_id
        )
    for question in running.questions:  # open when the bot was killed: no answer can come
        await chat.out.close(
            f"stale-{question.message_id}",
            f"{question.text}\n\n{STALE_QUESTION}",
            message_id=question.message_id,
        )
    await chat.out.show(
        f"rerun-{token}",
        chat_texts.interrupted_by_a_stop(running.prompt),
        ((Button(chat_texts.RUN_AGAIN, rerun_data(token)),),),
    )
    offered = RequestRecord(prompt=running.prompt, token=token, images=running.images)
    if running.counted:  # a stop told the user and counted it: only the offer is new
        chat.state = msgspec.structs.replace(state, running=None, interrupted=offered)
        await chat.save()
        return
    counters = state.counters
    chat.state = msgspec.structs.replace(
        state,
        running=None,
        interrupted=offered,
        counters=msgspec.structs.replace(
            counters, runs=counters.runs + 1, failures=counters.failures + 1
        ),
    )
    await chat.save()
    chat.out.trace(
        TraceRecord(
            event="run_end",
            outcome="failed",
            detail="interrupted: the bot was killed while it ran",
            preview=chat.preview(running.prompt),
        )
    )


async def run_again(chat: Chat, press: InboundCallback, token: str) -> None:
    """A press on "Run again" (a request a kill interrupted) or "Run now" (what was sent
    while the bot was offline: `actors.chat_late`): the offer runs (or is queued), once."""
    state = chat.state
    interrupted, late = state.interrupted, state.late
    if interrupted is not None and secrets.compare_digest(interrupted.token, token):
        offered = interrupted
        chat.state = msgspec.structs.replace(state, interrupted=None)
        await chat.out.answer(press, chat_texts.RUN_AGAIN_STARTED)
        closing = chat_texts.interrupted_run_again(offered.prompt)
        await chat.out.close(f"rerun-{token}", closing, message_id=press.message_id)
    elif late is not None and secrets.compare_digest(late.token, token):
        offered = RequestRecord(
            prompt=chat_files.joined_prompt(late.texts, len(late.images)),
            token=token,
            images=late.images,
        )
        chat.state = msgspec.structs.replace(state, late=None)
        await chat.out.answer(press, chat_texts.RUN_NOW_STARTED)
        closing = chat_texts.late_run_now(late)
        await chat.out.close(chat_late.slot(token), closing, message_id=press.message_id)
    else:
        await chat.out.answer(press, chat_texts.RUN_AGAIN_GONE)
        return
    if offered.images:
        await _run_again_with_images(chat, offered)
    elif chat.idle():
        await chat_running.start_request(chat, offered.prompt)
    else:
        await chat.save()
        await chat_batch.queue_text(chat, offered.prompt)


async def _run_again_with_images(chat: Chat, offered: RequestRecord) -> None:
    images = Path(chat.config.state_dir) / "images"
    kept = await disk.run_sync(_all_kept, offered.images, images)
    await chat.save()
    if not kept:
        await chat.out.say(chat_texts.IMAGES_GONE, plain=True)
    elif not chat.idle():
        await chat.out.say(chat_files.IMAGE_WHILE_BUSY, plain=True)
    else:
        await chat_running.start_request(chat, offered.prompt, images=offered.images)


def _all_kept(paths: tuple[str, ...], images: Path) -> bool:
    """Whether every photo is still kept, in the bot's own folder (a session file names it)."""
    return all(Path(p).parent == images and Path(p).is_file() for p in paths)
