"""The worker pool's inbox: what a chat asks Codex for, and what comes back.

A chat sends a `CodexJob` (`WorkerPoolHandle.run`); the run streams its `CodexProgress`
events back to the chat (lossy: progress only) and returns its `JobOutcome`. An approval
Codex asks for travels as an `ApprovalRequest` (an envelope with a reply channel, never
encoded: log its `ApprovalAsk`). The other inboxes' messages are in `orchestrator.messages`.
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

import msgspec
import trio

from orchestrator.workflow_types import ContextFill, TokenUsage

__all__ = [
    "THREAD_GONE",
    "AgentMessageDelta",
    "ApprovalAsk",
    "ApprovalDecision",
    "ApprovalPolicy",
    "ApprovalRequest",
    "CodexJob",
    "CodexNotice",
    "CodexProgress",
    "CommandFinished",
    "CommandStarted",
    "JobDone",
    "JobFailed",
    "JobFailure",
    "JobOutcome",
    "PatchApplied",
    "Reasoning",
    "RunStarted",
    "Sandbox",
    "ThreadMoved",
    "TokenCount",
    "WaitingForWorker",
]


Sandbox: TypeAlias = Literal["read-only", "workspace-write", "danger-full-access"]
ApprovalPolicy: TypeAlias = Literal["on-request", "never"]
ApprovalDecision: TypeAlias = Literal["approved", "approved_for_session", "denied"]


class CodexJob(msgspec.Struct, frozen=True, kw_only=True):
    """One Codex call a chat asks the worker pool for.

    With `thread_id` None the pool starts a fresh thread (``codex`` tool) on the least-loaded
    worker. Otherwise it continues that thread (``codex-reply``) on `worker_id`, which hosts
    it; if that worker is gone, or stays busy longer than the affinity wait, the pool starts a
    fresh thread elsewhere with `context_preamble` put before `prompt`, and reports `moved`.

    `conversation` is the affinity key (a `SessionKey.file_stem`); `developer_instructions`
    apply to fresh threads only (``codex-reply`` cannot change them).
    """

    conversation: str
    prompt: str
    cwd: str
    sandbox: Sandbox = "workspace-write"
    approval_policy: ApprovalPolicy = "on-request"
    model: str = ""
    model_choice: str = ""
    """The chat's /model choice: the turn's model (app-server; "" keeps the thread's own)."""
    effort: str = ""
    """The chat's /effort choice: the turn's reasoning effort ("" keeps the model's)."""
    developer_instructions: str = ""
    thread_id: str | None = None
    worker_id: int | None = None
    thread_instructions: str = ""
    """The `instructions_digest` of the developer instructions `thread_id` has, as its chat
    last saw them ("" when unknown): a thread resumed in a new process (app-server, after a
    restart) keeps its own, and needs them again only when they changed."""
    context_preamble: str = ""
    images: tuple[str, ...] = ()
    """Absolute paths of images that go with `prompt` (``localImage`` inputs on app-server;
    the chat never sends them to a backend that cannot take them)."""


class _ProgressBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """Base of the progress events a run streams to its chat."""


class WaitingForWorker(_ProgressBase, frozen=True, kw_only=True, tag="waiting"):
    """The conversation's worker is busy with another conversation; the run waits its turn."""

    worker_id: int | None = None
    releasing: bool = False
    """Instead, the conversation's thread is held by the process of a worker that left
    (cancelled, timed out, wedged, recycled) until it exits: the run waits for that, then
    resumes the thread elsewhere, instead of going on in a fresh one."""


class RunStarted(_ProgressBase, frozen=True, kw_only=True, tag="started"):
    """The call went out on `worker_id` (Codex ``task_started``)."""

    worker_id: int
    thread_id: str = ""
    """The thread the turn runs in, where it outlives a cancel (``codex app-server``: the turn
    is interrupted, the thread stays); empty where a cancel ends the thread with its process."""


class ThreadMoved(_ProgressBase, frozen=True, kw_only=True, tag="moved"):
    """The conversation continues on a fresh thread with a context preamble (say so once;
    why is in the outcome, `JobDone.moved_because`)."""


THREAD_GONE: Final = "your earlier Codex session was no longer available"
"""`JobDone.moved_because` when nothing more is known (the thread's process ended before
this run of the bot, or a resume was refused)."""


class AgentMessageDelta(_ProgressBase, frozen=True, kw_only=True, tag="delta"):
    """A piece of the agent's message as it streams."""

    text: str


class CommandStarted(_ProgressBase, frozen=True, kw_only=True, tag="exec_begin"):
    """Codex started a shell command."""

    command: str
    cwd: str = ""


class CommandFinished(_ProgressBase, frozen=True, kw_only=True, tag="exec_end"):
    """A shell command ended."""

    command: str
    exit_code: int | None = None


class Reasoning(_ProgressBase, frozen=True, kw_only=True, tag="reasoning"):
    """The model's reasoning: a piece of its summary as it streams (`part_start`: a new part
    of it begins), or its item starting or ending (`item`). Progress too: a model that
    reasons long says little else (nothing at all while it reasons, where summaries are
    off), and the endpoint watchdog must not take that for silence."""

    text: str = ""
    part_start: bool = False
    item: Literal["", "start", "end"] = ""


class PatchApplied(_ProgressBase, frozen=True, kw_only=True, tag="patch"):
    """Codex applied (or failed to apply) a patch to `files`."""

    files: tuple[str, ...] = ()
    success: bool = True


class TokenCount(_ProgressBase, frozen=True, kw_only=True, tag="tokens"):
    """Token usage so far in this run."""

    usage: TokenUsage


class CodexNotice(_ProgressBase, frozen=True, kw_only=True, tag="notice"):
    """A warning, stream error ("Reconnecting...") or error event from Codex."""

    level: Literal["warning", "stream_error", "error"]
    message: str


CodexProgress: TypeAlias = (
    WaitingForWorker
    | RunStarted
    | ThreadMoved
    | AgentMessageDelta
    | Reasoning
    | CommandStarted
    | CommandFinished
    | PatchApplied
    | TokenCount
    | CodexNotice
)


class ApprovalAsk(msgspec.Struct, frozen=True, kw_only=True):
    """What Codex asks permission for, read from the raw ``elicitation/create`` params."""

    kind: Literal["exec", "patch"]
    message: str
    command: str = ""
    cwd: str = ""
    changes: tuple[str, ...] = ()
    worker_id: int = 0
    diff: str = ""
    """A patch approval's changes as a diff (capped by the backend; may be empty)."""
    reason: str = ""
    """Why Codex asks, in the model's words (``codex app-server`` sends it; the MCP backend's
    elicitation has only its generic `message`)."""
    reported_started: bool = False
    """The command was reported started (`CommandStarted`) before this question, as
    ``codex app-server`` does (``item/started``, then the request): it runs only if approved.
    The MCP backend asks first, and reports the start once approved."""


class ApprovalRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Envelope: an `ApprovalAsk` and the one-shot channel for the decision (never encoded).

    The chat answers with ``send_nowait`` exactly once; a closed channel counts as denied.
    """

    ask: ApprovalAsk
    reply_to: trio.MemorySendChannel[ApprovalDecision]


class JobDone(msgspec.Struct, frozen=True, kw_only=True, tag=True, tag_field="kind"):
    """Codex answered: `text` is the tool result (the last agent message)."""

    text: str
    thread_id: str
    worker_id: int
    usage: TokenUsage = TokenUsage()
    moved_because: str = ""
    """Set when the conversation went on in a fresh thread (with its context preamble): why,
    in the user's words, as a clause: "{moved_because}, so this continued in a new one"
    (`THREAD_GONE` when the pool cannot tell). With the outcome, not only a progress event: on
    app-server the move shows only once the resume was refused, at the turn's end."""
    background: tuple[str, ...] = ()
    """Commands the turn left running (app-server), as the user would type them."""
    context: ContextFill | None = None
    """How full the thread's context is after the turn (None: Codex did not say)."""

    @property
    def moved(self) -> bool:
        """The conversation went on in a fresh thread (`moved_because` says why)."""
        return bool(self.moved_because)


JobFailure: TypeAlias = Literal[
    "codex_error", "worker_died", "timeout", "stalled", "no_worker", "cancelled"
]


class JobFailed(msgspec.Struct, frozen=True, kw_only=True, tag=True, tag_field="kind"):
    """The run did not produce an answer; `message` is fit to show the user.

    `thread_kept`: the thread `thread_id` is still fit to continue (the pool sets it where
    the backend keeps a thread through a failed turn and resumes it in another process:
    ``codex app-server``). On the MCP backend a thread that saw an error is left behind.
    """

    failure: JobFailure
    message: str
    worker_id: int | None = None
    thread_id: str | None = None
    thread_kept: bool = False


JobOutcome: TypeAlias = JobDone | JobFailed
