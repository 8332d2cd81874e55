"""The vocabulary and the values of the workflows: roles, what a role call returns, results.

This module owns:

- the names of the workflows' parts (`Role`, `Mode`, `Phase`, `Route`, `Verdict`);
- what one role call returns (`RoleSucceeded` | `RoleFailed`, a tagged union) and the token
  usage Codex reports (`TokenUsage`);
- the per-role instructions bundle (`RoleInstructions`);
- the selector's decision and the reviewer's verdict once read (`SelectorDecision`,
  `ReviewVerdict`; `orchestrator.role_answers` reads them from the roles' text);
- one trace record per role call (`RoleTrace`) and the result of a workflow (`WorkflowResult`).
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

import msgspec

__all__ = [
    "MAX_REVIEW_ROUNDS",
    "NO_PLAN",
    "READ_ONLY_ROLES",
    "ROLES",
    "UNREADABLE_REVIEW",
    "ContextFill",
    "Mode",
    "Phase",
    "ReviewVerdict",
    "Role",
    "RoleFailed",
    "RoleInstructions",
    "RoleOutcome",
    "RoleSucceeded",
    "RoleTrace",
    "Route",
    "SelectorDecision",
    "ThreadInstructions",
    "TokenUsage",
    "TraceOutcome",
    "Verdict",
    "WorkflowResult",
]

Role: TypeAlias = Literal["selector", "planner", "developer", "reviewer"]
Mode: TypeAlias = Literal["single", "plan"]
Route: TypeAlias = Literal["single", "plan"]
Verdict: TypeAlias = Literal["approved", "changes"]
Phase: TypeAlias = Literal["selecting", "planning", "developing", "reviewing"]
TraceOutcome: TypeAlias = Literal["succeeded", "failed", "cancelled", "crashed"]

ROLES: Final[tuple[Role, ...]] = ("selector", "planner", "developer", "reviewer")
"""Every role, in the order plan mode runs them."""

READ_ONLY_ROLES: Final[frozenset[Role]] = frozenset({"selector", "planner", "reviewer"})
"""Roles that only read the working tree: run them with sandbox ``read-only`` whatever the
profile says, so a planner or reviewer cannot edit files even if its model tries."""

MAX_REVIEW_ROUNDS: Final = 3
"""Review rounds in plan mode before the workflow stops unapproved (the product's contract)."""

NO_PLAN: Final = (
    "The planner wrote no plan, so the developer works from your request alone; the review "
    "is as usual."
)
"""Progress detail of round 1 after a planner answer with no text: the request still runs
(the planner failing is rare and a retry would most likely say the same), without a plan, and
the user reads why no plan message came."""

UNREADABLE_REVIEW: Final = (
    "The review was not a clear “approved” or “changes”, so the developer goes over the work "
    "again with what the reviewer wrote."
)
"""Progress detail of the round after a reviewer answer that could not be read as a verdict
(never an approval: `orchestrator.role_answers`); the developer gets the reviewer's text, the
user this line instead of "The reviewer asked for: The reviewer's answer could not be read…"."""


class TokenUsage(msgspec.Struct, frozen=True, kw_only=True):
    """Token counts as Codex reports them: a Codex call's own usage (the sum of the
    ``last_token_usage`` of its model responses, not the thread's running total), or a sum of
    calls'."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_output_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        """Sum two usages field by field."""
        return TokenUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            reasoning_output_tokens=self.reasoning_output_tokens + other.reasoning_output_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )


class ContextFill(msgspec.Struct, frozen=True, kw_only=True):
    """How much of the model's context window a Codex thread fills after a run: the tokens
    of its last model response (input and output: what the next one reads again) against
    the window Codex reports for the model (in its token counts, on both backends)."""

    thread_id: str
    tokens: int
    window: int

    @property
    def share(self) -> str:
        """The share of the window used, in words: ``25%``, or ``under 1%``."""
        percent = 100 * self.tokens // self.window
        return "under 1%" if percent == 0 and self.tokens else f"{percent}%"


class ThreadInstructions(msgspec.Struct, frozen=True, kw_only=True):
    """Which developer instructions a Codex thread has (their `instructions_digest`), as its
    chat last saw them: a thread resumed in a new process keeps its own (app-server)."""

    thread_id: str
    digest: str


class RoleSucceeded(msgspec.Struct, frozen=True, kw_only=True, tag=True, tag_field="kind"):
    """A role's Codex call finished.

    Attributes:
        text: The last agent message (the tool result's content).
        thread_id: The Codex thread the call used or created.
        worker_id: The worker that hosts that thread.
        usage: Tokens the call used.
        files_changed: Paths Codex reported as patched (PatchApplied events), if the runner
            tracks them; merged with what the developer's text says.
        context: How full the thread's context is now, when Codex said.
        instructions: The digest of the developer instructions the thread has now ("" when
            the call sent none).
    """

    text: str
    thread_id: str
    worker_id: int
    usage: TokenUsage = TokenUsage()
    files_changed: tuple[str, ...] = ()
    context: ContextFill | None = None
    instructions: str = ""


class RoleFailed(msgspec.Struct, frozen=True, kw_only=True, tag=True, tag_field="kind"):
    """A role's Codex call failed (tool error, worker died, timeout...).

    Attributes:
        failure: A short machine-readable class of failure, as the runner names it.
        message: A human-readable, token-free explanation.
        worker_id: The worker that ran it, if one did.
        thread_id: The thread, if Codex created one before failing.
        thread_kept: The thread is fit to continue (see `JobFailed`).
    """

    failure: str
    message: str
    worker_id: int | None = None
    thread_id: str | None = None
    thread_kept: bool = False


RoleOutcome: TypeAlias = RoleSucceeded | RoleFailed


class RoleInstructions(msgspec.Struct, frozen=True, kw_only=True):
    """The developer-instructions text of each role, loaded once per profile."""

    selector: str
    planner: str
    developer: str
    reviewer: str

    def for_role(self, role: Role) -> str:
        """Return the instructions of `role`."""
        match role:
            case "selector":
                return self.selector
            case "planner":
                return self.planner
            case "developer":
                return self.developer
            case "reviewer":
                return self.reviewer


class SelectorDecision(msgspec.Struct, frozen=True, kw_only=True):
    """What the selector decided for one request.

    Attributes:
        route: ``single`` (one developer call) or ``plan`` (the full workflow).
        reason: The selector's one-line reason, or why its answer was unreadable.
        malformed: True when no valid answer was found and ``plan`` was chosen by default.
    """

    route: Route
    reason: str
    malformed: bool = False


class ReviewVerdict(msgspec.Struct, frozen=True, kw_only=True):
    """The reviewer's verdict on one round.

    Attributes:
        verdict: ``approved`` or ``changes``.
        feedback: What to change (or a short note on approval).
        malformed: True when no valid answer was found; the verdict is then ``changes``.
        wrote: When `malformed`, the reviewer's own text (cut), for the user; the feedback
            then tells the developer what happened around it.
    """

    verdict: Verdict
    feedback: str
    malformed: bool = False
    wrote: str = ""


class RoleTrace(msgspec.Struct, frozen=True, kw_only=True):
    """One trace line per role call, handed to the workflow's trace callback.

    Attributes:
        role: Which role ran.
        round: The review round (1-based) for developer and reviewer runs; None for the
            selector and planner, which run once per request.
        started_at: `trio.current_time()` when the call was made.
        duration: Seconds on the trio clock until the outcome.
        outcome: succeeded, failed, cancelled (the caller's scope), or crashed (an exception).
        thread_id: The thread used, when known.
        worker_id: The worker used, when known.
        detail: Short, body-free detail: route or verdict with reason, or the failure.
        malformed: The selector's or reviewer's answer was unreadable.
        usage: Tokens the call used.
    """

    role: Role
    round: int | None
    started_at: float
    duration: float
    outcome: TraceOutcome
    thread_id: str | None = None
    worker_id: int | None = None
    detail: str = ""
    malformed: bool = False
    usage: TokenUsage = TokenUsage()


class WorkflowResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a workflow returns to the chat session.

    Attributes:
        text: The final message for the user.
        mode_used: The workflow that actually ran (plan mode may route to single).
        verdict: The last review verdict; None in single mode or when no review happened.
        rounds_used: Developer rounds run (1 in single mode; 0 if it failed before developing).
        files_changed: Files changed, as Codex reported them, in first-seen order.
        developer_thread_id: The developer's thread, to continue with `codex-reply` next time.
        developer_worker_id: The worker that hosts the developer's thread.
        usage: Tokens used by every role call, summed.
        selector: The selector's decision, in plan mode.
        plan: The planner's plan, when one was made.
        failed_phase: The phase that failed, or None on success.
        error: The failure's explanation, or None on success.
        thread_kept: A failed developer turn left `developer_thread_id` fit to continue
            (app-server); otherwise the next request starts a fresh thread with a recap.
        developer_context: How full the developer's thread is after its last run.
        developer_instructions: The digest of the developer instructions that thread has.
    """

    text: str
    mode_used: Mode
    verdict: Verdict | None = None
    rounds_used: int = 0
    files_changed: tuple[str, ...] = ()
    developer_thread_id: str | None = None
    developer_worker_id: int | None = None
    usage: TokenUsage = TokenUsage()
    selector: SelectorDecision | None = None
    plan: str | None = None
    failed_phase: Phase | None = None
    error: str | None = None
    thread_kept: bool = False
    developer_context: ContextFill | None = None
    developer_instructions: str = ""

    @property
    def ok(self) -> bool:
        """True when no phase failed."""
        return self.failed_phase is None
