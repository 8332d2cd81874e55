"""What users send besides text (photos, files, voice notes), and ``/get``.

This module owns, for one chat (`actors.chat.Chat`):

- **Images in.** A photo (its largest size) or an image sent as a file is downloaded through
  the `TelegramFiles` port, kept privately under ``state_dir/images`` (never in the working
  directory) and run as a request: the caption (or `IMAGE_PROMPT`) is the prompt and the
  image goes with it as a ``localImage`` input. Only ``codex app-server`` takes images
  (the MCP ``codex`` tool of 0.153.4 has no image argument), so on MCP the user is told to
  switch the backend, before anything is downloaded (once per album); an image sent as a
  file goes there as a file (below), which Codex can still use, and the user is told why. An
  image that arrives while a request runs is not queued (the queue holds text): the user is
  asked to send it again. An image sent as a file whose bytes Codex could not decode (it
  would drop it without a word: `orchestrator.image_bytes`) is taken as a file instead, and
  the user told why. `prune_images_forever` deletes kept images after
  ``files.image_retention``.
- **Albums.** Telegram sends an album's photos (or files) as one message each, with one
  ``media_group_id`` and the caption on one of them. The chat collects them (and any text sent
  meanwhile) until none came for `ALBUM_WAIT`, then runs them as one request with every
  photo, or naming every file; they are on record in the session file meanwhile
  (`SessionState.batch_images`, the files' notes in `batch`).
- **Files in.** Any other document (or audio file) is saved in the working directory, in
  ``files.inbox_dir``, under a safe name and never over an existing file (a free name
  ``report (2).pdf`` is picked instead, and the user is told); the caption (or
  `FILE_PROMPT`) goes to Codex naming where the file is, like a text message (queued when a
  request runs). The bot's own token is taken out of the file before it is saved, and the
  user told (`chat_texts.SECRET_IN_FILE`): Codex reads the inbox.
- **Voice notes** are answered with `VOICE_NOT_SUPPORTED`: neither pinned Codex takes a
  chat's audio. The MCP ``codex`` tool (0.153.4) has only a text prompt; the 0.171.0
  app-server schema lists ``localAudio``, but measured on the mock model Codex replaces it
  with "audio content omitted because you do not support audio input" for its models.
- **Files out.** ``/get PATH`` sends a file of the working directory as a document, a folder
  as a zip; `orchestrator.workspace_files.readable_target` says what may be read.

Telegram serves bots files up to `DOWNLOAD_LIMIT` and takes uploads up to `UPLOAD_LIMIT`;
anything larger is refused in words, never silently dropped. A download that fails in a way
that may pass (a 5xx, a timeout, a short 429) is tried again, `DOWNLOAD_TRIES` times in all,
before the user is asked to send the file again.
"""

from __future__ import annotations

import functools
import logging
import secrets
import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Final

import msgspec
import trio

from actors import chat_late, chat_running, chat_texts
from orchestrator import disk, words
from orchestrator.errors import (
    TelegramError,
    TelegramFileTooBig,
    TelegramRetryAfter,
    TelegramTransientError,
)
from orchestrator.image_bytes import unreadable_image
from orchestrator.messages import TraceRecord
from orchestrator.redaction import redact_secrets_bytes
from orchestrator.rendering import CAPTION_LIMIT
from orchestrator.words import plural
from orchestrator.workspace_files import (
    Refused,
    TooBig,
    echoed_path,
    identities,
    in_git_folder,
    prune_images,
    read_limited,
    readable_target,
    safe_name,
    save_new,
    store_image,
    zip_folder,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from actors.chat import Chat
    from orchestrator.messages import Attachment, InboundMessage
    from orchestrator.ports import TelegramFiles

__all__ = [
    "DOWNLOAD_LIMIT",
    "UPLOAD_LIMIT",
    "get_file",
    "on_media",
    "prune_images_forever",
]

logger: Final = logging.getLogger(__name__)

MB: Final = 1024 * 1024
DOWNLOAD_LIMIT: Final = 20 * MB
"""Bytes of a file Telegram lets a bot download (``getFile``)."""
UPLOAD_LIMIT: Final = 50 * MB
"""Bytes of a document Telegram takes from a bot (``sendDocument``)."""

DOWNLOAD_TRIES: Final = 3
"""Tries of a download that fails in a way that may pass (`_fetch`)."""
DOWNLOAD_RETRY_DELAY: Final = 2.0
"""Seconds before the second try, twice that before the third (a 429 says its own wait)."""
DOWNLOAD_RETRY_MAX: Final = 10.0
"""The longest 429 wait a download waits out; past it the user is told at once."""

IMAGE_SUFFIXES: Final = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
}
"""Image types Codex passes to the model, by the MIME type Telegram reports."""

IMAGE_PROMPT: Final = "Look at the attached image and tell me what it shows."
ALBUM_PROMPT: Final = "Look at the attached images and tell me what they show."
EMPTY_FOLDER: Final = "empty folder"
"""What ``/get`` found in a folder with nothing to zip."""

FILE_PROMPT: Final = "I sent you a file. Read it and tell me briefly what it contains."

ALBUM_WAIT: Final = 1.0
"""Seconds an album waits for its next part before it runs. Telegram delivers an album's
messages back to back (usually in one getUpdates answer); each part is downloaded before the
next is read, so the wait restarts after each."""

IMAGES_NEED_APP_SERVER: Final = (
    "I can't pass pictures to Codex with this bot's setup: images need the app-server "
    'backend (backend = "app-server" under [codex] in the bot\'s config). Describe the '
    "picture in words instead, send it as a file (Codex can use the file, not look at it), "
    "or ask the bot's owner to switch."
)
IMAGE_WHILE_BUSY: Final = (
    "A request is still running, and a picture can't wait in the queue. Send it again when "
    "the answer is in (or /cancel the request)."
)
VOICE_NOT_SUPPORTED: Final = (
    "I can't pass voice notes to Codex: the Codex versions this bot runs don't take audio. "
    "Send your request as text."
)
NO_DOWNLOADS: Final = "I can't download files in this setup. Send your request as text."
PICTURE_AS_FILE: Final = (
    "Codex can't look at pictures with this bot's setup (that needs the app-server backend), "
    "so {shown} goes to it as a file. "
)
"""Said before "Saved as …" of a picture sent as a file on the MCP backend."""


def image_prompt(count: int) -> str:
    """The prompt of `count` images sent without a caption."""
    return ALBUM_PROMPT if count > 1 else IMAGE_PROMPT


def joined_prompt(texts: Sequence[str], images: int) -> str:
    """One prompt of `texts` (parts and captions, in order) that go with `images` photos;
    the photos' own question when none has words."""
    return "\n\n".join(texts) or image_prompt(images)


def album_prompt(*, images: int, files: int) -> str:
    """The prompt that leads an album sent without a caption: its photos or its files."""
    if not files:
        return image_prompt(images)
    if files == 1:
        return FILE_PROMPT
    return f"I sent you {files} files. Read them and tell me briefly what they contain."


def _megabytes(size: int) -> str:
    return f"{size / MB:.1f} MB"


def image_suffix(message: InboundMessage) -> str | None:
    """The file suffix of the image `message` carries, or None when it is no image we pass
    (a photo is always a JPEG; a file counts by its MIME type)."""
    if message.content_kind == "photo":
        return ".jpg"
    if message.content_kind == "document" and message.attachment is not None:
        return IMAGE_SUFFIXES.get(message.attachment.mime_type.lower())
    return None


async def on_media(chat: Chat, message: InboundMessage) -> bool:
    """Serve a photo, file, audio file or voice note; False when `message` is none of these
    (or carries no file we can fetch): the chat answers it as content it cannot read."""
    kind = message.content_kind
    if kind == "voice":
        await _traced(chat, message, "voice_refused")
        await chat.out.say(VOICE_NOT_SUPPORTED, plain=True)
        return True
    if kind not in ("photo", "document", "audio") or message.attachment is None:
        return False
    suffix = image_suffix(message)
    if suffix is None:
        await _file_in(chat, message, message.attachment)
    elif kind == "document" and chat.config.codex.backend != "app-server":
        # Codex cannot look at it here, but it can use the file: it goes as one.
        name = message.attachment.file_name
        shown = words.quoted(name) if name else "your picture"
        told = _once_per_album(chat, message.media_group_id, PICTURE_AS_FILE.format(shown=shown))
        await _file_in(chat, message, message.attachment, told=told)
    else:
        await _image_in(chat, message, message.attachment, suffix)
    return True


async def _traced(chat: Chat, message: InboundMessage, outcome: str, detail: str = "") -> None:
    chat.out.trace(
        TraceRecord(
            event="update",
            update_id=message.update_id,
            outcome=outcome,
            detail=detail or message.content_kind,
        )
    )


async def _download(
    chat: Chat, message: InboundMessage, attachment: Attachment, what: str
) -> bytes | None:
    """The file's bytes, or None once the user was told why not.

    A download may take a while (up to 20 MB), and the poller does not ask Telegram for the
    next updates of any chat until this one is taken: so the update goes on record first,
    with what is being fetched (`SessionState.downloading`), and is taken at once. A kill
    during the download is told at the next start (`actors.chat_recovery`), and Telegram's
    second delivery of the update is skipped like any other. The chat itself goes on with
    its next message once the file is in.
    """
    files = chat.deps.files
    if files is None:
        await chat.out.say(NO_DOWNLOADS, plain=True)
        return None
    if attachment.file_size > DOWNLOAD_LIMIT:
        await chat.out.say(_too_big_in(what, attachment.file_size), plain=True)
        return None
    label = f"{what} {attachment.file_name}" if attachment.file_name else what
    chat.remember_update(message.update_id)
    chat.state = msgspec.structs.replace(chat.state, downloading=label)
    await chat.save()
    chat.nursery.start_soon(chat.mark_handled_when_synced, message)
    data: bytes | None = None
    try:
        data = await _fetch(files, attachment.file_id)
    except TelegramFileTooBig as error:
        await chat.out.say(_too_big_in(what, error.size), plain=True)
    except _NotFetched as failed:
        logger.warning("download of %s failed: %s", what, failed.error)
        tried = f"I tried {failed.tries} times but couldn't" if failed.tries > 1 else "I couldn't"
        await chat.out.say(
            f"{tried} download your {what} from Telegram ({failed.error.description}). "
            "Please send it again.",
            plain=True,
        )
    # Saved with the file's request, or at the end of the message (`Chat.handle`). Not when
    # a stop cancels the download: then the next start tells the user.
    chat.state = msgspec.structs.replace(chat.state, downloading="")
    return data


class _NotFetched(Exception):
    """`_fetch` gave up: Telegram's last `error`, after `tries` tries."""

    def __init__(self, error: TelegramError, tries: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.tries = tries


async def _fetch(files: TelegramFiles, file_id: str) -> bytes:
    """The file's bytes, tried again after a failure that may pass (a 5xx, a timeout, a lost
    connection, a 429 of a few seconds), up to `DOWNLOAD_TRIES` times in all: a hiccup of
    Telegram's must not cost the user their file.

    Raises:
        TelegramFileTooBig: the file is over `DOWNLOAD_LIMIT`.
        _NotFetched: any other failure, at once for a refusal (the file is gone).
    """
    tries = 0
    while True:
        tries += 1
        try:
            return await files.download_file(file_id, max_bytes=DOWNLOAD_LIMIT)
        except TelegramFileTooBig:
            raise
        except TelegramRetryAfter as error:
            if tries == DOWNLOAD_TRIES or error.retry_after > DOWNLOAD_RETRY_MAX:
                raise _NotFetched(error, tries) from None
            await trio.sleep(error.retry_after)
        except TelegramTransientError as error:
            if tries == DOWNLOAD_TRIES:
                raise _NotFetched(error, tries) from None
            await trio.sleep(DOWNLOAD_RETRY_DELAY * tries)
        except TelegramError as error:
            raise _NotFetched(error, tries) from None


def _too_big_in(what: str, size: int) -> str:
    shown = f" is {_megabytes(size)};" if size else " is too big:"
    return (
        f"Your {what}{shown} Telegram lets bots download files up to 20 MB. Send a smaller "
        "one (or put it where Codex can reach it and tell me where)."
    )


async def _image_in(
    chat: Chat, message: InboundMessage, attachment: Attachment, suffix: str
) -> None:
    what = "photo" if message.content_kind == "photo" else "image"
    album = message.media_group_id
    if chat.config.codex.backend != "app-server":
        await _traced(chat, message, "image_refused", "mcp backend")
        await _refuse_once_per_album(chat, album, IMAGES_NEED_APP_SERVER)
        return
    joining = album is not None and album == chat.album
    if not joining and not chat.idle() and not message.late:
        await _traced(chat, message, "image_refused", "busy")
        await _refuse_once_per_album(chat, album, IMAGE_WHILE_BUSY)
        return
    data = await _download(chat, message, attachment, what)
    if data is None:
        return
    problem = unreadable_image(data) if message.content_kind == "document" else None
    if problem is not None:  # Codex would drop it without a word: it goes as a file
        await _traced(chat, message, "image_unreadable", problem)
        shown = words.quoted(attachment.file_name) if attachment.file_name else "Your file"
        told = f"{shown} is not a picture Codex can look at ({problem}), so it goes as a file. "
        await _take_file(chat, message, attachment, data, told=told)
        return
    images = Path(chat.config.state_dir) / "images"
    try:
        path = await disk.run_sync(store_image, images, data, suffix)
    except OSError as error:
        logger.warning("cannot keep an image in %s: %s", images, error)
        await chat.out.say(f"I couldn't store your {what} on the bot's disk.", plain=True)
        return
    await _traced(chat, message, "image", f"{len(data)} bytes")
    caption = (message.text or "").strip()
    if message.late:  # sent while the bot was offline: offered with its photo, not run
        prompt = chat_texts.prompt_text(caption, message) if caption else ""
        await chat_late.offer(chat, message, prompt, images=(str(path),))
        return
    if album is not None and (joining or chat.idle()):
        captioned = _album_caption(chat, message, caption, ALBUM_PROMPT)
        await chat.collect_album(album, image=str(path), caption=captioned)
        return
    if not chat.idle():  # a message that arrived during the download started meanwhile
        await chat.out.say(IMAGE_WHILE_BUSY, plain=True)
        return
    prompt = chat_texts.prompt_text(caption or IMAGE_PROMPT, message)
    await chat_running.start_request(chat, prompt, images=(str(path),))


def _album_caption(chat: Chat, message: InboundMessage, caption: str, default: str) -> str:
    """What a part of an album adds to its prompt: its caption, as Codex gets it. Without
    one, a part sent as a reply brings the text of the message it answers, with the album's
    `default` question (once per album: each part may carry the same reply)."""
    if caption:
        return chat_texts.prompt_text(caption, message)
    replied = message.replied_to
    if (
        replied is None
        or replied.kind != "text"
        or (message.media_group_id == chat.album and chat.album_captioned)
    ):
        return ""
    return chat_texts.prompt_text(default, message)


async def _refuse_once_per_album(chat: Chat, album: str | None, text: str) -> None:
    """Say why a photo was not taken; for an album, once, not for each of its photos."""
    if told := _once_per_album(chat, album, text):
        await chat.out.say(told, plain=True)


def _once_per_album(chat: Chat, album: str | None, text: str) -> str:
    """`text`, or "" when it was said for this album already (its photos come one by one)."""
    if album is None or album != chat.refused_album:
        chat.refused_album = album
        return text
    return ""


async def _file_in(
    chat: Chat, message: InboundMessage, attachment: Attachment, *, told: str = ""
) -> None:
    what = "audio file" if message.content_kind == "audio" else "file"
    data = await _download(chat, message, attachment, what)
    if data is not None:
        await _take_file(chat, message, attachment, data, what=what, told=told)


async def _take_file(
    chat: Chat,
    message: InboundMessage,
    attachment: Attachment,
    data: bytes,
    *,
    what: str = "file",
    told: str = "",
) -> None:
    """Save the downloaded file in the inbox, say where (after `told`), and pass the
    caption on to Codex with its place (as a text message: queued behind a request)."""
    workspace = Path(chat.profile.working_directory)
    inbox = workspace / chat.config.files.inbox_dir
    fallback = f"file-{message.message_id}"
    name = safe_name(attachment.file_name, fallback=fallback)
    try:
        path, relative, held_secret = await disk.run_sync(
            _save_in_inbox, workspace, inbox, name, data, chat.deps.secrets
        )
    except Refused as refusal:
        await chat.out.say(str(refusal), plain=True)
        return
    except OSError as error:
        logger.warning("cannot save a file in %s: %s", inbox, error)
        await chat.out.say(
            f"I couldn't save your {what} in the working directory ({error.strerror}).",
            plain=True,
        )
        return
    await _traced(chat, message, "file", f"{len(data)} bytes")
    note = f"Saved as {relative}"
    if attachment.file_name and path.name != attachment.file_name:
        why = (
            "a file of that name was already there"
            if name == attachment.file_name
            else "that name is not safe as a file name here"
        )
        note += f" (sent as {words.quoted(attachment.file_name)}; {why})"
    note += "."
    if held_secret:
        note += " " + chat_texts.SECRET_IN_FILE
    await chat.out.say(told + note, plain=True)
    caption = (message.text or "").strip()
    note = f"(The file is {relative} in the working directory.)"
    if message.late:  # saved, as sent; what it asks waits for the user's press
        prompt = chat_texts.prompt_text(f"{caption or FILE_PROMPT}\n\n{note}", message)
        await chat_late.offer(chat, message, prompt)
        return
    album = message.media_group_id
    if album is not None and (album == chat.album or chat.idle()):
        default = album_prompt(images=0, files=2)
        await chat.collect_album(
            album, note=note, caption=_album_caption(chat, message, caption, default)
        )
        return
    await chat.on_text(chat_texts.prompt_text(f"{caption or FILE_PROMPT}\n\n{note}", message))


def _save_in_inbox(
    workspace: Path, inbox: Path, name: str, data: bytes, secrets: Sequence[str]
) -> tuple[Path, str, bool]:
    """Save into `inbox`, which must stay inside `workspace` once links are resolved (the
    agent could have made ``inbox`` a link to elsewhere) (blocking); the file, its path
    relative to `workspace`, and whether the bot's own `secrets` were taken out of it first
    (Codex reads the inbox: a user may send the bot's ``.env`` by mistake)."""
    cleaned = redact_secrets_bytes(data, secrets)
    root = workspace.resolve()
    folder = inbox.resolve()  # its missing part is made by `save_new`, following no link
    if not folder.is_relative_to(root):
        raise Refused(
            "The inbox folder leads out of the working directory (a link?), so I did not save "
            "the file. Ask the bot's owner to check files.inbox_dir."
        )
    inside = PurePosixPath(folder.relative_to(root).as_posix())
    if in_git_folder(inside):  # the bot writes where the sandbox keeps the agent out
        raise Refused(
            "The inbox folder leads into a .git folder (a link?), so I did not save the file. "
            "Ask the bot's owner to check files.inbox_dir."
        )
    saved = save_new(root, inside, name, cleaned)
    return root / saved, saved.as_posix(), cleaned != data


async def get_file(chat: Chat, argument: str) -> None:
    """``/get PATH``: send the file (a folder as a zip) of the working directory."""
    workspace = Path(chat.profile.working_directory)
    state_dir = Path(chat.config.state_dir)
    try:
        outgoing = functools.partial(
            _outgoing, secrets=chat.deps.secrets, own_files=chat.deps.own_files
        )
        relative, name, data, what = await disk.run_sync(outgoing, workspace, argument, state_dir)
    except Refused as refusal:
        await chat.out.say(str(refusal), plain=True)
        return
    except TooBig as error:
        limit = f"{UPLOAD_LIMIT // MB} MB"
        size = _megabytes(error.size) if error.exact else f"more than {limit}"
        await chat.out.say(
            f"{echoed_path(argument)} is too big to send ({size}); Telegram takes files up to "
            f"{limit} from bots.",
            plain=True,
        )
        return
    except OSError as error:
        await chat.out.say(
            f"I couldn't read {echoed_path(argument)} ({error.strerror}).", plain=True
        )
        return
    except Exception:  # what the agent planted there must not end the chat and its request
        logger.exception("/get %s failed", echoed_path(argument))
        await chat.out.say(
            f"I couldn't read {echoed_path(argument)}: something in it is not as expected. "
            "The bot's log says what.",
            plain=True,
        )
        return
    if not data:
        empty = (
            "has no files to send (links, .git and .env files are left out)"
            if what == EMPTY_FOLDER
            else "is empty; Telegram does not take empty files"
        )
        await chat.out.say(f"{relative} {empty}.", plain=True)
        return
    await chat.out.show(
        f"file-{secrets.token_hex(4)}",
        "",  # the file alone: its caption says what it is
        document=data,
        document_name=name,
        document_caption=_caption(relative, what),
    )


def _caption(relative: str, what: str) -> str:
    """``📎 path (what)``; a path too long for a caption loses its middle, so the file's own
    name and what it is stay."""
    room = CAPTION_LIMIT // 2 - len(what) - 6
    if len(relative) > room:
        relative = f"{relative[: room // 3]}…{relative[-(room - room // 3 - 1) :]}"
    return f"📎 {relative} ({what})"


def _outgoing(
    workspace: Path,
    argument: str,
    state_dir: Path,
    *,
    secrets: tuple[str, ...],
    own_files: tuple[str, ...] = (),
) -> tuple[str, str, bytes, str]:
    """What ``/get`` sends (blocking): the path shown, the document's name, its bytes, and
    what it is in words. A folder's files are zipped with `secrets` redacted."""
    own = identities(own_files)
    target = readable_target(workspace, argument, state_dir, own)
    root = workspace.resolve()
    inside = PurePosixPath(target.relative_to(root).as_posix())
    relative = inside.as_posix()
    if relative == ".":
        relative = f"the working directory, {target.name}"
    if target.is_dir():
        data, count = zip_folder(root, inside, UPLOAD_LIMIT, secrets=secrets, own=own)
        name = f"{target.name or 'workspace'}.zip"
        if count == 0:
            return relative, name, b"", EMPTY_FOLDER
        return relative, name, data, f"{plural(count, 'file')}, zipped"
    data = read_limited(root, inside, UPLOAD_LIMIT, own)
    size = (
        _megabytes(len(data))
        if len(data) >= MB
        else f"{len(data):,} {'byte' if len(data) == 1 else 'bytes'}"
    )
    return relative, target.name, data, size


async def prune_images_forever(state_dir: Path, retention: float) -> None:
    """Delete kept images older than `retention` seconds now, then every so often (at most
    an hour apart). File times are wall-clock times, so the age is measured on that clock.

    Shutdown: runs until cancelled (the root cancels it when the drain starts)."""
    images = state_dir / "images"
    interval = min(retention / 2, 3600.0)
    while True:
        try:
            prune = functools.partial(prune_images, now=time.time(), retention=retention)
            removed = await disk.run_sync(prune, images)
        except OSError as error:
            logger.warning("cannot clean %s: %s", images, error)
        else:
            if removed:
                logger.info("deleted %d images older than %g s", removed, retention)
        await trio.sleep(interval)
