"""The chat's commands: /start and /help, /mode, /new, /cancel, /profile and /status (/get
and /diff are carried out by `actors.chat_files` and `actors.chat_diff`).

This module owns what each command does to a chat's session (`actors.chat.Chat`: its mode,
profile, Codex thread binding and queue) and the words it answers with, including the /status
text and its one line of Codex capacity. `cancel` also serves the Cancel button. The chat
actor traces the command and routes it here; everything below runs in the chat's nursery.
``/sessions``, ``/bind`` and ``/branch`` are only dispatched from here: they live in
`actors.chat_sessions`, `actors.chat_topics` and `actors.chat_branches`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import msgspec
import trio

from actors import (
    chat_background,
    chat_batch,
    chat_branches,
    chat_diff,
    chat_files,
    chat_model,
    chat_sessions,
    chat_texts,
    chat_topics,
)
from actors.chat_progress import (
    WAITING_FOR_CODEX,
    WAITING_FOR_RELEASE,
    WAITING_FOR_THE_USER,
    live_text,
    phase_words,
)
from orchestrator.messages import TraceRecord
from orchestrator.words import one_line, plural, quoted

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from actors.chat import Chat
    from actors.chat_request import Request
    from orchestrator.ports import PoolStatistics
    from orchestrator.session_store import SessionState

__all__ = ["cancel", "on_command", "read_behind_the_inbox", "release_thread", "status_text"]

_WORKER_STATES: Final = ("idle", "busy", "starting", "draining", "dead")
"""Worker states in the order /status lists them."""


_NO_ARGUMENTS: Final = frozenset({"new", "cancel", "diff", "status", "sessions"})
"""Commands that take no argument: one given is said to be unused, not silently dropped
(``/diff src`` shows the whole working directory; ``/new fix the login`` sends nothing)."""


async def on_command(chat: Chat, name: str, args: str) -> None:
    """Carry out the command `name` (lower-case, without ``/``) with its arguments `args`."""
    argument = args.strip()
    if argument and name in _NO_ARGUMENTS:
        await chat.out.say(
            f"/{name} takes nothing after it, so “{one_line(argument, 60)}” was not used"
            + (": send it as a message of its own." if name == "new" else "."),
            plain=True,
        )
    match name:
        case "start" | "help":
            await chat.out.say(
                chat_texts.help_text(app_server=chat.config.codex.backend == "app-server")
            )
        case "mode":
            await _mode(chat, argument)
        case "new":
            await _new(chat)
        case "status":
            await chat.out.say(status_text(chat), plain=True)
        case "cancel":
            await cancel(chat, "/cancel")
        case "profile" if argument not in ("", "list") and chat_topics.bound(chat):
            await chat.out.say(chat_topics.profile_is_bound(chat), plain=True)
        case "profile":
            await _profile(chat, argument)
        case "get":
            await read_behind_the_inbox(chat, lambda: chat_files.get_file(chat, argument))
        case "diff":
            await read_behind_the_inbox(chat, lambda: chat_diff.show_diff(chat))
        case "model" | "effort" | "usage":
            await chat_model.on_command(chat, name, argument)
        case "sessions":
            await chat_sessions.list_sessions(chat)
        case "bind":
            await chat_topics.bind(chat, argument)
        case "branch":
            await chat_branches.branch(chat, argument)
        case _:
            await chat.out.say(chat_texts.unknown_command(name), plain=True)


async def _mode(chat: Chat, typed: str) -> None:
    argument = typed.lower()
    if argument not in ("single", "plan"):
        await chat.out.say(chat_texts.not_a_mode(typed, chat.state.mode), plain=True)
        return
    mode: Literal["single", "plan"] = "single" if argument == "single" else "plan"
    chat.state = msgspec.structs.replace(chat.state, mode=mode)
    await chat.save()
    suffix = " (from the next request)" if chat.request is not None else ""
    await chat.out.say(f"Mode set to {mode}{suffix}.", plain=True)


async def read_behind_the_inbox(chat: Chat, read: Callable[[], Awaitable[None]]) -> None:
    """Run a command that only reads (``/get`` zipping a large folder, ``/diff`` of a large
    repository: seconds) in the chat's nursery, so it holds up neither this chat's next
    messages nor, through the poller's wait for the chats to take a batch, every other
    chat's. One at a time per chat; it changes nothing on record, so a crash during it
    loses only its answer (send it again)."""
    if chat.reading:
        await chat.out.say(
            "Still working on your last /get or /diff; send this again once it has arrived.",
            plain=True,
        )
        return
    chat.reading = True

    async def reading() -> None:
        try:
            await read()
        finally:
            chat.reading = False

    chat.nursery.start_soon(reading)


async def _new(chat: Chat) -> None:
    if chat.request is not None:
        await chat.out.say("A request is running; /cancel it first, then /new.", plain=True)
        return
    await release_thread(chat)
    chat.state = msgspec.structs.replace(
        chat.state, developer_thread_id=None, developer_worker_id=None, summary=""
    )
    await chat.save()
    await chat.out.say(
        "Started a new conversation: the next message opens a fresh Codex thread.", plain=True
    )


async def release_thread(chat: Chat) -> tuple[str, ...]:
    """Stop what the conversation's Codex thread left running (``/cancel`` with nothing
    running, ``/new``, a profile or branch switch, another session picked), tell the user
    which commands that stopped, and return them."""
    thread = chat.state.developer_thread_id
    if thread is None:
        return ()
    stopped = await chat.deps.pool.release(thread, chat.state.developer_worker_id)
    if stopped:
        await chat.out.say(
            chat_background.stopped_text(
                "⏹ Stopped what the last request left running in the background:", stopped
            ),
            plain=True,
        )
    await chat_background.forget_stop_buttons(chat)  # what they stop is stopped now
    return stopped


NOTHING_OF_YOURS: Final = (
    "Nothing of yours is running. In a group each person's requests are their own: only the "
    "one who sent a request can cancel it."
)
"""/cancel in a group with nothing of this user's running: another member's request may be
running in plain sight, and "Nothing is running." would read as a fault."""

CANCEL_NOTICE_DELAY: Final = 1.0
"""Seconds a cancel may take before the progress message says it is under way: a turn stops
in milliseconds, but a Codex server that stopped answering is stopped only after its grace
(app-server: 5 s), while the message would sit unchanged with its Cancel button."""

CANCELLING: Final = "🛑 Cancelling… Codex has not stopped yet; the bot is stopping it."


async def cancel(chat: Chat, reason: str) -> None:
    request = chat.request
    if request is None:
        stopped = await release_thread(chat)  # commands the last turn left running stop too
        if chat.state.queue or chat.batch or chat.batch_images:
            dropped = len(chat.state.queue) + (1 if chat.batch or chat.batch_images else 0)
            chat_batch.drop_batch(chat)
            chat.state = msgspec.structs.replace(chat.state, queue=(), batch=(), batch_images=())
            await chat.save()
            await chat.out.say(
                f"Nothing was running; dropped {plural(dropped, 'queued message')}.",
                plain=True,
            )
        elif not stopped:
            await chat.out.say(
                NOTHING_OF_YOURS if chat.key.chat_id < 0 else "Nothing is running.", plain=True
            )
        return
    if request.cancel(reason):
        chat.out.trace(TraceRecord(event="cancel", detail=reason))
        chat.nursery.start_soon(_tell_cancelling, chat, request)


async def _tell_cancelling(chat: Chat, request: Request) -> None:
    """Say `CANCELLING` in the progress message (its Cancel button gone) if the cancelled
    request has not ended after `CANCEL_NOTICE_DELAY`; a message never shown needs none."""
    with trio.move_on_after(CANCEL_NOTICE_DELAY):
        await request.settled.wait()
        return
    if request.reported or not request.progress.live_shown:
        return
    steps = live_text(request.progress, request.started).split("\n")[1:]
    await chat.out.show(request.slot, "\n".join([CANCELLING, *steps]), silent=True)


async def _profile(chat: Chat, argument: str) -> None:
    names = chat.usable_profiles()  # only the user's own profiles, and folder names: no paths
    if not argument or argument == "list":
        lines = [
            f"{'•' if name == chat.state.profile else '◦'} {name}: "
            f"{Path(chat.config.profiles[name].working_directory).name}"
            + (" (active)" if name == chat.state.profile else "")
            for name in names
        ]
        await chat.out.say("Profiles:\n" + "\n".join(lines), plain=True)
        return
    if argument not in names:  # a profile the user may not use is answered as unknown
        await chat.out.say(
            f"No profile named {quoted(argument)}. Profiles: {', '.join(names)}", plain=True
        )
        return
    if chat.request is not None:
        await chat.out.say(
            "Can't switch profiles while a request runs; /cancel it first.", plain=True
        )
        return
    profile = chat.config.profiles[argument]
    await release_thread(chat)
    chat.state = msgspec.structs.replace(
        chat.state,
        profile=argument,
        mode=profile.default_mode,
        developer_thread_id=None,
        developer_worker_id=None,
        summary="",
    )
    await chat.save()
    await chat.out.say(
        f"Switched to profile {argument} ({Path(profile.working_directory).name}), mode "
        f"{profile.default_mode}. The next message starts a new Codex thread.",
        plain=True,
    )


def status_text(chat: Chat) -> str:
    request = chat.request
    mode: str = chat.state.mode
    if request is not None and request.mode != mode:  # /mode while it runs: from the next
        mode = f"{request.mode} (this request), {mode} from the next"
    lines = [
        f"Mode: {mode}",
        f"Profile: {chat.state.profile}",
        f"Working directory: {chat.profile.working_directory}",
    ]
    if chat.state.model or chat.state.effort:  # a /model or /effort choice of this chat
        chosen = [f"model {chat.state.model}"] if chat.state.model else []
        chosen += [f"effort {chat.state.effort}"] if chat.state.effort else []
        lines.append(f"Chosen for this chat: {', '.join(chosen)}")
    worker = chat.state.developer_worker_id
    if request is None:
        lines.append("State: idle")
    else:
        progress = request.progress
        elapsed = chat_texts.format_duration(trio.current_time() - request.started)
        phase = phase_words(progress.phase, progress.detail)
        if progress.asking:
            phase = WAITING_FOR_THE_USER
        elif WAITING_FOR_CODEX in progress.actions:  # not started on a worker yet
            phase += ", waiting for a free Codex worker"
        elif WAITING_FOR_RELEASE in progress.actions:
            phase += ", " + WAITING_FOR_RELEASE
        lines.append(f"State: {phase}, running for {elapsed}")
        if progress.worker is not None:
            worker = progress.worker
    lines.append(f"Queue: {len(chat.state.queue)}")
    lines.extend(_offer_lines(chat.state))
    lines.append(f"Worker: {worker if worker is not None else '-'}")
    thread = chat.state.developer_thread_id
    starts = "the running request starts one" if request else "the next request starts one"
    lines.append(
        f"Codex session: codex resume {thread}" if thread else f"Codex session: none, {starts}"
    )
    usage = chat.state.last_usage
    if usage is not None:
        lines.append(
            f"Last run tokens: {usage.input_tokens:,} in ({usage.cached_input_tokens:,} cached)"
            f", {usage.output_tokens:,} out"
        )
    context = chat.state.context_now
    if context is not None:
        lines.append(chat_texts.context_line(context))
    counters = chat.state.counters
    lines.append(
        f"Runs: {counters.runs} ({counters.failures} failed, {counters.cancels} cancelled)"
    )
    lines.extend(chat_topics.status_lines(chat))
    lines.append(_pool_line(chat.deps.pool.statistics()))
    return "\n".join(lines)


def _offer_lines(state: SessionState) -> list[str]:
    """What waits for the user's press, not to be run by itself (their buttons are further
    up the chat, easy to scroll past)."""
    lines = []
    if state.interrupted is not None:
        lines.append("Offered, not run: a request a restart interrupted (▶ Run again)")
    if state.late is not None:
        sent = plural(state.late.messages, "message")
        lines.append(f"Offered, not run: {sent} sent while the bot was offline (▶ Run now)")
    return lines


def _pool_line(stats: PoolStatistics) -> str:
    """The bot's Codex capacity in one line: a phone user can tell "busy" from "broken"."""
    counts = Counter(worker.state for worker in stats.workers)
    states = ", ".join(f"{counts[state]} {state}" for state in _WORKER_STATES if counts[state])
    waiting = f"; {plural(stats.waiting, 'request')} waiting" if stats.waiting else ""
    return f"Codex workers: {states or 'none'}{waiting}"
