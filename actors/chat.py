"""The chat actor: one per session key (chat, user[, forum topic]).

It owns the conversation: mode, profile, the Codex thread binding, the queue of prompts, the
request being served and its cancel scope, and the session file. The inbox loop never waits
for Codex: a request is served in a child task (`actors.chat_request`), so commands, queueing,
button presses and ``/cancel`` are answered while it runs.

- Text while idle starts a request at once; only a text as long as Telegram's limit (a part
  of a long paste the client split) waits ``batch_window`` for the rest, each such part
  waiting again, and the parts run as one prompt. Texts arriving while a request runs join
  one queued prompt (at most ``queue_limit`` of them; one "Queued" notice), which runs next;
  queued prompts survive restarts.
- A request's life (progress message, typing, the result) is `actors.chat_request`; it returns
  a `RequestOutcome` that this actor applies to the session (counters, thread, summary). A
  request that fails under the bot is reported once and never queued again; only a shutdown
  (`Interrupted`) puts its prompt back in the queue.
- The session file records the running request (and its progress message) and the parts of a
  paste not started yet. A start that finds a running request there (the bot was killed)
  closes its progress message and offers it with a "Run again" button, never running it by
  itself.
- Approvals relayed by the pool are shown and decided by `actors.chat_approvals`; this actor
  routes the button presses to them.
- The session file is written on every change (`SessionStore`, atomic).
"""

from __future__ import annotations

import logging
import math
import secrets
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, assert_never

import msgspec
import trio

from actors import chat_texts
from actors.chat_approvals import (
    ApprovalButton,
    Approvals,
    CancelButton,
    RerunButton,
    decode_button,
    rerun_data,
)
from actors.chat_output import ChatOutput
from actors.chat_request import (
    FINISH_GRACE,
    CancelledByUser,
    Completed,
    Failed,
    Interrupted,
    Request,
    RequestOutcome,
    phase_words,
    serve_request,
    stopped_outcome,
)
from orchestrator.messages import Button, InboundCallback, InboundMessage, TraceRecord
from orchestrator.session_store import RequestRecord, SessionCounters, SessionState

if TYPE_CHECKING:
    from orchestrator.config import Config, Profile
    from orchestrator.messages import SenderMsg, SessionKey
    from orchestrator.ports import CodexPool, PoolStatistics, TraceEmit
    from orchestrator.session_store import SessionStore

__all__ = ["ChatDeps", "run"]

logger: Final = logging.getLogger(__name__)

FAILED_SUMMARY: Final = "(this request failed before Codex finished it)"
"""The summary's result line of a request that failed."""

TELEGRAM_TEXT_LIMIT: Final = 4096
"""Characters of one Telegram message: clients split a longer paste into parts this long."""

SPLIT_SLACK: Final = 64
"""A part may be this much shorter than the limit (clients split at a space or line end)."""

SUMMARY_LIMIT: Final = 1500
"""Characters of conversation summary kept as the context preamble."""


@dataclass(frozen=True)
class ChatDeps:
    """Everything a chat actor needs, assembled by the router."""

    sender: trio.MemorySendChannel[SenderMsg]
    pool: CodexPool
    store: SessionStore
    config: Config
    trace: TraceEmit


class _Chat:
    """State and behaviour of one chat actor (all methods run in its nursery)."""

    def __init__(self, key: SessionKey, deps: ChatDeps, nursery: trio.Nursery) -> None:
        self.key = key
        self.deps = deps
        self.config = deps.config
        self.nursery = nursery
        self.conversation = key.file_stem()
        self.out = ChatOutput(key, deps.sender, deps.trace)
        self.approvals = Approvals(self.out, timeout=self.config.sessions.approval_timeout)
        self.state = SessionState(
            mode=self.config.profiles[self.config.default_profile].default_mode,
            profile=self.config.default_profile,
        )
        self.request: Request | None = None
        self.requests_started = 0
        self.batch: list[str] = []
        self.batch_due = math.inf
        self.closing = False
        self.joinable = False
        """The last queued prompt takes more messages (it was queued by this process)."""
        self.joined = 0
        """Messages joined into the last queued prompt."""

    # ------------------------------------------------------------------ output

    def preview(self, text: str) -> str | None:
        limit = self.config.traces.preview_chars
        return text[:limit] if limit else None

    async def save(self) -> None:
        await self.deps.store.save(self.key, self.state)

    @property
    def profile(self) -> Profile:
        profile = self.config.profiles.get(self.state.profile)
        return profile or self.config.profiles[self.config.default_profile]

    # ------------------------------------------------------------------ lifecycle

    async def load(self) -> None:
        loaded = await self.deps.store.load(self.key)
        if loaded.corrupt_moved_to is not None:
            self.out.trace(
                TraceRecord(
                    event="session_corrupt", detail=f"moved to {loaded.corrupt_moved_to.name}"
                )
            )
            await self.out.say(chat_texts.SESSION_CORRUPT)
        if loaded.state is not None:
            state = loaded.state
            if state.profile not in self.config.profiles:
                state = msgspec.structs.replace(
                    state,
                    profile=self.config.default_profile,
                    developer_thread_id=None,
                    developer_worker_id=None,
                )
            self.state = state

    def idle(self) -> bool:
        return self.request is None and not self.batch and not self.state.queue

    # ------------------------------------------------------------------ inbox

    async def handle(self, message: InboundMessage | InboundCallback) -> None:
        match message:
            case InboundMessage():
                await self.on_message(message)
            case InboundCallback():
                await self.on_callback(message)
            case _:
                assert_never(message)

    async def on_message(self, message: InboundMessage) -> None:
        if message.edited:
            self.out.trace(
                TraceRecord(event="update", update_id=message.update_id, outcome="edited_ignored")
            )
            await self.out.say(chat_texts.EDITED_IGNORED, plain=True)
            return
        if message.command is not None:
            self.out.trace(
                TraceRecord(event="command", command=message.command, update_id=message.update_id)
            )
            await self.on_command(message.command, message.command_args)
            return
        if message.text is None or not message.text.strip():
            await self.out.say(chat_texts.TEXT_ONLY, plain=True)
            return
        if message.quoted_from is not None:
            await self.on_text(chat_texts.as_quoted(message.text, message.quoted_from))
            return
        await self.on_text(message.text)

    async def on_text(self, text: str) -> None:
        if self.request is None and not self.state.queue:
            await self.collect(text)
            return
        await self.queue_text(text)

    async def collect(self, text: str) -> None:
        """An idle chat: start at once, unless `text` looks like a part of a long paste that
        Telegram split at its length limit; then wait ``batch_window`` for the rest (each part
        at the limit waits again), and run the parts as one prompt."""
        self.batch.append(text)
        window = self.config.sessions.batch_window
        if window > 0 and is_split_part(text):
            self.batch_due = trio.current_time() + window
            # On disk before the next update is taken: a kill now loses no part.
            self.state = msgspec.structs.replace(self.state, batch=tuple(self.batch))
            await self.save()
            return
        await self.flush_batch()

    async def queue_text(self, text: str) -> None:
        """A request is running: `text` joins the prompt that runs next (one notice for it)."""
        queue = list(self.state.queue)
        joining = bool(queue) and self.joinable
        if joining and self.joined >= self.config.sessions.queue_limit:
            await self.out.say(chat_texts.queue_full(self.config.sessions.queue_limit), plain=True)
            self.out.trace(TraceRecord(event="queued", outcome="rejected", detail="queue full"))
            return
        if joining:
            queue[-1] = f"{queue[-1]}\n\n{text}"
            self.joined += 1
        else:
            queue.append(text)
            self.joinable = True
            self.joined = 1
        self.state = msgspec.structs.replace(self.state, queue=tuple(queue))
        await self.save()
        self.out.trace(
            TraceRecord(
                event="queued",
                detail=f"position {len(queue)}, {self.joined} joined",
                preview=self.preview(text),
            )
        )
        if not joining:
            await self.out.say(chat_texts.queued(len(queue)), plain=True)

    async def flush_batch(self) -> None:
        if not self.batch:
            return
        prompt = "\n\n".join(self.batch)
        self.batch = []
        self.batch_due = math.inf
        if self.request is None:
            await self.start_request(prompt)
        else:
            self.state = msgspec.structs.replace(
                self.state, queue=(*self.state.queue, prompt), batch=()
            )
            await self.save()

    async def start_request(self, prompt: str, *, queue: tuple[str, ...] | None = None) -> None:
        """Start serving `prompt`; the session file says it runs (and, with `queue`, that it
        left the queue) in one write before Codex sees it, so a kill leaves it on record."""
        self.requests_started += 1
        request = Request(
            number=self.requests_started,
            prompt=prompt,
            mode=self.state.mode,
            token=secrets.token_urlsafe(9),
            started=trio.current_time(),
        )
        self.request = request  # before the save: no second request starts meanwhile
        self.state = msgspec.structs.replace(
            self.state,
            running=RequestRecord(prompt=prompt),
            batch=(),
            queue=self.state.queue if queue is None else queue,
        )
        await self.save()
        self.nursery.start_soon(self.serve, request)

    async def start_next_queued(self) -> None:
        if self.request is not None or not self.state.queue or self.closing:
            return
        prompt, *rest = self.state.queue
        if not rest:
            self.joinable = False
            self.joined = 0
        await self.start_request(prompt, queue=tuple(rest))

    async def remember_live(self, request: Request, message_id: int) -> None:
        """The request's progress message is `message_id`: on record, to close it after a kill."""
        running = self.state.running
        if self.request is request and running is not None:
            self.state = msgspec.structs.replace(
                self.state,
                running=msgspec.structs.replace(running, live_message_id=message_id),
            )
            await self.save()

    async def recover(self) -> None:
        """At start: tell the user about a request a kill interrupted (its progress message
        closed, a "Run again" button; never run again by itself), and queue the parts of a
        paste that were received but not started."""
        state = self.state
        if state.batch:
            state = msgspec.structs.replace(
                state, queue=(*state.queue, "\n\n".join(state.batch)), batch=()
            )
        running = state.running
        if running is None:
            if state is not self.state:
                self.state = state
                await self.save()
            return
        token = secrets.token_urlsafe(9)
        if running.live_message_id is not None:
            await self.out.close(
                "interrupted-live", chat_texts.STALE_PROGRESS, message_id=running.live_message_id
            )
        await self.out.show(
            f"rerun-{token}",
            chat_texts.interrupted_by_a_stop(running.prompt),
            ((Button(chat_texts.RUN_AGAIN, rerun_data(token)),),),
        )
        counters = state.counters
        self.state = msgspec.structs.replace(
            state,
            running=None,
            interrupted=RequestRecord(prompt=running.prompt, token=token),
            counters=msgspec.structs.replace(
                counters, runs=counters.runs + 1, failures=counters.failures + 1
            ),
        )
        await self.save()
        self.out.trace(
            TraceRecord(
                event="run_end",
                outcome="failed",
                detail="interrupted: the bot was killed while it ran",
                preview=self.preview(running.prompt),
            )
        )

    async def run_again(self, press: InboundCallback, token: str) -> None:
        """A press on "Run again": the interrupted prompt runs (or is queued) once more."""
        offered = self.state.interrupted
        if offered is None or not secrets.compare_digest(offered.token, token):
            await self.out.answer(press, chat_texts.RUN_AGAIN_GONE)
            return
        self.state = msgspec.structs.replace(self.state, interrupted=None)
        await self.out.answer(press, chat_texts.RUN_AGAIN_STARTED)
        await self.out.close(
            f"rerun-{token}",
            chat_texts.interrupted_run_again(offered.prompt),
            message_id=press.message_id,
        )
        if self.request is None and not self.state.queue and not self.batch:
            await self.start_request(offered.prompt)
        else:
            await self.save()
            await self.queue_text(offered.prompt)

    # ------------------------------------------------------------------ commands

    async def on_command(self, name: str, args: str) -> None:
        argument = args.strip()
        match name:
            case "start" | "help":
                await self.out.say(chat_texts.HELP)
            case "mode":
                await self.cmd_mode(argument.lower())
            case "new":
                await self.cmd_new()
            case "status":
                await self.out.say(self.status_text(), plain=True)
            case "cancel":
                await self.cmd_cancel("/cancel")
            case "profile":
                await self.cmd_profile(argument)
            case _:
                await self.out.say(chat_texts.unknown_command(name), plain=True)

    async def cmd_mode(self, argument: str) -> None:
        if argument not in ("single", "plan"):
            await self.out.say(chat_texts.not_a_mode(argument, self.state.mode), plain=True)
            return
        mode: Literal["single", "plan"] = "single" if argument == "single" else "plan"
        self.state = msgspec.structs.replace(self.state, mode=mode)
        await self.save()
        suffix = " (from the next request)" if self.request is not None else ""
        await self.out.say(f"Mode set to {mode}{suffix}.", plain=True)

    async def cmd_new(self) -> None:
        if self.request is not None:
            await self.out.say("A request is running; /cancel it first, then /new.", plain=True)
            return
        await self.release_thread()
        self.state = msgspec.structs.replace(
            self.state, developer_thread_id=None, developer_worker_id=None, summary=""
        )
        await self.save()
        await self.out.say(
            "Started a new conversation: the next message opens a fresh Codex thread.", plain=True
        )

    async def release_thread(self) -> None:
        """Stop what the conversation's Codex thread left running (``/cancel`` with nothing
        running, ``/new``, a profile switch)."""
        if self.state.developer_thread_id is not None:
            await self.deps.pool.release(
                self.state.developer_thread_id, self.state.developer_worker_id
            )

    async def cmd_cancel(self, reason: str) -> None:
        request = self.request
        if request is None:
            await self.release_thread()  # commands the last turn left running stop too
            if self.state.queue or self.batch:
                dropped = len(self.state.queue) + (1 if self.batch else 0)
                self.batch = []
                self.batch_due = math.inf
                self.state = msgspec.structs.replace(self.state, queue=())
                await self.save()
                await self.out.say(
                    f"Nothing was running; dropped {chat_texts.plural(dropped, 'queued message')}.",
                    plain=True,
                )
            else:
                await self.out.say("Nothing is running.", plain=True)
            return
        if request.cancel(reason):
            self.out.trace(TraceRecord(event="cancel", detail=reason))

    async def cmd_profile(self, argument: str) -> None:
        names = list(self.config.profiles)
        if not argument or argument == "list":
            lines = [
                f"{'•' if name == self.state.profile else '◦'} {name}: "
                f"{self.config.profiles[name].working_directory}"
                + (" (active)" if name == self.state.profile else "")
                for name in names
            ]
            await self.out.say("Profiles:\n" + "\n".join(lines), plain=True)
            return
        if argument not in self.config.profiles:
            await self.out.say(
                f"No profile named {argument!r}. Profiles: {', '.join(names)}", plain=True
            )
            return
        if self.request is not None:
            await self.out.say(
                "Can't switch profiles while a request runs; /cancel it first.", plain=True
            )
            return
        profile = self.config.profiles[argument]
        await self.release_thread()
        self.state = msgspec.structs.replace(
            self.state,
            profile=argument,
            mode=profile.default_mode,
            developer_thread_id=None,
            developer_worker_id=None,
            summary="",
        )
        await self.save()
        await self.out.say(
            f"Switched to profile {argument} ({profile.working_directory}), mode "
            f"{profile.default_mode}. The next message starts a new Codex thread.",
            plain=True,
        )

    def status_text(self) -> str:
        lines = [
            f"Mode: {self.state.mode}",
            f"Profile: {self.state.profile}",
            f"Working directory: {self.profile.working_directory}",
        ]
        request = self.request
        worker = self.state.developer_worker_id
        if request is None:
            lines.append("State: idle")
        else:
            progress = request.progress
            elapsed = chat_texts.format_duration(trio.current_time() - request.started)
            phase = phase_words(progress.phase, progress.detail)
            lines.append(f"State: {phase}, running for {elapsed}")
            if progress.worker is not None:
                worker = progress.worker
        lines.append(f"Queue: {len(self.state.queue)}")
        lines.append(f"Worker: {worker if worker is not None else '-'}")
        usage = self.state.last_usage
        if usage is not None:
            lines.append(
                f"Last run tokens: {usage.input_tokens:,} in ({usage.cached_input_tokens:,} cached)"
                f", {usage.output_tokens:,} out"
            )
        counters = self.state.counters
        lines.append(
            f"Runs: {counters.runs} ({counters.failures} failed, {counters.cancels} cancelled)"
        )
        lines.append(_pool_line(self.deps.pool.statistics()))
        return "\n".join(lines)

    # ------------------------------------------------------------------ buttons

    async def on_callback(self, press: InboundCallback) -> None:
        button = decode_button(press.data)
        match button:
            case CancelButton():
                request = self.request
                if request is not None and button.token == request.token:
                    await self.out.answer(press, "Cancelling…")
                    await self.cmd_cancel("button")
                else:
                    await self.out.answer(press, "That request is no longer running.")
            case ApprovalButton():
                await self.approvals.press(press, button)
            case RerunButton():
                await self.run_again(press, button.token)
            case None:
                await self.out.answer(press, "Unknown button.")
            case _:
                assert_never(button)

    # ------------------------------------------------------------------ serving a request

    async def serve(self, request: Request) -> None:
        """Serve one request to its end (result, failure or cancel), then start the next."""
        self.out.trace(
            TraceRecord(
                event="run_start",
                mode=request.mode,
                profile=self.state.profile,
                preview=self.preview(request.prompt),
            )
        )
        outcome: RequestOutcome | None = None
        try:
            outcome = await serve_request(
                request,
                out=self.out,
                approvals=self.approvals,
                pool=self.deps.pool,
                profile=self.profile,
                session=self.state,
                conversation=self.conversation,
                on_shown=lambda message_id: self.remember_live(request, message_id),
            )
        finally:
            # No outcome only when the whole chat is being stopped (shutdown past its grace):
            # the user has been told, and an interruption keeps the prompt queued. A failure
            # under the request is a `Failed` outcome: reported once, never queued again.
            ended = outcome if outcome is not None else stopped_outcome(request)
            # A queued prompt starts at once: its save (before Codex sees it) carries this
            # request's end too, one fsync'd write instead of two (bench/scale.py).
            follows = outcome is not None and bool(self.state.queue) and not self.closing
            with trio.move_on_after(FINISH_GRACE) as cleanup:
                cleanup.shield = True
                await self.settle(request, ended, save=not follows)
                self.request = None
                if follows:
                    await self.start_next_queued()
            self.request = None if self.request is request else self.request
        await self.start_next_queued()

    async def settle(self, request: Request, outcome: RequestOutcome, *, save: bool = True) -> None:
        """Apply how a request ended to the session, save it (unless the caller's next save
        carries it), and trace the end."""
        self.state = msgspec.structs.replace(self.state, running=None)
        counters = self.state.counters
        tokens = TraceRecord(event="run_end")
        match outcome:
            case Completed(result=result):
                failed = result.error is not None
                usage = result.usage
                thread = result.developer_thread_id or self.state.developer_thread_id
                worker = (
                    result.developer_worker_id
                    if result.developer_thread_id
                    else self.state.developer_worker_id
                )
                if result.failed_phase == "developing":
                    # Codex's thread saw an error: continuing it shifts the next answers by
                    # one (Codex 0.153.4). The next request starts a fresh thread with the
                    # summary as its recap, as after a cancel.
                    thread, worker = None, None
                answer = FAILED_SUMMARY if failed else result.text
                self.state = msgspec.structs.replace(
                    self.state,
                    developer_thread_id=thread,
                    developer_worker_id=worker,
                    summary=_summarize(self.state.summary, request.prompt, answer),
                    last_usage=usage,
                    counters=SessionCounters(
                        runs=counters.runs + 1,
                        failures=counters.failures + (1 if failed else 0),
                        cancels=counters.cancels,
                        input_tokens=counters.input_tokens + usage.input_tokens,
                        output_tokens=counters.output_tokens + usage.output_tokens,
                    ),
                )
                tokens = TraceRecord(
                    event="run_end",
                    input_tokens=usage.input_tokens,
                    cached_input_tokens=usage.cached_input_tokens,
                    output_tokens=usage.output_tokens,
                    total_tokens=usage.total_tokens,
                )
                end, detail = ("failed" if failed else "ok"), result.error
            case CancelledByUser() | Interrupted():
                if isinstance(outcome, Interrupted):
                    # Put it back: it runs again after the restart instead of being lost.
                    self.state = msgspec.structs.replace(
                        self.state, queue=(request.prompt, *self.state.queue)
                    )
                self.state = msgspec.structs.replace(
                    self.state,
                    counters=msgspec.structs.replace(
                        counters, runs=counters.runs + 1, cancels=counters.cancels + 1
                    ),
                )
                end = "cancelled"
                detail = outcome.reason if isinstance(outcome, CancelledByUser) else "shutdown"
            case Failed():
                self.state = msgspec.structs.replace(
                    self.state,
                    counters=msgspec.structs.replace(
                        counters, runs=counters.runs + 1, failures=counters.failures + 1
                    ),
                )
                end, detail = "failed", outcome.error
            case _:
                assert_never(outcome)
        if save:
            await self.save()
        self.out.trace(
            msgspec.structs.replace(
                tokens,
                mode=request.mode,
                profile=self.state.profile,
                duration_ms=round(outcome.elapsed * 1000, 1),
                outcome=end,
                detail=detail,
            )
        )


def is_split_part(text: str) -> bool:
    """True when `text` is (nearly) as long as a Telegram message can be: a client may have
    split a longer paste there, and the rest follows in a moment. UTF-16 units, as Telegram
    counts them."""
    return len(text.encode("utf-16-le")) // 2 >= TELEGRAM_TEXT_LIMIT - SPLIT_SLACK


def _pool_line(stats: PoolStatistics) -> str:
    """The bot's Codex capacity in one line: a phone user can tell "busy" from "broken"."""
    counts = Counter(worker.state for worker in stats.workers)
    states = ", ".join(f"{counts[state]} {state}" for state in _WORKER_STATES if counts[state])
    waiting = f"; {chat_texts.plural(stats.waiting, 'request')} waiting" if stats.waiting else ""
    return f"Codex workers: {states or 'none'}{waiting}"


_WORKER_STATES: Final = ("idle", "busy", "starting", "draining", "dead")


def _summarize(previous: str, prompt: str, answer: str) -> str:
    """A rolling summary: the last exchanges, newest last, cut to `SUMMARY_LIMIT`."""
    entry = f"User asked: {prompt[:300]}\nResult: {answer[:500]}"
    combined = f"{previous}\n\n{entry}" if previous else entry
    return combined[-SUMMARY_LIMIT:]


async def run(
    key: SessionKey,
    inbox: trio.MemoryReceiveChannel[InboundMessage | InboundCallback],
    deps: ChatDeps,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> Literal["idle", "closed"]:
    """Serve one chat until it has been idle for ``sessions.idle_ttl`` or its inbox ends.

    Inbox: `InboundMessage` / `InboundCallback` of this session key.
    Emits: `SenderMsg` to the sender (blocking when the sender is full: this chat only
        waits; a typing action is shed instead); `TraceRecord`s; Codex calls through the pool.
    Backpressure: the router never blocks on this inbox (it sheds when full).
    Shutdown: on end-of-channel, finishes the running request (the router bounds it with the
        drain grace; when cancelled, a shutdown notice goes out and the prompt is queued
        again for the next start) and returns "closed". Returns "idle" only with an empty
        inbox, so the router can drop the actor without losing a message.
    """
    async with trio.open_nursery() as nursery:
        chat = _Chat(key, deps, nursery)
        await chat.load()
        await chat.recover()
        task_status.started()
        await chat.start_next_queued()
        result: Literal["idle", "closed"] = "closed"
        try:
            while True:
                if chat.idle():
                    deadline = trio.current_time() + chat.config.sessions.idle_ttl
                else:
                    deadline = chat.batch_due
                message = None
                with trio.move_on_at(deadline):
                    try:
                        message = await inbox.receive()
                    except trio.EndOfChannel:
                        break
                if message is not None:
                    await chat.handle(message)
                    continue
                if chat.batch and trio.current_time() >= chat.batch_due:
                    await chat.flush_batch()
                elif chat.idle() and inbox.statistics().current_buffer_used == 0:
                    result = "idle"
                    break
        finally:
            chat.closing = True
            if chat.batch:
                # Keep a half-collected batch: it runs after the restart.
                chat.state = msgspec.structs.replace(
                    chat.state, queue=(*chat.state.queue, "\n\n".join(chat.batch)), batch=()
                )
                chat.batch = []
                with trio.move_on_after(FINISH_GRACE) as cleanup:
                    cleanup.shield = True
                    await chat.save()
        return result
