"""Sessions to pick up: the chat's recent Codex threads, ``/sessions``, and the thread line.

This module owns the chat's thread history (`SessionState.threads`, newest first, at most
`HISTORY_LIMIT`) and what picking one does:

- After each completed request the chat's current Codex thread is remembered (`remember`):
  a new thread is added with the date, the start of its first prompt, its working directory
  and profile; a known one moves to the front with its worker, recap and the developer
  instructions it has (their digest) brought up to date.
- ``/sessions`` lists them as buttons. A press (on the presser's own session only: the router
  routes it there, and only thread ids in this chat's history are accepted) binds the chat's
  conversation to that thread: its id, its worker, its recap and the instructions it has (so
  they are not sent to it again). The next message continues it. On ``codex app-server``
  any worker resumes a thread by id (``thread/resume``); on ``codex mcp-server`` a thread
  lives only in its process, so one that is gone continues on a fresh thread with its
  recap, and the result says so (the pool's "moved" note).
- A session of another profile, or of another folder of this one (a branch worktree, or the
  repository while the chat is on a branch), is refused with the switch to make first: a
  Codex thread keeps the folder it started in.
- Every result ends with a short line holding the thread id (`chat_texts.thread_line`), so
  the work can be continued at the desk with ``codex resume <id>``.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec

from actors import chat_commands, chat_texts, chat_topics
from orchestrator.messages import Button
from orchestrator.session_store import ThreadRecord
from orchestrator.workflow_types import ThreadInstructions

if TYPE_CHECKING:
    from collections.abc import Callable

    from actors.chat import Chat
    from orchestrator.messages import InboundCallback, Keyboard

__all__ = [
    "HISTORY_LIMIT",
    "decode_button",
    "list_sessions",
    "pick",
    "remember",
]

HISTORY_LIMIT: Final = 10
"""Codex threads a chat remembers for ``/sessions``."""

PROMPT_KEPT: Final = 80
"""Characters of a thread's first prompt kept for the list."""

BUTTON_PROMPT: Final = 28
"""Characters of the first prompt on a button (phones show about 40 on one line)."""

_PREFIX: Final = "ss:"
"""Callback data of a session button: ``ss:<thread id>`` (a UUID fits Telegram's 64 bytes)."""

SLOT: Final = "sessions"
"""The sender's slot of the ``/sessions`` list."""


def _utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M")


wall_clock: Callable[[], str] = _utc_now
"""The date a new thread is remembered with (the calendar, not trio's clock); tests replace
it."""


def remember(chat: Chat, prompt: str) -> None:
    """Put the chat's current Codex thread at the front of its history (the state is saved
    by the caller)."""
    state = chat.state
    thread = state.developer_thread_id
    if thread is None:
        return
    known = next((record for record in state.threads if record.thread_id == thread), None)
    others = tuple(record for record in state.threads if record.thread_id != thread)
    has = state.instructions_now
    if known is None:
        record = ThreadRecord(
            thread_id=thread,
            worker_id=state.developer_worker_id,
            started=wall_clock(),
            prompt=" ".join(chat_texts.user_words(prompt).split())[:PROMPT_KEPT],
            cwd=chat.profile.working_directory,
            profile=state.profile,
            summary=state.summary,
            instructions=has.digest if has else "",
        )
    else:
        record = msgspec.structs.replace(
            known,
            worker_id=state.developer_worker_id,
            summary=state.summary,
            instructions=has.digest if has else known.instructions,
        )
    chat.state = msgspec.structs.replace(state, threads=(record, *others)[:HISTORY_LIMIT])


def decode_button(data: str) -> str | None:
    """The thread id of a session button's callback data; None when it is not one."""
    if data.startswith(_PREFIX) and len(data) > len(_PREFIX):
        return data[len(_PREFIX) :]
    return None


def _label(record: ThreadRecord) -> str:
    prompt = record.prompt or "(no prompt)"
    if len(prompt) > BUTTON_PROMPT:
        prompt = prompt[: BUTTON_PROMPT - 1] + "…"
    return f"{record.started[5:]} {prompt}".strip()


def _line(number: int, record: ThreadRecord, current: str | None) -> str:
    where = Path(record.cwd).name if record.cwd else "?"
    mark = " (current)" if record.thread_id == current else ""
    return f"{number}. {record.started or '?'}, {where}: {record.prompt or '(no prompt)'}{mark}"


async def list_sessions(chat: Chat) -> None:
    """``/sessions``: the recent threads as buttons (folder names only, never full paths)."""
    threads = chat.state.threads
    if not threads:
        starts = (
            "the running request starts one" if chat.request else "the first request starts one"
        )
        await chat.out.say(
            f"No Codex sessions yet in this {chat_topics.place(chat)}: {starts}.", plain=True
        )
        return
    current = chat.state.developer_thread_id
    lines = [_line(number, record, current) for number, record in enumerate(threads, 1)]
    keyboard: Keyboard = tuple(
        (Button(f"{number}. {_label(record)}", _PREFIX + record.thread_id),)
        for number, record in enumerate(threads, 1)
    )
    text = (
        "Recent Codex sessions, the last used first, each with the time it started. Choose "
        "one to continue it "
        "(/new starts a fresh one):\n" + "\n".join(lines)
    )
    await chat.out.show(SLOT, text, keyboard)


def _elsewhere(chat: Chat, record: ThreadRecord) -> str:
    """Why `record` cannot go on in the chat's current folder ("" when it can). A Codex
    thread keeps the folder it started in, so continuing one from another folder would run
    it there while /status, /diff and /get look here."""
    here = Path(chat.profile.working_directory)
    if not record.cwd or Path(record.cwd) == here:
        return ""
    profile = chat.config.profiles.get(chat.state.profile, chat.profile)
    repository = Path(profile.working_directory)
    worktrees = profile.worktrees_folder()

    def words(folder: Path) -> tuple[str, str] | None:
        """The folder in words, and the command that switches there."""
        if folder == repository:
            return "the repository itself", "/branch off"
        if folder.is_relative_to(worktrees):
            branch = folder.relative_to(worktrees).as_posix()
            return f"the worktree of branch {branch}", f"/branch {branch}"
        return None

    then, now = words(Path(record.cwd)), words(here)
    if then is None or now is None:
        return (
            f"That session worked in {Path(record.cwd).name}, a folder this profile no longer "
            "uses, so it cannot go on here. /new starts a fresh one."
        )
    return (
        f"That session worked in {then[0]}, and this {chat_topics.place(chat)} now works in "
        f"{now[0]}. Switch with {then[1]} first, then choose it again."
    )


async def pick(chat: Chat, press: InboundCallback, thread_id: str) -> None:
    """A press on a session button: the chat's conversation continues that thread."""
    record = next((r for r in chat.state.threads if r.thread_id == thread_id), None)
    if record is None:
        await chat.out.answer(press, "That session is no longer in this chat's list.")
        return
    if chat.request is not None:
        await chat.out.answer(press, "A request is running; /cancel it first.")
        return
    if record.profile and record.profile != chat.state.profile:
        await chat.out.answer(press, f"That session ran under profile {record.profile}.")
        await chat.out.say(
            f"That session ran under profile {record.profile}, and this chat now uses "
            f"{chat.state.profile}. Switch to {record.profile} first, then choose it again.",
            plain=True,
        )
        return
    elsewhere = _elsewhere(chat, record)
    if elsewhere:
        await chat.out.answer(press, "That session worked in another folder.")
        await chat.out.say(elsewhere, plain=True)
        return
    await chat.out.answer(press, "Switched.")
    if record.thread_id != chat.state.developer_thread_id:
        await chat_commands.release_thread(chat)
        has = record.instructions
        chat.state = msgspec.structs.replace(
            chat.state,
            developer_thread_id=record.thread_id,
            developer_worker_id=record.worker_id,
            summary=record.summary,
            instructions=ThreadInstructions(thread_id=record.thread_id, digest=has)
            if has
            else chat.state.instructions,
        )
        await chat.save()
    await chat.out.close(
        SLOT,
        f"Continuing the session of {record.started or 'earlier'}: "
        f"“{record.prompt or '(no prompt)'}”. Your next message goes on from there.",
        message_id=press.message_id,
    )
