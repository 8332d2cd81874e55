"""A chat's messages before they run: the parts of a split paste, an album, and the prompt
queued behind the running request.

An idle chat starts a text at once (`collect`), unless it is as long as Telegram's limit: a
client split a longer paste there, so it waits ``sessions.batch_window`` for the rest, each
such part waiting again, and the parts run as one prompt. An album's photos or files wait
for each other (`collect_album`, `actors.chat_files`). Texts that arrive while a request runs
join one queued prompt (`queue_text`: at most ``queue_limit`` of them, one "Queued" notice),
which runs next. What is collected is on record in the session file (``batch``,
``batch_images``, ``queue``) before the next update is taken, so a kill loses no part
(`actors.chat_recovery` takes it up after a restart). The state lives on the `Chat`; this
module is what changes it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

import msgspec
import trio

from actors import chat_files, chat_running, chat_steer, chat_texts
from orchestrator.messages import TraceRecord

if TYPE_CHECKING:
    from actors.chat import Chat

__all__ = [
    "collect",
    "collect_album",
    "drop_batch",
    "flush_batch",
    "is_split_part",
    "queue_text",
]

TELEGRAM_TEXT_LIMIT: Final = 4096
"""Characters of one Telegram message: clients split a longer paste into parts this long."""

SPLIT_SLACK: Final = 64
"""A part may be this much shorter than the limit (clients split at a space or line end)."""


def is_split_part(text: str) -> bool:
    """True when `text` is (nearly) as long as a Telegram message can be: a client may have
    split a longer paste there, and the rest follows in a moment. UTF-16 units, as Telegram
    counts them."""
    return len(text.encode("utf-16-le")) // 2 >= TELEGRAM_TEXT_LIMIT - SPLIT_SLACK


async def collect(chat: Chat, text: str, *, split_part: bool) -> None:
    """An idle chat: start at once, unless the user's text looks like a part of a long
    paste that Telegram split at its length limit (`split_part`); then wait
    ``batch_window`` for the rest (each part at the limit waits again), and run the parts
    as one prompt."""
    chat.batch.append(text)
    window = chat.config.sessions.batch_window
    if chat.album is not None:  # an album is being collected: the text goes with it
        chat.album_captioned = True
        chat.state = msgspec.structs.replace(chat.state, batch=tuple(chat.batch))
        await chat.save()
        return
    if window > 0 and split_part:
        chat.batch_due = trio.current_time() + window
        # On disk before the next update is taken: a kill now loses no part.
        chat.state = msgspec.structs.replace(chat.state, batch=tuple(chat.batch))
        await chat.save()
        return
    await flush_batch(chat)


async def queue_text(chat: Chat, text: str) -> None:
    """A request is running: `text` joins the prompt that runs next (one notice for it)."""
    queue = list(chat.state.queue)
    joining = bool(queue) and chat.joinable
    limit = chat.config.sessions.queue_limit
    if joining and chat.joined >= limit:
        if chat.joined == limit:  # the first one over: its words cover the rest
            await chat.out.say(chat_texts.queue_full(limit), plain=True)
        chat.joined += 1
        chat.out.trace(TraceRecord(event="queued", outcome="rejected", detail="queue full"))
        return
    if joining:
        queue[-1] = f"{queue[-1]}\n\n{text}"
        chat.joined += 1
    else:
        queue.append(text)
        chat.joinable = True
        chat.joined = 1
    chat.state = msgspec.structs.replace(chat.state, queue=tuple(queue))
    await chat.save()
    chat.out.trace(
        TraceRecord(
            event="queued",
            detail=f"position {len(queue)}, {chat.joined} joined",
            preview=chat.preview(text),
        )
    )
    if not joining:
        await chat_steer.say_queued(chat, len(queue))


async def collect_album(
    chat: Chat, album: str, *, image: str | None = None, note: str = "", caption: str = ""
) -> None:
    """A part of album `album`: a photo stored at `image`, or a file saved in the working
    directory (`note` says where). It waits with the album's other parts (and their
    caption) until none came for `chat_files.ALBUM_WAIT`, on record meanwhile."""
    if album != chat.album:
        chat.album, chat.album_captioned = album, False
    if image is not None:
        chat.batch_images.append(image)
    if caption:
        chat.batch.append(caption)
        chat.album_captioned = True
    if note:
        chat.batch.append(note)
    chat.batch_due = trio.current_time() + chat_files.ALBUM_WAIT
    chat.state = msgspec.structs.replace(
        chat.state, batch=tuple(chat.batch), batch_images=tuple(chat.batch_images)
    )
    await chat.save()


def drop_batch(chat: Chat) -> None:
    """Forget what was collected and not started (paste parts, an album), in memory."""
    chat.batch, chat.batch_images = [], []
    chat.album, chat.album_captioned = None, False
    chat.batch_due = math.inf


async def flush_batch(chat: Chat) -> None:
    """Run what was collected (a paste's parts, an album) as one prompt: at once when nothing
    runs, else next in the queue."""
    if not chat.batch and not chat.batch_images:
        return
    images = tuple(chat.batch_images)
    texts = chat.batch
    if chat.album is not None and not chat.album_captioned:  # only photos or file notes
        texts = [chat_files.album_prompt(images=len(images), files=len(texts)), *texts]
    prompt = chat_files.joined_prompt(texts, len(images))
    drop_batch(chat)
    if chat.request is None:
        await chat_running.start_request(chat, prompt, images=images)
    elif images:  # cannot happen: an album is collected only while nothing runs
        await chat.out.say(chat_files.IMAGE_WHILE_BUSY, plain=True)
    else:
        chat.state = msgspec.structs.replace(
            chat.state, queue=(*chat.state.queue, prompt), batch=()
        )
        await chat.save()
