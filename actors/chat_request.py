"""One request's life in a chat: from the prompt to the result message.

A *request* is one user prompt (texts sent within the batch window count as one) served by the
chat. `serve_request` carries out the workflow of the chat's mode (a *workflow* is single or
plan mode; each of its Codex *calls* is one role on a worker) inside the request's cancel
scope, with its helpers:

- progress events from the pool become the request's `Progress` (phase, worker, last actions:
  `actors.chat_progress`);
- the live progress message appears after `LIVE_DELAY` and is edited as things happen (the
  sender coalesces the edits), with a Cancel button;
- "typing…" shows after `TYPING_DELAY` and is repeated every `TYPING_INTERVAL` by one task,
  except while Codex waits for the user's answer to an approval question; an action the
  sender's inbox has no room for is shed, never queued;
- Codex's approval questions are shown by the chat's `Approvals`.

Then it says how the request ended (the answer, a failure, a cancel, an interruption), closes
the progress message and returns a `RequestOutcome`. The chat applies the outcome to the
session (counters, the Codex thread, the summary) and starts the next queued prompt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeAlias, assert_never

import msgspec
import trio

from actors.button_data import cancel_data, diff_data
from actors.chat_approvals import APPROVAL_BUFFER
from actors.chat_background import background_note, stop_keyboard, stop_slot, stopped_note
from actors.chat_progress import Progress, follow_progress, live_text
from actors.chat_texts import format_duration, thread_line, working_directory_gone
from actors.role_caller import PoolRoleCaller
from actors.workflows import PHASE_PLAN, carry_out_workflow
from orchestrator import disk
from orchestrator.channels import open_mailbox
from orchestrator.codex_runs import ApprovalRequest, CodexProgress
from orchestrator.errors import GitError, describe
from orchestrator.messages import Button, TraceRecord
from orchestrator.prompts import current_instructions, profile_prompt_files
from orchestrator.rendering import close_open_fence
from orchestrator.words import plural
from orchestrator.workflow_types import Mode, WorkflowResult
from orchestrator.workspace_files import in_git_work_tree

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from actors.chat_approvals import Approvals
    from actors.chat_output import ChatOutput
    from orchestrator.config import Profile
    from orchestrator.ports import CodexPool, GitWorktrees
    from orchestrator.session_store import SessionState
    from orchestrator.workflow_types import RoleInstructions, RoleTrace

__all__ = [
    "FINISH_GRACE",
    "CancelledByUser",
    "Completed",
    "Failed",
    "Interrupted",
    "Request",
    "RequestOutcome",
    "serve_request",
    "stopped_outcome",
]

logger: Final = logging.getLogger(__name__)

TYPING_DELAY: Final = 0.5
"""Seconds a request runs before "typing…" shows (saves Bot API calls on quick answers)."""

TYPING_INTERVAL: Final = 4.5
"""Seconds between "typing…" actions while a request runs (Telegram shows one for ~5 s)."""

LIVE_DELAY: Final = 1.0
"""Seconds a request runs before its progress message appears."""

LIVE_REFRESH: Final = 5.0
"""Seconds between progress refreshes when nothing happens (the elapsed time moves on)."""

LIVE_MIN_INTERVAL: Final = 1.0
"""Seconds between two updates of the progress message (the answer streams in many pieces)."""

FINISH_GRACE: Final = 5.0
"""Seconds to report a request's end even when the chat is being cancelled."""

DIRTY_CHECK_SECONDS: Final = 2.0
"""Seconds the result waits for ``git status`` (whether to offer "Show diff" after a command
made files) before it goes without the button: a huge repository must not hold the answer
up, nor use up `FINISH_GRACE`."""

SHOWN_BUFFER: Final = 4
"""Ids of the progress message the sender can report before the chat has noted them."""

PROGRESS_BUFFER: Final = 64
"""Progress events buffered per request; the pool drops events when this is full."""

INTERNAL_ERROR: Final = (
    "❌ Something went wrong inside the bot while it worked on this request, so it stopped. "
    "It will not run again by itself: send it again to retry, or /new to start over."
)

UNREADABLE_INSTRUCTIONS: Final = (
    "❌ I could not read this profile's instruction files, so nothing was run. "
    "Fix the files (or ask the bot's owner to), then send the request again."
)

NO_TEXT: Final = "Codex finished without writing an answer."

INTERRUPTED: Final = (
    "⏹ Interrupted: the bot is stopping. It runs again from the start when the bot is back "
    "(Codex had not changed anything yet)."
)
"""A stop stops it for good only if the bot never comes back, so "when the bot is back", not
"after the restart" (``systemctl stop`` brings none)."""

INTERRUPTED_OFFERED: Final = (
    "⏹ Interrupted: the bot is stopping. When it is back, a button offers to run it again."
)

INTERRUPTED_AFTER_CHANGES: Final = (
    "⏹ Interrupted: the bot is stopping. Codex had already begun to work on it{changed}, so "
    "it does not run again by itself: when the bot is back, a button offers to run it again."
)

FILES_NAMED_ON_CANCEL: Final = 5
"""Files a cancel's message names; the rest are counted."""

MOVED_NOTE: Final = (
    "Note: {because}, so this continued in a new one with a summary of the conversation."
)
"""Said with a result that went on in a fresh thread (`Completed.moved_because`)."""


@dataclass(eq=False)
class Request:
    """The chat's handle on the request it serves: what to do, and how to stop it."""

    number: int
    prompt: str
    mode: Mode
    token: str
    """Carried by the Cancel button (unguessable)."""
    started: float
    images: tuple[str, ...] = ()
    """Paths of the images that go with the prompt (a photo and its caption)."""
    quoting: int | None = None
    """In a group, the user's message its end answers (`ChatOutput.quoting`)."""
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    cancel_reason: str = ""
    interrupted: bool = False
    """Stopped early by the bot's shutdown (`interrupt`), as the end of the drain grace would."""
    progress: Progress = field(default_factory=Progress)
    reported: bool = False
    """Its end is being told to the user: for them nothing runs any more."""
    settled: trio.Event = field(default_factory=trio.Event)
    """Set once the chat recorded its end (`actors.chat.Chat.serve`)."""

    @property
    def slot(self) -> str:
        """The sender's slot of the progress message."""
        return f"request-{self.number}"

    @property
    def offered_after_a_stop(self) -> bool:
        """Interrupted by a stop, it waits for a "Run again" press instead of running again
        by itself: a photo cannot wait in the (text) queue, and once Codex may have changed
        the workspace, running it again from the start could do the same things twice."""
        return bool(self.images) or self.progress.acted

    def cancel(self, reason: str) -> bool:
        """Cancel the request's workflow; False if it was cancelled already."""
        if self.cancel_reason:
            return False
        self.cancel_reason = reason
        self.scope.cancel()
        return True

    def interrupt(self) -> None:
        """End the request's workflow as the shutdown's grace would (`Interrupted`), unless
        the user cancelled it already."""
        if not self.cancel_reason:
            self.interrupted = True
            self.scope.cancel()


class Completed(msgspec.Struct, frozen=True, kw_only=True):
    """The workflow returned: its result (`result.error` set when a phase failed)."""

    elapsed: float
    result: WorkflowResult
    moved_because: str = ""
    """Why the pool had to continue the conversation on a fresh Codex thread, in the user's
    words (`JobDone.moved_because`; empty: it did not)."""
    background: tuple[str, ...] = ()
    """Commands the developer's last turn left running (the result names them and gets a
    Stop button)."""


class CancelledByUser(msgspec.Struct, frozen=True, kw_only=True):
    """The user cancelled (`reason`: ``/cancel`` or ``button``)."""

    elapsed: float
    reason: str


class Interrupted(msgspec.Struct, frozen=True, kw_only=True):
    """The chat was stopped under the request (shutdown past the drain grace, or during the
    drain while it waited for an answer no one can give): the prompt goes back to the head
    of the queue, to run after the restart, or, when the request is
    `Request.offered_after_a_stop`, waits for a "Run again" press after it."""

    elapsed: float


class Failed(msgspec.Struct, frozen=True, kw_only=True):
    """The request could not be served: the workflow could not start (the profile's
    instruction files cannot be read), or something inside the bot failed under it (a bug).

    It is reported once and never run again by itself (unlike an `Interrupted` request)."""

    elapsed: float
    error: str
    """For the trace and the log (may name an exception); never shown to the user."""
    notice: str
    """What the user is told."""


RequestOutcome: TypeAlias = Completed | CancelledByUser | Interrupted | Failed


def stopped_outcome(request: Request) -> RequestOutcome:
    """The outcome of a request whose task is being stopped from outside (it cannot return)."""
    elapsed = trio.current_time() - request.started
    if request.cancel_reason:
        return CancelledByUser(elapsed=elapsed, reason=request.cancel_reason)
    return Interrupted(elapsed=elapsed)


async def serve_request(
    request: Request,
    *,
    out: ChatOutput,
    approvals: Approvals,
    pool: CodexPool,
    profile: Profile,
    session: SessionState,
    conversation: str,
    on_shown: Callable[[int], Awaitable[None]] | None = None,
    git: GitWorktrees | None = None,
) -> RequestOutcome:
    """Serve `request` to its end, tell the user how it ended, and return that.

    `session` is the chat's state when the request starts (its Codex thread and summary);
    `on_shown` is called with the progress message's id when it is sent (to find it again
    after a kill); `git` tells whether commands left changes (the result's "Show diff").

    Raises:
        trio.Cancelled: The chat is being stopped. The user is told first (an interruption,
            or the cancel they asked for), shielded and bounded by `FINISH_GRACE`; the
            chat's outcome is then `stopped_outcome(request)`.
    """
    outcome: RequestOutcome | None = None
    try:
        outcome = await _work(
            request,
            out=out,
            approvals=approvals,
            pool=pool,
            profile=profile,
            session=session,
            conversation=conversation,
            on_shown=on_shown,
        )
    except Exception as problem:  # a bug under the request: a failure, not a shutdown
        logger.exception("request %s of %s failed", request.number, conversation)
        outcome = Failed(
            elapsed=trio.current_time() - request.started,
            error=describe(problem)[:300],
            notice=INTERNAL_ERROR,
        )
    finally:
        ended = outcome if outcome is not None else stopped_outcome(request)
        with trio.move_on_after(FINISH_GRACE) as cleanup:
            cleanup.shield = True
            await approvals.close_all()
            await _report(request, ended, out, profile.working_directory, git)
    return ended


def _is_folder(path: str) -> bool:
    """Whether the profile's working directory is there (a branch worktree that is gone is
    caught before, in `actors.chat_topics`): Codex would start in a missing one anyway, and
    every command it ran would fail. A stat on the loop, like the session save: a disk that
    hangs would hang the Codex run in it as well, and a thread hop costs more (0.3 ms)."""
    return Path(path).is_dir()


async def _instructions(profile: Profile) -> RoleInstructions:
    if profile_prompt_files(profile):
        return await disk.run_sync(current_instructions, profile)
    return current_instructions(profile)  # no files to look at (the usual case): no thread hop


async def _work(
    request: Request,
    *,
    out: ChatOutput,
    approvals: Approvals,
    pool: CodexPool,
    profile: Profile,
    session: SessionState,
    conversation: str,
    on_shown: Callable[[int], Awaitable[None]] | None,
) -> RequestOutcome:
    """The workflow and its helpers (progress, approvals, typing, live message)."""
    if not _is_folder(profile.working_directory):
        return Failed(
            elapsed=trio.current_time() - request.started,
            error=f"the working directory {profile.working_directory} is gone",
            notice=working_directory_gone(profile.working_directory),
        )
    try:
        instructions = await _instructions(profile)
    except (OSError, ValueError) as problem:
        elapsed = trio.current_time() - request.started
        if request.cancel_reason:
            return CancelledByUser(elapsed=elapsed, reason=request.cancel_reason)
        return Failed(
            elapsed=elapsed,
            error=f"cannot read the profile's instruction files: {problem}",
            notice=UNREADABLE_INSTRUCTIONS,
        )
    progress_send, progress_receive = open_mailbox[CodexProgress](PROGRESS_BUFFER)
    approvals_send, approvals_receive = open_mailbox[ApprovalRequest](APPROVAL_BUFFER)
    caller = PoolRoleCaller(
        pool,
        conversation=conversation,
        profile=profile,
        model=session.model,
        effort=session.effort,
        summary=session.summary,
        images=request.images,
        known=session.instructions_now,
        progress=progress_send,
        approvals=approvals_send,
    )
    result: WorkflowResult | None = None
    shown_send, shown_receive = open_mailbox[int](SHOWN_BUFFER)
    with progress_receive, approvals_receive, shown_receive, shown_send, request.scope:
        async with trio.open_nursery() as helpers:
            helpers.start_soon(
                follow_progress, request.progress, progress_receive, profile.working_directory
            )
            helpers.start_soon(
                approvals.serve, approvals_receive, profile.working_directory, request.progress
            )
            helpers.start_soon(_keep_typing, out, request.progress)
            helpers.start_soon(_refresh_live, request, out, shown_send)
            if on_shown is not None:
                helpers.start_soon(_remember_live, shown_receive, on_shown)
            with progress_send, approvals_send:
                result = await carry_out_workflow(
                    request.prompt,
                    mode=request.mode,
                    caller=caller,
                    reporter=_Reporter(out, request.progress),
                    trace=lambda role: _trace_role(out, role),
                    instructions=instructions,
                    thread_id=session.developer_thread_id,
                    worker_id=session.developer_worker_id,
                )
            helpers.cancel_scope.cancel()
    elapsed = trio.current_time() - request.started
    if result is None and request.interrupted:  # the scope caught the shutdown's interrupt
        return Interrupted(elapsed=elapsed)
    if result is None:  # the scope caught the user's cancel
        return CancelledByUser(elapsed=elapsed, reason=request.cancel_reason)
    return Completed(
        elapsed=elapsed,
        result=result,
        moved_because=caller.moved_because,
        background=caller.background,
    )


def _trace_role(out: ChatOutput, role: RoleTrace) -> None:
    out.trace(
        TraceRecord(
            event="role",
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
            malformed=role.malformed,
        )
    )


class _Reporter:
    """`PhaseReporter` for one request: updates its progress, shows the plan."""

    def __init__(self, out: ChatOutput, progress: Progress) -> None:
        self._out = out
        self._progress = progress

    async def phase(self, name: str, detail: str) -> None:
        if name == PHASE_PLAN:
            await self._out.say(f"**Plan**\n\n{detail}", silent=True)
            return
        self._progress.phase = name
        self._progress.detail = detail
        self._progress.answer = ""
        self._progress.answer_paused = False
        self._progress.actions.clear()  # a role's steps are not shown as the next role's
        self._progress.changed.set()

    def patched(self) -> list[str]:
        return self._progress.files


async def _keep_typing(out: ChatOutput, progress: Progress) -> None:
    """One typing action per `TYPING_INTERVAL`, never waiting for the sender (shed if full);
    none while an approval question is open: then the bot waits for the user, and "typing…"
    above "Waiting for your answer" would say the opposite."""
    await trio.sleep(TYPING_DELAY)  # a quick answer needs no typing indicator
    while True:
        if not progress.asking:
            out.typing()
        await trio.sleep(TYPING_INTERVAL)


async def _remember_live(
    shown: trio.MemoryReceiveChannel[int], on_shown: Callable[[int], Awaitable[None]]
) -> None:
    async for message_id in shown:
        await on_shown(message_id)


async def _refresh_live(
    request: Request, out: ChatOutput, shown_to: trio.MemorySendChannel[int]
) -> None:
    # A quick answer needs no progress message (one more message for nothing): show
    # progress once the request has run for LIVE_DELAY.
    await trio.sleep(LIVE_DELAY)
    progress = request.progress
    while True:
        progress.changed = trio.Event()  # before sending: a change during the send is kept
        progress.live_shown = True
        await out.show(
            request.slot,
            live_text(request.progress, request.started),
            ((Button("🛑 Cancel", cancel_data(request.token)),),),
            silent=True,
            shown_to=shown_to,
        )
        await trio.sleep(LIVE_MIN_INTERVAL)
        with trio.move_on_after(LIVE_REFRESH - LIVE_MIN_INTERVAL):
            await progress.changed.wait()


async def _report(
    request: Request,
    outcome: RequestOutcome,
    out: ChatOutput,
    folder: str,
    git: GitWorktrees | None = None,
) -> None:
    """Tell the user how the request ended, once: the result (or a failure) as a message that
    notifies, the progress message taken away; a cancel or an interruption in the progress
    message itself when it is shown (a message of its own otherwise). `folder` is the working
    directory it ran in, for its "Show diff" button (`_offers_a_diff`)."""
    request.reported = True
    match outcome:
        case Completed(result=result):
            # The answer first: under per-chat spacing, closing the progress message
            # first held every result back by a second (bench/flood.py).
            text = _final_text(result, request.progress.files)
            rewrite = ("", "")
            if outcome.background:  # the note reads "stopped" once its button goes
                rewrite = (background_note(outcome.background), stopped_note(outcome.background))
                text += rewrite[0]
            if outcome.moved_because:
                text += "\n\n" + MOVED_NOTE.format(because=outcome.moved_because)
            if result.error is None and request.progress.live_shown:
                text += f"\n\nTook {format_duration(outcome.elapsed)}."
            if result.developer_thread_id:
                text += f"\n\n{thread_line(result.developer_thread_id)}"
            changed = await _offers_a_diff(request, result, Path(folder), git)
            keyboard = (
                *(stop_keyboard(request.token) if outcome.background else ()),
                *(((Button("📝 Show diff", diff_data(folder)),),) if changed else ()),
            )
            slot = stop_slot(request.token) if outcome.background else ""
            await out.say(
                text,
                keyboard=keyboard,
                quoting=request.quoting,
                keyboard_slot=slot,
                rewrite=rewrite,
            )
            await _drop_live(request, out)
            return
        case CancelledByUser():
            status = f"🛑 Cancelled after {format_duration(outcome.elapsed)}."
            files = request.progress.files
            shown = bool(files) and await disk.run_sync(in_git_work_tree, Path(folder))
            status += _changes_kept(files, diff=shown)
        case Interrupted() if request.progress.acted:
            files = request.progress.files
            status = INTERRUPTED_AFTER_CHANGES.format(
                changed=f" (it changed {_named(files)})" if files else ""
            )
        case Interrupted():
            status = INTERRUPTED_OFFERED if request.images else INTERRUPTED
        case Failed():
            await out.say(outcome.notice, plain=True, quoting=request.quoting)
            await _drop_live(request, out)
            return
        case _:
            assert_never(outcome)
    if request.progress.live_shown:
        await out.close(request.slot, status)
    else:
        await out.say(status, plain=True, quoting=request.quoting)


def _changes_kept(files: list[str], *, diff: bool) -> str:
    """What a cancel leaves behind, said with it: a cancel stops Codex, it undoes nothing.
    `diff`: the folder is a git work tree, where /diff shows the changes."""
    if not files:
        return ""
    shown = " (/diff shows it)" if diff else ""
    return f" What Codex changed before it stays changed: {_named(files)}{shown}."


def _named(files: list[str]) -> str:
    """The first `FILES_NAMED_ON_CANCEL` files, and how many more."""
    named = ", ".join(files[:FILES_NAMED_ON_CANCEL])
    more = len(files) - FILES_NAMED_ON_CANCEL
    if more > 0:
        named += f" and {plural(more, 'more file')}"
    return named


async def _offers_a_diff(
    request: Request, result: WorkflowResult, folder: Path, git: GitWorktrees | None
) -> bool:
    """Whether the result carries "Show diff": in a git work tree (without git the bot cannot
    tell what changed), when Codex reported or patched files, or when it ran commands where
    it may write and the tree has changes not committed (``git status``: a file a command
    made, a generator's output, is reported nowhere else). The status runs only then, so a
    request that ran no command costs nothing here."""
    reported = bool(result.files_changed or request.progress.files)
    if not reported and (git is None or not request.progress.acted):
        return False
    if not await disk.run_sync(in_git_work_tree, folder):
        return False
    if reported:
        return True
    assert git is not None  # (acted, and not reported: checked above)
    with trio.move_on_after(DIRTY_CHECK_SECONDS):  # the result waits for it: bounded
        try:
            return (await git.state(folder)).dirty
        except GitError:  # git says no (a broken repository): no button
            return False
    return False


async def _drop_live(request: Request, out: ChatOutput) -> None:
    if request.progress.live_shown:  # else the request was quick: no progress message shown
        await out.close(request.slot, None)


def _final_text(result: WorkflowResult, patched: list[str]) -> str:
    """The result message: Codex's answer plus what was changed (when Codex reported it)."""
    text = close_open_fence(result.text.strip()) or NO_TEXT  # what follows is not code
    files = list(result.files_changed) + [
        path for path in patched if path not in result.files_changed
    ]
    if result.mode_used == "single" and files and "Files changed" not in text:
        text += "\n\nFiles changed: " + ", ".join(f"`{path}`" for path in files)
    return text
