"""The ports: the only ways actors reach Telegram, Codex and the tracer.

Each port is a `Protocol`; the real adapters live in `orchestrator.edges`, tests pass fakes.
Nothing concrete lives here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol, TypeAlias

import msgspec

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from contextlib import AbstractAsyncContextManager
    from pathlib import Path

    import trio

    from orchestrator.codex_runs import (
        ApprovalAsk,
        ApprovalDecision,
        ApprovalRequest,
        CodexJob,
        CodexProgress,
        JobOutcome,
    )
    from orchestrator.messages import Keyboard, TraceRecord

__all__ = [
    "BotIdentity",
    "CodexPool",
    "CodexWorker",
    "CodexWorkerFactory",
    "GitWorktrees",
    "ModelChoice",
    "NewFile",
    "ParseMode",
    "PoolStatistics",
    "RateLimitWindow",
    "RateLimits",
    "SteerResult",
    "StopResult",
    "TelegramApi",
    "TelegramFiles",
    "TraceEmit",
    "WorkerStatus",
    "WorkspaceChanges",
    "Worktree",
]

ParseMode: TypeAlias = Literal["HTML"] | None


class BotIdentity(msgspec.Struct, frozen=True, kw_only=True):
    """What ``getMe`` says about us; `username` decides which ``/cmd@Name`` is ours."""

    id: int
    username: str
    first_name: str = ""
    can_read_all_group_messages: bool = False
    """Privacy mode is off: the bot gets every message of its groups, not only those for it
    (an admin bot gets them all too, which ``getMe`` does not say)."""


class TelegramFiles(Protocol):
    """Downloading what users send (photos, documents): the one Bot API reach of a chat
    actor. The file URL holds the token, so the adapter never logs it or puts it in an error."""

    async def download_file(self, file_id: str, *, max_bytes: int) -> bytes:
        """``getFile``, then the file's bytes.

        Raises:
            TelegramFileTooBig: it is larger than `max_bytes` (or than Telegram serves bots).
            TelegramError: any other failure.
        """
        ...


class TelegramApi(TelegramFiles, Protocol):
    """The Bot API methods the bot uses. Every method raises `orchestrator.errors.TelegramError`
    subclasses on failure; none of them ever puts the token in an error or a log line.
    """

    async def get_me(self) -> BotIdentity:
        """``getMe``."""
        ...

    async def get_updates(
        self,
        *,
        offset: int | None,
        poll_seconds: int,
        limit: int,
        allowed_updates: Sequence[str],
    ) -> list[msgspec.Raw]:
        """``getUpdates`` long poll; each update is returned undecoded, so the poller can skip
        one that does not decode without losing the rest. The adapter's read timeout is
        `poll_seconds` plus a margin."""
        ...

    async def send_message(
        self,
        chat_id: int,
        text: str,
        *,
        parse_mode: ParseMode = None,
        keyboard: Keyboard = (),
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
        disable_notification: bool = False,
    ) -> int:
        """``sendMessage`` (link previews off); returns the new message id.
        `disable_notification`: the message arrives without a sound (progress)."""
        ...

    async def edit_message_text(
        self,
        chat_id: int,
        message_id: int,
        text: str,
        *,
        parse_mode: ParseMode = None,
        keyboard: Keyboard = (),
    ) -> None:
        """``editMessageText``; an empty `keyboard` removes the buttons."""
        ...

    async def edit_message_reply_markup(
        self, chat_id: int, message_id: int, *, keyboard: Keyboard = ()
    ) -> None:
        """``editMessageReplyMarkup``: the buttons become `keyboard` (empty: none), the text
        and its formatting stay."""
        ...

    async def delete_message(self, chat_id: int, message_id: int) -> None:
        """``deleteMessage``."""
        ...

    async def send_chat_action(
        self, chat_id: int, action: str, *, message_thread_id: int | None = None
    ) -> None:
        """``sendChatAction``."""
        ...

    async def send_document(
        self,
        chat_id: int,
        filename: str,
        content: bytes,
        *,
        caption: str = "",
        parse_mode: ParseMode = None,
        keyboard: Keyboard = (),
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
        disable_notification: bool = False,
    ) -> int:
        """``sendDocument`` as multipart upload; returns the new message id."""
        ...

    async def answer_callback_query(
        self, callback_query_id: str, *, text: str = "", show_alert: bool = False
    ) -> None:
        """``answerCallbackQuery``."""
        ...

    async def set_my_commands(self, commands: Sequence[tuple[str, str]]) -> None:
        """``setMyCommands`` with (command, description) pairs."""
        ...


class CodexWorker(Protocol):
    """One warm Codex process, as the worker pool uses it, whatever protocol it speaks.

    A `CodexWorkerFactory` opens one; `orchestrator.edges.codex_mcp` is the ``codex
    mcp-server`` backend, `orchestrator.edges.codex_app_server` the ``codex app-server`` one,
    tests use in-memory fakes. What the pool relies on, on every
    backend:

    - **Identity and health.** `worker_id` is the pool's number for it, `pid` the root of its
      process tree. `alive` turns False once the process exited (never merely because its
      context is being left), and `wait_exited` returns then, so a dead idle worker is
      replaced at once; `ping` answers while it is healthy; `threads` and `rss_mb` say
      how big it grew (the pool recycles it past its limits).
    - **Turns.** `run_turn` runs one job to its outcome and never raises for a failure of
      Codex or of the process: those are `JobFailed` outcomes. Several turns may run at once
      (the pool starts at most ``calls_per_worker``).
    - **Cancel.** Cancelling `run_turn` (a user's cancel, the pool's time limit) stops that
      turn and re-raises; afterwards `reusable` says whether the worker may run another
      turn. A backend where a stopped turn leaves the process unusable (MCP) turns
      `reusable` False and the pool replaces the worker; one that can interrupt a turn in
      place (``turn/interrupt`` on ``codex app-server``) stays reusable.
    - **Interrupt.** `interrupt` stops everything the worker runs, at once, with every
      command Codex started (also those of a process that died). The pool calls it on a
      worker it drops for a cancel, a time limit or a death, then leaves its context; it
      never gives that worker another turn. A backend may implement it by killing its process
      tree (MCP) or by interrupting its turns and cleaning up their commands.
    - **Stop.** Leaving the factory's context stops the process and everything it started:
      gracefully when it can, shielded and bounded in every case.
    """

    @property
    def worker_id(self) -> int:
        """The pool's number for this worker (the position it fills)."""
        ...

    @property
    def pid(self) -> int:
        """The pid of the Codex process, the root of its process tree."""
        ...

    @property
    def threads(self) -> int:
        """Codex threads started in this process (memory that is never given back)."""
        ...

    @property
    def alive(self) -> bool:
        """False once the process exited or closed its output."""
        ...

    @property
    def reusable(self) -> bool:
        """Whether the worker may run another turn (False once dead, or left unusable)."""
        ...

    async def wait_exited(self) -> None:
        """Return once the process exited or closed its output (as `alive` turns False for
        good); never merely because the context is being left."""
        ...

    @property
    def resumes_threads(self) -> bool:
        """Whether a thread outlives this process: any worker of the backend can continue it
        (``codex app-server``: ``thread/resume``), so a job whose worker is gone keeps its
        thread. False (MCP): a thread dies with its process, the job moves to a fresh one.
        Such a worker falls back to a fresh thread with the job's preamble itself when the
        resume fails, and returns that thread's id."""
        ...

    def rss_mb(self) -> float:
        """Resident memory of the Codex process, in MB."""
        ...

    async def run_turn(
        self,
        job: CodexJob,
        *,
        on_event: Callable[[CodexProgress], None],
        on_approval: Callable[[ApprovalAsk], Awaitable[ApprovalDecision]],
    ) -> JobOutcome:
        """Run `job`: a fresh thread when ``job.thread_id`` is None, else a turn on it.

        `on_event` gets the turn's progress in order, synchronously: it must not block.
        `on_approval` is awaited for each approval Codex asks; an exception there denies.

        Returns:
            `JobDone`, or `JobFailed` with ``codex_error`` (Codex refused or failed the turn)
            or ``worker_died`` (the process died under it; `alive` is then False).
        """
        ...

    async def ping(self) -> None:
        """Check the process answers. Raises `WorkerUnavailable` when it died; a wedged one
        never answers: the caller bounds the wait."""
        ...

    async def interrupt(self) -> None:
        """Stop every turn and every command of this worker now (shielded, bounded)."""
        ...

    async def release_thread(self, thread_id: str) -> tuple[str, ...]:
        """Stop the commands the turns of `thread_id` left running (``/cancel`` with nothing
        running, ``/new``, a profile switch) and return them (app-server:
        ``backgroundTerminals/clean``; MCP: nothing outlives a turn). Unbounded: the caller
        bounds it."""
        ...

    # The chat's controls (app-server only: `controls` says whether the backend has them;
    # on MCP they answer "unsupported", None or nothing). Unbounded: the caller bounds them.

    @property
    def controls(self) -> bool:
        """Whether this backend can steer a turn, list models, read rate limits and stop a
        thread's background commands on request (``codex app-server``)."""
        ...

    async def steer(self, conversation: str, text: str) -> SteerResult:
        """Add `text` to the turn running here for `conversation` (``turn/steer`` with that
        turn's id): "added"; "ended" when no turn of it runs here any more (it completed,
        or the workflow is between turns) or the server refused (the turn moved on)."""
        ...

    async def models(self) -> tuple[ModelChoice, ...]:
        """The models this Codex offers (``model/list``); ``()`` when it cannot say."""
        ...

    async def rate_limits(self) -> RateLimits | None:
        """The account's rate limits as Codex last reported them; None when it reports none."""
        ...

    async def stop_background(self, thread_id: str) -> tuple[str, ...]:
        """Stop the commands `thread_id` left running and return them (as the user would
        type them); ``()`` when none ran."""
        ...


CodexWorkerFactory: TypeAlias = "Callable[[int], AbstractAsyncContextManager[CodexWorker]]"
"""Opens worker `n`: entering starts it and returns once it is ready (bounded by the
backend's start-up timeout; raises `WorkerStartError`), leaving stops it with its tree."""


SteerResult: TypeAlias = Literal["added", "ended", "unsupported"]
"""How a steer went: added to the running turn; that turn ended (or was not running); the
backend cannot steer (MCP)."""

StopResult: TypeAlias = "tuple[str, ...] | None"
"""The commands a stop ended (``()``: none were running); None: the worker that held them is
gone, and they with it."""


class ModelChoice(msgspec.Struct, frozen=True, kw_only=True):
    """One model Codex offers (``model/list``)."""

    id: str
    name: str = ""
    is_default: bool = False
    default_effort: str = ""
    efforts: tuple[str, ...] = ()
    """The reasoning efforts this model supports (free words: ``low``, ``high``, …)."""


class RateLimitWindow(msgspec.Struct, frozen=True, kw_only=True):
    """One rate-limit window: how much of it is used, how long it is, when it resets."""

    used_percent: int
    window_minutes: int | None = None
    resets_at: int | None = None
    """Unix seconds."""


class RateLimits(msgspec.Struct, frozen=True, kw_only=True):
    """The account's rate limits as Codex reports them."""

    name: str = ""
    primary: RateLimitWindow | None = None
    secondary: RateLimitWindow | None = None


class WorkerStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One worker as `/status` and `doctor` show it."""

    worker_id: int
    state: Literal["starting", "idle", "busy", "draining", "dead"]
    threads: int = 0
    rss_mb: float = 0.0
    pid: int | None = None
    conversation: str | None = None


class PoolStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of the worker pool."""

    workers: tuple[WorkerStatus, ...] = ()
    waiting: int = 0
    runs_started: int = 0
    runs_failed: int = 0
    restarts: int = 0


class CodexPool(Protocol):
    """The worker pool as a chat actor uses it (a handle: send-channel clones only)."""

    async def run(
        self,
        job: CodexJob,
        *,
        progress: trio.MemorySendChannel[CodexProgress],
        approvals: trio.MemorySendChannel[ApprovalRequest],
    ) -> JobOutcome:
        """Run `job` and return its outcome.

        Cancelling the caller cancels the run: its turn is stopped in place when the backend
        can (the worker stays), else the worker that served it is killed with its whole
        process tree and replaced; other conversations are untouched.
        """
        ...

    def statistics(self) -> PoolStatistics:
        """The current state of the pool."""
        ...

    async def release(self, thread_id: str, worker_id: int | None) -> tuple[str, ...]:
        """Stop what the turns of `thread_id` (hosted by `worker_id`) left running, and
        return those commands: the user sent ``/cancel`` with nothing running, or ``/new``.
        Best effort and bounded; never raises."""
        ...

    async def steer(self, conversation: str, text: str) -> SteerResult:
        """Add `text` to the turn the worker running `conversation` runs for it. Bounded;
        never raises."""
        ...

    async def models(self) -> tuple[ModelChoice, ...] | None:
        """The models Codex offers, from any ready worker; None when the backend cannot list
        them (MCP) or no worker answered. Bounded; never raises."""
        ...

    async def rate_limits(self) -> RateLimits | None:
        """The account's rate limits from any ready worker; None when none are reported.
        Bounded; never raises."""
        ...

    async def stop_background(self, thread_id: str, worker_id: int | None) -> StopResult:
        """Stop the commands the turns of `thread_id` (hosted by `worker_id`) left running and
        say which. Bounded; never raises."""
        ...


TraceEmit: TypeAlias = "Callable[[TraceRecord], None]"
"""Hands one record to the tracer without blocking (drops and counts when it is behind)."""


class Worktree(msgspec.Struct, frozen=True, kw_only=True):
    """One git worktree as ``/branch`` lists it.

    `ahead` and `behind` count commits against the branch's upstream; None without one.
    """

    path: str
    branch: str
    dirty: bool = False
    ahead: int | None = None
    behind: int | None = None


class NewFile(msgspec.Struct, frozen=True, kw_only=True):
    """A file git does not track yet, as ``/diff`` puts it in the patch.

    `patch` is what ``git diff`` shows for the file added (a link as its target, never
    followed); `added` counts its lines, None for a binary file. `left_out` says in a few
    words why the file is not in the patch (too large, one too many, not a plain file); its
    `patch` is then empty."""

    path: str
    added: int | None = None
    patch: str = ""
    left_out: str = ""


class WorkspaceChanges(msgspec.Struct, frozen=True, kw_only=True):
    """What changed in a working directory since its last commit, as ``/diff`` shows it.

    `since_commit` is False in a repository without commits (all of it counts as added);
    `numstat` and `patch` are ``git diff``'s outputs for the tracked files, and `new_files`
    the files git does not track yet (and does not ignore), each with its own patch (or why
    it was left out), in git's order."""

    since_commit: bool
    numstat: str
    patch: str
    new_files: tuple[NewFile, ...] = ()


class GitWorktrees(Protocol):
    """Git as ``/branch`` and ``/diff`` use it (`orchestrator.edges.git`). Every method raises
    `orchestrator.errors.GitError` with git's own words when git refuses; each call is
    bounded by the adapter."""

    async def changes(self, folder: Path) -> WorkspaceChanges | None:
        """What changed in `folder` since its last commit; None outside a git repository.
        No program the repository's configuration names may run (hooks, filters, textconv,
        external diff: the repository is the agent's to write)."""
        ...

    async def branch_name_valid(self, name: str) -> bool:
        """``git check-ref-format --branch NAME``."""
        ...

    async def add(self, repository: Path, folder: Path, branch: str) -> bool:
        """A worktree of `repository` at `folder` on `branch`: the existing branch, else a new
        one from the repository's HEAD. Returns whether the branch was new."""
        ...

    async def worktrees(self, repository: Path) -> list[Worktree]:
        """The repository's worktrees (its own checkout included), with their state."""
        ...

    async def state(self, folder: Path) -> Worktree:
        """The branch and state (clean or dirty, ahead, behind) of the worktree at `folder`.
        No program the repository's configuration names may run (as for `changes`)."""
        ...

    async def remove(self, repository: Path, folder: Path) -> None:
        """Remove the worktree at `folder` (git refuses one with changes); the branch stays."""
        ...
