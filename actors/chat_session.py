"""The chat actor: one per session key (chat, user[, forum topic]).

It owns the conversation: mode, profile, the Codex thread binding, the queue of prompts, the
running workflow and its cancel scope, pending approvals, and the session file. The inbox
loop never waits for Codex: a request runs in a child task, so commands, queueing, button
presses and ``/cancel`` are answered while it runs.

- Text while idle starts a batch: texts arriving within ``batch_window`` of each other become
  one prompt. Text while a request runs is queued (bounded by ``queue_limit``) and answered
  "queued (position N)"; queued prompts run one after another and survive restarts.
- Progress is one live message per request (elapsed, phase, worker, last actions, a Cancel
  button), edited through the sender, which coalesces edits.
- Approvals relayed by the pool are shown with Approve / Approve for session / Deny buttons
  carrying an unguessable token; the first valid press wins, every press is answered, and no
  answer within ``approval_timeout`` means deny.
- The session file is written on every change (`SessionStore`, atomic).
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, assert_never

import msgspec
import trio

from actors import chat_texts
from actors.role_caller import PoolRoleCaller
from actors.workflows import PHASE_PLAN, carry_out_workflow
from orchestrator.messages import (
    AgentMessageDelta,
    AnswerCallback,
    ApprovalRequest,
    Button,
    CloseLive,
    CodexNotice,
    CodexProgress,
    CommandFinished,
    CommandStarted,
    InboundCallback,
    InboundMessage,
    PatchApplied,
    RunStarted,
    SendChatAction,
    SendReply,
    ThreadMoved,
    TokenCount,
    TraceRecord,
    UpdateLive,
    WaitingForWorker,
)
from orchestrator.prompts import load_instructions
from orchestrator.session_store import SessionCounters, SessionState
from orchestrator.workflow_types import TokenUsage

if TYPE_CHECKING:
    from orchestrator.config import Config, Profile
    from orchestrator.messages import (
        ApprovalAsk,
        ApprovalDecision,
        SenderMsg,
        SessionKey,
    )
    from orchestrator.ports import CodexPool, PoolStatistics, TraceEmit
    from orchestrator.session_store import SessionStore
    from orchestrator.workflow_types import RoleInstructions, RoleTrace, WorkflowResult

__all__ = ["ChatDeps", "run"]

logger: Final = logging.getLogger(__name__)

TYPING_DELAY: Final = 0.5
"""Seconds a request runs before "typing…" shows (saves Bot API calls on quick answers)."""

TYPING_INTERVAL: Final = 4.5
"""Seconds between "typing…" actions while a request runs (Telegram shows one for ~5 s)."""

LIVE_DELAY: Final = 1.0
"""Seconds a request runs before its progress message appears."""

LIVE_REFRESH: Final = 5.0
"""Seconds between progress refreshes when nothing happens (the elapsed time moves on)."""

LAST_ACTIONS: Final = 4
"""Actions listed on the progress message."""

SUMMARY_LIMIT: Final = 1500
"""Characters of conversation summary kept as the context preamble."""

FINISH_GRACE: Final = 5.0
"""Seconds to report a request's end even when the chat is being cancelled."""

PROGRESS_BUFFER: Final = 64
"""Progress events buffered per request; the pool drops events when this is full."""


@dataclass(frozen=True)
class ChatDeps:
    """Everything a chat actor needs, assembled by the router."""

    sender: trio.MemorySendChannel[SenderMsg]
    pool: CodexPool
    store: SessionStore
    config: Config
    trace: TraceEmit


@dataclass
class _Run:
    """The request being worked on."""

    number: int
    prompt: str
    token: str
    started: float
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    phase: str = "starting"
    detail: str = ""
    worker: int | None = None
    actions: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    usage: TokenUsage = field(default_factory=TokenUsage)
    cancel_reason: str = ""
    told_waiting: bool = False
    told_moved: bool = False
    live_shown: bool = False
    dirty: trio.Event = field(default_factory=trio.Event)


@dataclass
class _Approval:
    request: ApprovalRequest
    slot: str
    decided: trio.Event = field(default_factory=trio.Event)


class _Chat:
    """State and behaviour of one chat actor (all methods run in its nursery)."""

    def __init__(self, key: SessionKey, deps: ChatDeps, nursery: trio.Nursery) -> None:
        self.key = key
        self.deps = deps
        self.config = deps.config
        self.nursery = nursery
        self.conversation = key.file_stem()
        self.state = SessionState(
            mode=self.config.profiles[self.config.default_profile].default_mode,
            profile=self.config.default_profile,
        )
        self.run: _Run | None = None
        self.run_done = trio.Event()
        self.runs = 0
        self.batch: list[str] = []
        self.batch_due = math.inf
        self.approvals: dict[str, _Approval] = {}
        self.closing = False

    # ------------------------------------------------------------------ output

    async def say(self, markdown: str, *, plain: bool = False) -> None:
        await self.deps.sender.send(
            SendReply(
                chat_id=self.key.chat_id,
                thread_id=self.key.thread_id,
                markdown=markdown,
                plain=plain,
            )
        )

    def trace(self, event: str, **fields: object) -> None:
        record = msgspec.convert(
            {
                "event": event,
                "chat_id": self.key.chat_id,
                "user_id": self.key.user_id,
                "thread_id": self.key.thread_id,
                **{name: value for name, value in fields.items() if value is not None},
            },
            TraceRecord,
        )
        self.deps.trace(record)

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
            self.trace("session_corrupt", detail=f"moved to {loaded.corrupt_moved_to.name}")
            await self.say(chat_texts.SESSION_CORRUPT)
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
        return self.run is None and not self.batch and not self.state.queue

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
            self.trace("update", update_id=message.update_id, outcome="edited_ignored")
            await self.say(chat_texts.EDITED_IGNORED, plain=True)
            return
        if message.command is not None:
            self.trace("command", command=message.command, update_id=message.update_id)
            await self.on_command(message.command, message.command_args)
            return
        if message.text is None or not message.text.strip():
            await self.say(chat_texts.TEXT_ONLY, plain=True)
            return
        await self.on_text(message.text)

    async def on_text(self, text: str) -> None:
        if self.run is None and not self.state.queue:
            self.batch.append(text)
            window = self.config.sessions.batch_window
            self.batch_due = trio.current_time() + window
            if window <= 0:
                await self.flush_batch()
            return
        # A request is running: queue it (joining a prompt queued a moment ago).
        queue = list(self.state.queue)
        if len(queue) >= self.config.sessions.queue_limit:
            await self.say(
                f"The queue is full ({len(queue)} waiting); wait for a result or /cancel.",
                plain=True,
            )
            self.trace("queued", outcome="rejected", detail="queue full")
            return
        queue.append(text)
        self.state = msgspec.structs.replace(self.state, queue=tuple(queue))
        await self.save()
        self.trace("queued", detail=f"position {len(queue)}", preview=self.preview(text))
        await self.say(f"Queued (position {len(queue)}).", plain=True)

    async def flush_batch(self) -> None:
        if not self.batch:
            return
        prompt = "\n\n".join(self.batch)
        self.batch = []
        self.batch_due = math.inf
        if self.run is None:
            self.start_run(prompt)
        else:
            self.state = msgspec.structs.replace(self.state, queue=(*self.state.queue, prompt))
            await self.save()

    def start_run(self, prompt: str) -> None:
        self.runs += 1
        run = _Run(
            number=self.runs,
            prompt=prompt,
            token=secrets.token_urlsafe(9),
            started=trio.current_time(),
        )
        self.run = run
        self.run_done = trio.Event()
        self.nursery.start_soon(self.execute, run)

    async def start_next_queued(self) -> None:
        if self.run is not None or not self.state.queue or self.closing:
            return
        prompt, *rest = self.state.queue
        self.state = msgspec.structs.replace(self.state, queue=tuple(rest))
        await self.save()
        self.start_run(prompt)

    # ------------------------------------------------------------------ commands

    async def on_command(self, name: str, args: str) -> None:
        argument = args.strip()
        match name:
            case "start" | "help":
                await self.say(chat_texts.HELP)
            case "mode":
                await self.cmd_mode(argument.lower())
            case "new":
                await self.cmd_new()
            case "status":
                await self.say(self.status_text(), plain=True)
            case "cancel":
                await self.cmd_cancel("/cancel")
            case "profile":
                await self.cmd_profile(argument)
            case _:
                await self.say(chat_texts.unknown_command(name), plain=True)

    async def cmd_mode(self, argument: str) -> None:
        if argument not in ("single", "plan"):
            await self.say(
                f"Mode is {self.state.mode}. Use /mode single or /mode plan.", plain=True
            )
            return
        mode: Literal["single", "plan"] = "single" if argument == "single" else "plan"
        self.state = msgspec.structs.replace(self.state, mode=mode)
        await self.save()
        suffix = " (from the next request)" if self.run is not None else ""
        await self.say(f"Mode set to {mode}{suffix}.", plain=True)

    async def cmd_new(self) -> None:
        if self.run is not None:
            await self.say("A request is running; /cancel it first, then /new.", plain=True)
            return
        self.state = msgspec.structs.replace(
            self.state, developer_thread_id=None, developer_worker_id=None, summary=""
        )
        await self.save()
        await self.say(
            "Started a new conversation: the next message opens a fresh Codex thread.", plain=True
        )

    async def cmd_cancel(self, reason: str) -> None:
        run = self.run
        if run is None:
            if self.state.queue or self.batch:
                dropped = len(self.state.queue) + (1 if self.batch else 0)
                self.batch = []
                self.batch_due = math.inf
                self.state = msgspec.structs.replace(self.state, queue=())
                await self.save()
                await self.say(
                    f"Nothing was running; dropped {dropped} queued message(s).", plain=True
                )
            else:
                await self.say("Nothing is running.", plain=True)
            return
        if not run.cancel_reason:
            run.cancel_reason = reason
            run.scope.cancel()
            self.trace("cancel", detail=reason)

    async def cmd_profile(self, argument: str) -> None:
        names = list(self.config.profiles)
        if not argument or argument == "list":
            lines = [
                f"{'•' if name == self.state.profile else '◦'} {name}: "
                f"{self.config.profiles[name].working_directory}"
                + (" (active)" if name == self.state.profile else "")
                for name in names
            ]
            await self.say("Profiles:\n" + "\n".join(lines), plain=True)
            return
        if argument not in self.config.profiles:
            await self.say(
                f"No profile named {argument!r}. Profiles: {', '.join(names)}", plain=True
            )
            return
        if self.run is not None:
            await self.say(
                "Can't switch profiles while a request runs; /cancel it first.", plain=True
            )
            return
        profile = self.config.profiles[argument]
        self.state = msgspec.structs.replace(
            self.state,
            profile=argument,
            mode=profile.default_mode,
            developer_thread_id=None,
            developer_worker_id=None,
            summary="",
        )
        await self.save()
        await self.say(
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
        run = self.run
        if run is None:
            lines.append("State: idle")
        else:
            elapsed = chat_texts.format_duration(trio.current_time() - run.started)
            phase = run.phase + (f" ({run.detail})" if run.detail else "")
            lines.append(f"State: running for {elapsed}, {phase}")
        lines.append(f"Queue: {len(self.state.queue)}")
        worker = run.worker if run and run.worker is not None else self.state.developer_worker_id
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

    # ------------------------------------------------------------------ callbacks

    async def on_callback(self, press: InboundCallback) -> None:
        kind, _, rest = press.data.partition(":")
        if kind == "cx":
            run = self.run
            if run is not None and rest == run.token:
                await self.answer(press, "Cancelling…")
                await self.cmd_cancel("button")
            else:
                await self.answer(press, "That request is no longer running.")
            return
        if kind == "ap":
            token, _, choice = rest.partition(":")
            pending = self.approvals.get(token)
            decision: ApprovalDecision | None = {
                "a": "approved",
                "s": "approved_for_session",
                "d": "denied",
            }.get(choice)  # type: ignore[assignment]
            if pending is None or decision is None or pending.decided.is_set():
                await self.answer(press, "This button is not for you, or it has expired.")
                return
            await self.answer(press, "Approved" if decision != "denied" else "Denied")
            await self.decide(token, decision, by="button")
            return
        await self.answer(press, "Unknown button.")

    async def answer(self, press: InboundCallback, text: str) -> None:
        await self.deps.sender.send(
            AnswerCallback(callback_query_id=press.callback_query_id, text=text)
        )

    # ------------------------------------------------------------------ approvals

    async def serve_approvals(self, approvals: trio.MemoryReceiveChannel[ApprovalRequest]) -> None:
        async for request in approvals:
            token = secrets.token_urlsafe(9)
            slot = f"approval-{token}"
            self.approvals[token] = _Approval(request=request, slot=slot)
            ask = request.ask
            if ask.kind == "exec":
                where = ask.cwd or self.profile.working_directory
                body = f"Codex asks to run:\n$ {ask.command}\nin {where}"
            else:
                files = "\n".join(f"• {path}" for path in ask.changes) or "(no files listed)"
                body = f"Codex asks to change files:\n{files}"
            keyboard = (
                (
                    Button("✅ Approve", f"ap:{token}:a"),
                    Button("✅ For session", f"ap:{token}:s"),
                    Button("⛔ Deny", f"ap:{token}:d"),
                ),
            )
            await self.deps.sender.send(
                UpdateLive(
                    chat_id=self.key.chat_id,
                    thread_id=self.key.thread_id,
                    slot=slot,
                    text=body,
                    keyboard=keyboard,
                )
            )
            self.nursery.start_soon(self.approval_timeout, token)

    async def approval_timeout(self, token: str) -> None:
        pending = self.approvals.get(token)
        if pending is None:
            return
        with trio.move_on_after(self.config.sessions.approval_timeout):
            await pending.decided.wait()
        if not pending.decided.is_set():
            await self.decide(token, "denied", by="timeout")

    async def decide(self, token: str, decision: ApprovalDecision, *, by: str) -> None:
        pending = self.approvals.pop(token, None)
        if pending is None or pending.decided.is_set():
            return
        pending.decided.set()
        with contextlib.suppress(
            trio.BrokenResourceError, trio.ClosedResourceError, trio.WouldBlock
        ):
            pending.request.reply_to.send_nowait(decision)
        pending.request.reply_to.close()
        label = {
            "approved": "✅ Approved",
            "approved_for_session": "✅ Approved for this session",
            "denied": "⛔ Denied",
        }[decision]
        if by == "timeout":
            label = "⌛ No answer in time: denied"
        what = _approval_subject(pending.request.ask)
        await self.deps.sender.send(
            CloseLive(chat_id=self.key.chat_id, slot=pending.slot, final_text=f"{label}: {what}")
        )
        self.trace(
            "approval",
            outcome="timeout" if by == "timeout" else decision,
            detail=what[:300],
        )

    async def deny_all_pending(self) -> None:
        """The request ended with questions open: deny them and take their buttons away.

        Runs in the request's ``finally``, maybe cancelled: shielded, bounded by FINISH_GRACE.
        """
        ended = [self.approvals.pop(token) for token in list(self.approvals)]
        if not ended:
            return
        for pending in ended:
            pending.decided.set()
            pending.request.reply_to.close()
        with trio.move_on_after(FINISH_GRACE) as cleanup:
            cleanup.shield = True
            for pending in ended:
                subject = _approval_subject(pending.request.ask)
                await self.deps.sender.send(
                    CloseLive(
                        chat_id=self.key.chat_id,
                        slot=pending.slot,
                        final_text=f"⏹ Not answered before the request ended: {subject}",
                    )
                )

    # ------------------------------------------------------------------ running a request

    async def execute(self, run: _Run) -> None:
        """Run one request to its end (result, failure or cancel), then start the next."""
        profile = self.profile
        self.trace(
            "run_start",
            mode=self.state.mode,
            profile=self.state.profile,
            preview=self.preview(run.prompt),
        )
        progress_send, progress_receive = trio.open_memory_channel[CodexProgress](PROGRESS_BUFFER)
        approvals_send, approvals_receive = trio.open_memory_channel[ApprovalRequest](4)
        error: str | None = None
        caller = PoolRoleCaller(
            self.deps.pool,
            conversation=self.conversation,
            profile=profile,
            summary=self.state.summary,
            progress=progress_send,
            approvals=approvals_send,
        )
        try:
            if self.deps.store.offload and _prompt_files(profile):
                instructions = await trio.to_thread.run_sync(current_instructions, profile)
            else:  # no files to look at (the usual case): no thread hop on the hot path
                instructions = current_instructions(profile)
        except (OSError, ValueError) as problem:
            instructions = None
            error = f"cannot read the profile's instruction files: {problem}"
        result_box: list[WorkflowResult] = []
        completed = False
        try:
            await self._work(
                run,
                caller,
                instructions,
                (progress_send, progress_receive),
                (approvals_send, approvals_receive),
                result_box,
            )
            completed = True
        finally:
            await self.deny_all_pending()
            if not completed:
                # The whole chat is being stopped (shutdown past its grace, or a crash):
                # say so and keep the prompt for the next start.
                run.cancel_reason = run.cancel_reason or "shutdown"
                await self.finish(run, None, None, moved=False)
        await self.finish(run, result_box[0] if result_box else None, error, moved=caller.moved)

    async def _work(
        self,
        run: _Run,
        caller: PoolRoleCaller,
        instructions: RoleInstructions | None,
        progress: tuple[
            trio.MemorySendChannel[CodexProgress], trio.MemoryReceiveChannel[CodexProgress]
        ],
        approvals: tuple[
            trio.MemorySendChannel[ApprovalRequest], trio.MemoryReceiveChannel[ApprovalRequest]
        ],
        result_box: list[WorkflowResult],
    ) -> None:
        """The workflow and its helpers (progress, approvals, typing, live message)."""
        progress_send, progress_receive = progress
        approvals_send, approvals_receive = approvals
        with run.scope:
            async with trio.open_nursery() as helpers:
                helpers.start_soon(self.consume_progress, run, progress_receive)
                helpers.start_soon(self.serve_approvals, approvals_receive)
                helpers.start_soon(self.keep_typing)
                helpers.start_soon(self.refresh_live, run)
                if instructions is not None:
                    with progress_send, approvals_send:
                        result = await carry_out_workflow(
                            run.prompt,
                            mode=self.state.mode,
                            caller=caller,
                            reporter=_Reporter(self, run),
                            trace=lambda role_trace: self.trace_role(role_trace),
                            instructions=instructions,
                            thread_id=self.state.developer_thread_id,
                            worker_id=self.state.developer_worker_id,
                        )
                        result_box.append(result)
                helpers.cancel_scope.cancel()

    async def finish(
        self, run: _Run, result: WorkflowResult | None, error: str | None, *, moved: bool
    ) -> None:
        elapsed = trio.current_time() - run.started
        counters = self.state.counters
        with trio.move_on_after(FINISH_GRACE) as cleanup:
            cleanup.shield = True
            if result is None:
                cancelled = bool(run.cancel_reason)
                if run.cancel_reason == "shutdown":
                    # Put it back: it runs again after the restart instead of being lost.
                    self.state = msgspec.structs.replace(
                        self.state, queue=(run.prompt, *self.state.queue)
                    )
                    status = "⏹ Interrupted by a restart of the bot; it will run again afterwards."
                elif cancelled:
                    status = f"🛑 Cancelled after {chat_texts.format_duration(elapsed)}."
                else:
                    status = f"❌ Failed: {error or 'unknown error'}"
                self.state = msgspec.structs.replace(
                    self.state,
                    counters=msgspec.structs.replace(
                        counters,
                        runs=counters.runs + 1,
                        cancels=counters.cancels + (1 if cancelled else 0),
                        failures=counters.failures + (0 if cancelled else 1),
                    ),
                )
                outcome = "cancelled" if cancelled else "failed"
                await self.say(status, plain=True)
                await self.close_live(run, status)
            else:
                failed = result.error is not None
                usage = result.usage
                summary = _summarize(self.state.summary, run.prompt, result.text)
                self.state = msgspec.structs.replace(
                    self.state,
                    developer_thread_id=result.developer_thread_id
                    or self.state.developer_thread_id,
                    developer_worker_id=(
                        result.developer_worker_id
                        if result.developer_thread_id
                        else self.state.developer_worker_id
                    ),
                    summary=summary,
                    last_usage=usage,
                    counters=SessionCounters(
                        runs=counters.runs + 1,
                        failures=counters.failures + (1 if failed else 0),
                        cancels=counters.cancels,
                        input_tokens=counters.input_tokens + usage.input_tokens,
                        output_tokens=counters.output_tokens + usage.output_tokens,
                    ),
                )
                outcome = "failed" if failed else "ok"
                headline = "❌ Failed" if failed else "✅ Done"
                if moved:
                    await self.say(
                        "Note: your earlier Codex session was no longer available, so this "
                        "continued in a new one with a summary of the conversation.",
                        plain=True,
                    )
                # The answer first: under per-chat spacing, closing the progress message
                # first held every result back by a second (bench/flood.py).
                await self.say(_final_text(result, run))
                await self.close_live(run, f"{headline} in {chat_texts.format_duration(elapsed)}.")
            await self.save()
            self.trace(
                "run_end",
                mode=self.state.mode,
                profile=self.state.profile,
                duration_ms=round(elapsed * 1000, 1),
                input_tokens=result.usage.input_tokens if result else None,
                cached_input_tokens=result.usage.cached_input_tokens if result else None,
                output_tokens=result.usage.output_tokens if result else None,
                total_tokens=result.usage.total_tokens if result else None,
                outcome=outcome,
                detail=(result.error if result else (run.cancel_reason or error)),
            )
        self.run = None
        self.run_done.set()
        await self.start_next_queued()

    def trace_role(self, role: RoleTrace) -> None:
        self.trace(
            "role",
            role=role.role,
            round=role.round,
            worker=role.worker_id,
            codex_thread=role.thread_id,
            duration_ms=round(role.duration * 1000, 1),
            input_tokens=role.usage.input_tokens,
            cached_input_tokens=role.usage.cached_input_tokens,
            output_tokens=role.usage.output_tokens,
            total_tokens=role.usage.total_tokens,
            outcome=role.outcome,
            detail=role.detail or None,
        )

    async def consume_progress(
        self, run: _Run, progress: trio.MemoryReceiveChannel[CodexProgress]
    ) -> None:
        async for event in progress:
            match event:
                case RunStarted():
                    run.worker = event.worker_id
                case WaitingForWorker():
                    if not run.told_waiting:
                        run.told_waiting = True
                        run.actions.append("waiting for a worker")
                case ThreadMoved():
                    run.actions.append("continuing in a new Codex session")
                case CommandStarted():
                    run.actions.append(f"$ {event.command}")
                case CommandFinished():
                    run.actions.append(f"$ {event.command} (exit {event.exit_code})")
                case PatchApplied():
                    run.files.extend(path for path in event.files if path not in run.files)
                    run.actions.append(
                        "patched " + ", ".join(event.files) if event.files else "patched"
                    )
                case TokenCount():
                    run.usage = event.usage
                    continue
                case CodexNotice():
                    run.actions.append(f"⚠️ {event.message}")
                case AgentMessageDelta():
                    continue
            del run.actions[:-LAST_ACTIONS]
            run.dirty.set()

    async def keep_typing(self) -> None:
        await trio.sleep(TYPING_DELAY)  # a quick answer needs no typing indicator
        while True:
            await self.deps.sender.send(
                SendChatAction(chat_id=self.key.chat_id, thread_id=self.key.thread_id)
            )
            await trio.sleep(TYPING_INTERVAL)

    async def refresh_live(self, run: _Run) -> None:
        # A quick answer needs no progress message (it would only delay the answer by the
        # chat's 1 s spacing): show progress once the request has run for LIVE_DELAY.
        await trio.sleep(LIVE_DELAY)
        while True:
            run.dirty = trio.Event()  # before sending: a change during the send is kept
            run.live_shown = True
            await self.deps.sender.send(
                UpdateLive(
                    chat_id=self.key.chat_id,
                    thread_id=self.key.thread_id,
                    slot=f"run-{run.number}",
                    text=self.live_text(run),
                    keyboard=((Button("🛑 Cancel", f"cx:{run.token}"),),),
                )
            )
            with trio.move_on_after(LIVE_REFRESH):
                await run.dirty.wait()

    def live_text(self, run: _Run) -> str:
        elapsed = chat_texts.format_duration(trio.current_time() - run.started)
        lines = [f"⏳ Working ({self.state.mode} mode), {elapsed}", f"Phase: {run.phase}"]
        if run.detail:
            lines.append(run.detail[:300])
        if run.worker is not None:
            lines.append(f"Worker {run.worker}")
        if run.actions:
            lines.append("Last actions:")
            lines.extend(f"• {action[:200]}" for action in run.actions)
        return "\n".join(lines)

    async def close_live(self, run: _Run, text: str) -> None:
        if not run.live_shown:
            return  # the request was quick: no progress message was shown
        await self.deps.sender.send(
            CloseLive(chat_id=self.key.chat_id, slot=f"run-{run.number}", final_text=text)
        )


def _approval_subject(ask: ApprovalAsk) -> str:
    """What an approval was about, for the line that replaces its buttons."""
    if ask.kind == "exec":
        return f"$ {ask.command}"
    return ", ".join(ask.changes) or "file changes"


def _pool_line(stats: PoolStatistics) -> str:
    """The bot's Codex capacity in one line: a phone user can tell "busy" from "broken"."""
    counts = Counter(worker.state for worker in stats.workers)
    states = ", ".join(f"{counts[state]} {state}" for state in _WORKER_STATES if counts[state])
    waiting = f"; {stats.waiting} request(s) waiting" if stats.waiting else ""
    return f"Codex workers: {states or 'none'}{waiting}"


_WORKER_STATES: Final = ("idle", "busy", "starting", "draining", "dead")


_FileStamp = tuple[int, int] | None
_INSTRUCTIONS: dict[Profile, tuple[tuple[_FileStamp, ...], RoleInstructions]] = {}
"""Role instructions per profile with the stamps of the files they came from: reading up to
five files per request costs latency, a stat of each does not."""


def _prompt_files(profile: Profile) -> list[Path]:
    named = [profile.system_prompt_file, *msgspec.structs.astuple(profile.role_prompts)]
    return [Path(path) for path in named if path]


def _stamp(path: Path) -> _FileStamp:
    try:
        status = path.stat()
    except OSError:
        return None  # reading it will say what is wrong
    return status.st_mtime_ns, status.st_size


def current_instructions(profile: Profile) -> RoleInstructions:
    """`instructions_for` cached per profile, read again once one of its files changed:
    an edited prompt file applies from the next request, without a restart."""
    stamps = tuple(_stamp(path) for path in _prompt_files(profile))
    cached = _INSTRUCTIONS.get(profile)
    if cached is not None and cached[0] == stamps:
        return cached[1]
    instructions = instructions_for(profile)
    _INSTRUCTIONS[profile] = (stamps, instructions)
    return instructions


def instructions_for(profile: Profile) -> RoleInstructions:
    """The role instructions of `profile`: shipped defaults, its overrides, its system prompt."""
    overrides = {
        role: Path(path)
        for role, path in msgspec.structs.asdict(profile.role_prompts).items()
        if path
    }
    system_prompt = (
        Path(profile.system_prompt_file).read_text(encoding="utf-8")
        if profile.system_prompt_file
        else None
    )
    return load_instructions(overrides, system_prompt=system_prompt)


class _Reporter:
    """`PhaseReporter` for one request: updates the live message, shows the plan."""

    def __init__(self, chat: _Chat, run: _Run) -> None:
        self._chat = chat
        self._run = run

    async def phase(self, name: str, detail: str) -> None:
        if name == PHASE_PLAN:
            await self._chat.say(f"**Plan**\n\n{detail}")
            return
        self._run.phase = name
        self._run.detail = detail
        self._run.dirty.set()


def _summarize(previous: str, prompt: str, answer: str) -> str:
    """A rolling summary: the last exchanges, newest last, cut to `SUMMARY_LIMIT`."""
    entry = f"User asked: {prompt[:300]}\nResult: {answer[:500]}"
    combined = f"{previous}\n\n{entry}" if previous else entry
    return combined[-SUMMARY_LIMIT:]


def _final_text(result: WorkflowResult, run: _Run) -> str:
    """The result message: Codex's answer plus what was changed (when Codex reported it)."""
    text = result.text.strip() or "(Codex gave no text)"
    files = list(result.files_changed) + [
        path for path in run.files if path not in result.files_changed
    ]
    if result.mode_used == "single" and files and "Files changed" not in text:
        text += "\n\nFiles changed: " + ", ".join(f"`{path}`" for path in files)
    return text


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
        waits); `TraceRecord`s; Codex runs through the pool.
    Backpressure: the router never blocks on this inbox (it sheds when full).
    Shutdown: on end-of-channel, finishes the running request (the router bounds it with the
        drain grace; when cancelled, a shutdown notice goes out and the prompt is queued
        again for the next start) and returns "closed". Returns "idle" only with an empty
        inbox, so the router can drop the actor without losing a message.
    """
    async with trio.open_nursery() as nursery:
        chat = _Chat(key, deps, nursery)
        await chat.load()
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
                    chat.state, queue=(*chat.state.queue, "\n\n".join(chat.batch))
                )
                chat.batch = []
                with trio.CancelScope(shield=True):
                    await chat.save()
        return result
