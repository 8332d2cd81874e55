"""The two workflows a chat runs: single mode and plan mode.

This module owns the sequencing of the roles, not their transport. A workflow is a plain
``async`` function that the chat actor awaits inside the cancel scope of the running request;
it talks to Codex only through the narrow `RoleCaller` port (one *call* is one role on a
worker), tells the user where it is through `PhaseReporter`, and hands one `RoleTrace` per role
call to a synchronous trace callback. The prompts it writes are in `actors.workflow_prompts`.

- **Single mode** (`carry_out_single`): one developer call. It continues the conversation's
  developer thread (``codex-reply`` semantics: the `RoleCaller` gets the thread id and its
  worker) until ``/new`` clears it.
- **Plan mode** (`carry_out_plan`): the selector (fresh thread every request) answers
  ``{"route": ..., "reason": ...}``; route ``single`` runs single mode. Otherwise the planner
  (fresh thread, read-only) writes a numbered plan, shown to the user; the developer (the
  conversation's developer thread, continued across rounds) carries it out; the reviewer (its
  own thread, continued across the rounds of this request) answers
  ``{"verdict": ..., "feedback": ...}``. On ``changes`` the developer continues its thread with
  the feedback. After `MAX_REVIEW_ROUNDS` unapproved rounds the workflow stops and says so.

Failures and cancellation:

- A `RoleFailed` outcome ends the workflow at once with a `WorkflowResult` whose text names the
  phase (and round), and a trace line with outcome ``failed``; the texts and that result are
  built in `actors.workflow_failures`.
- Cancellation belongs to whoever awaits the workflow: when the chat cancels the request's
  scope (``/cancel``, shutdown), `trio.Cancelled` propagates out of the `RoleCaller` and out of
  the workflow unchanged. The role call in flight is traced as ``cancelled`` on the way out;
  nothing else is attempted.
- An exception from the `RoleCaller` (a bug, not a Codex failure) is traced as ``crashed`` and
  propagates to the chat actor's supervisor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol, TypeAlias, assert_never

import trio

from actors import workflow_prompts
from actors.workflow_failures import failed_result
from orchestrator.role_answers import (
    decode_review_answer,
    decode_selector_answer,
    extract_files_changed,
    merge_files_changed,
)
from orchestrator.words import one_line
from orchestrator.workflow_types import (
    MAX_REVIEW_ROUNDS,
    NO_PLAN,
    UNREADABLE_REVIEW,
    ContextFill,
    Mode,
    Phase,
    Role,
    RoleFailed,
    RoleInstructions,
    RoleOutcome,
    RoleSucceeded,
    RoleTrace,
    SelectorDecision,
    TokenUsage,
    TraceOutcome,
    Verdict,
    WorkflowResult,
)

__all__ = [
    "PHASE_PLAN",
    "PhaseReporter",
    "RoleCaller",
    "TraceSink",
    "carry_out_plan",
    "carry_out_single",
    "carry_out_workflow",
]

PHASE_PLAN: Final = "plan"
"""Reporter phase name that carries the planner's plan in `detail`, to be shown to the user as
its own message (every other phase name is a progress line such as ``developing round 2``)."""

UNREADABLE_SELECTOR: Final = "Could not tell whether a plan is needed, so making one to be safe."
"""Progress detail when the selector's answer could not be read (its text goes to the trace)."""

TRACE_DETAIL_LIMIT: Final = 300
"""Characters of detail per trace line: enough for a reason or an error, never a whole body."""


class RoleCaller(Protocol):
    """The port through which a workflow calls one role on Codex.

    The adapter (`actors.role_caller`) turns a call into a worker-pool request: a fresh
    ``codex`` call when `thread_id` is None, else ``codex-reply`` on that thread, on the worker
    `worker_id` that hosts it. `instructions` go to ``developer-instructions`` on a fresh thread
    (``codex-reply`` cannot change them). The adapter should run roles in `READ_ONLY_ROLES`
    with sandbox ``read-only``. Cancelling the awaiting scope must cancel the call and propagate
    `trio.Cancelled`.
    """

    async def call_role(
        self,
        role: Role,
        prompt: str,
        *,
        thread_id: str | None,
        worker_id: int | None,
        instructions: str,
    ) -> RoleOutcome:
        """Call `role` with `prompt` and return how it went."""
        ...


class PhaseReporter(Protocol):
    """The port through which a workflow tells the user where it is.

    Names: ``selecting``, ``planning``, `PHASE_PLAN` (detail: the plan text, shown as its own
    message), ``developing`` (single mode), ``developing round K``, ``reviewing round K``.
    `detail` is a short line for the progress message (a reason, the reviewer's feedback), or "".
    """

    async def phase(self, name: str, detail: str) -> None:
        """Report that the workflow entered phase `name`."""
        ...

    def patched(self) -> Sequence[str]:
        """The files Codex's patches changed so far in this request (its progress events):
        plan mode's summary names those the developer's reports leave out."""
        ...


TraceSink: TypeAlias = Callable[[RoleTrace], None]
"""Receives one `RoleTrace` per role call. Synchronous, so it also works on the way out of a
cancelled scope: the adapter must not block (``send_nowait`` to the tracer, shedding when full)."""


@dataclass
class _Ledger:
    """One workflow's bookkeeping: calls roles, traces them, sums their usage."""

    caller: RoleCaller
    trace: TraceSink
    instructions: RoleInstructions
    usage: TokenUsage = field(default_factory=TokenUsage)

    async def call(
        self,
        role: Role,
        prompt: str,
        *,
        round_number: int | None,
        thread_id: str | None,
        worker_id: int | None,
        describe: Callable[[str], tuple[str, bool]],
    ) -> RoleOutcome:
        """Call one role and trace it; `describe` gives a success's (detail, malformed)."""
        started = trio.current_time()

        def record(
            outcome: TraceOutcome,
            *,
            detail: str = "",
            malformed: bool = False,
            thread: str | None = thread_id,
            worker: int | None = worker_id,
            usage: TokenUsage | None = None,
        ) -> None:
            self.trace(
                RoleTrace(
                    role=role,
                    round=round_number,
                    started_at=started,
                    duration=trio.current_time() - started,
                    outcome=outcome,
                    thread_id=thread,
                    worker_id=worker,
                    detail=one_line(detail, TRACE_DETAIL_LIMIT),
                    malformed=malformed,
                    usage=usage or TokenUsage(),
                )
            )

        try:
            result = await self.caller.call_role(
                role,
                prompt,
                thread_id=thread_id,
                worker_id=worker_id,
                instructions=self.instructions.for_role(role),
            )
        except trio.Cancelled:
            record("cancelled")
            raise
        except Exception as error:
            record("crashed", detail=type(error).__name__)
            raise
        match result:
            case RoleSucceeded():
                self.usage += result.usage
                detail, malformed = describe(result.text)
                record(
                    "succeeded",
                    detail=detail,
                    malformed=malformed,
                    thread=result.thread_id,
                    worker=result.worker_id,
                    usage=result.usage,
                )
            case RoleFailed():
                record(
                    "failed",
                    detail=f"{result.failure}: {result.message}",
                    thread=result.thread_id or thread_id,
                    worker=result.worker_id,
                )
            case _:
                assert_never(result)
        return result


def _describe_developer(text: str) -> tuple[str, bool]:
    files = extract_files_changed(text)
    return (f"files changed: {', '.join(files)}" if files else "no files reported", False)


def _describe_plan(text: str) -> tuple[str, bool]:
    steps = sum(1 for line in text.splitlines() if line.lstrip()[:1].isdigit())
    return (f"plan with {steps} numbered lines", False)


def _describe_selector(text: str) -> tuple[str, bool]:
    decision = decode_selector_answer(text)
    return (f"route {decision.route}: {decision.reason}", decision.malformed)


def _describe_review(text: str) -> tuple[str, bool]:
    verdict = decode_review_answer(text)
    return (f"{verdict.verdict}: {verdict.feedback}", verdict.malformed)


async def _single(
    prompt: str,
    *,
    ledger: _Ledger,
    reporter: PhaseReporter,
    thread_id: str | None,
    worker_id: int | None,
    selector: SelectorDecision | None,
) -> WorkflowResult:
    detail = f"No plan needed: {selector.reason}" if selector is not None else ""
    await reporter.phase("developing", detail)
    outcome = await ledger.call(
        "developer",
        prompt,
        round_number=1,
        thread_id=thread_id,
        worker_id=worker_id,
        describe=_describe_developer,
    )
    match outcome:
        case RoleFailed():
            return failed_result(
                mode="single",
                phase="developing",
                round_number=1,
                failure=outcome,
                usage=ledger.usage,
                developer_thread_id=thread_id,
                developer_worker_id=worker_id,
                selector=selector,
            )
        case RoleSucceeded():
            return WorkflowResult(
                text=outcome.text,
                mode_used="single",
                rounds_used=1,
                files_changed=merge_files_changed(
                    outcome.files_changed, extract_files_changed(outcome.text)
                ),
                developer_thread_id=outcome.thread_id,
                developer_worker_id=outcome.worker_id,
                usage=ledger.usage,
                selector=selector,
                developer_context=outcome.context,
                developer_instructions=outcome.instructions,
            )
        case _:
            assert_never(outcome)


async def carry_out_single(
    prompt: str,
    *,
    caller: RoleCaller,
    reporter: PhaseReporter,
    trace: TraceSink,
    instructions: RoleInstructions,
    thread_id: str | None = None,
    worker_id: int | None = None,
) -> WorkflowResult:
    """Carry out single mode: one developer call on the conversation's developer thread.

    Args:
        prompt: The user's request.
        caller: Runs roles on Codex.
        reporter: Receives the phase (``developing``).
        trace: Receives the developer call's trace line.
        instructions: Every role's instructions (the developer's are used).
        thread_id: The conversation's developer thread to continue, or None for a fresh one.
        worker_id: The worker hosting `thread_id`.

    Returns:
        The developer's text as the final message, with its thread, worker, usage and files.

    Raises:
        trio.Cancelled: The caller's scope was cancelled; never swallowed.
    """
    ledger = _Ledger(caller=caller, trace=trace, instructions=instructions)
    return await _single(
        prompt,
        ledger=ledger,
        reporter=reporter,
        thread_id=thread_id,
        worker_id=worker_id,
        selector=None,
    )


async def carry_out_plan(
    prompt: str,
    *,
    caller: RoleCaller,
    reporter: PhaseReporter,
    trace: TraceSink,
    instructions: RoleInstructions,
    thread_id: str | None = None,
    worker_id: int | None = None,
    max_review_rounds: int = MAX_REVIEW_ROUNDS,
) -> WorkflowResult:
    """Carry out plan mode: selector → planner → developer ⇄ reviewer (at most `max_review_rounds`).

    Args:
        prompt: The user's request.
        caller: Runs roles on Codex.
        reporter: Receives ``selecting``, ``planning``, the plan (`PHASE_PLAN`),
            ``developing round K`` and ``reviewing round K``.
        trace: Receives one line per role call (selector and planner with round None).
        instructions: Every role's instructions.
        thread_id: The conversation's developer thread to continue, or None for a fresh one.
        worker_id: The worker hosting `thread_id`.
        max_review_rounds: Review rounds before stopping unapproved.

    Returns:
        The result; on route ``single`` the single-mode result with the selector's decision.

    Raises:
        trio.Cancelled: The caller's scope was cancelled; never swallowed.
    """
    if max_review_rounds < 1:
        raise ValueError(f"max_review_rounds must be at least 1, got {max_review_rounds}")
    ledger = _Ledger(caller=caller, trace=trace, instructions=instructions)
    decision: SelectorDecision | None = None
    plan: str | None = None
    developer_thread, developer_worker = thread_id, worker_id
    developer_context: ContextFill | None = None
    developer_instructions = ""
    files: tuple[str, ...] = ()

    def failed(
        phase: Phase, round_number: int | None, failure: RoleFailed, verdict: Verdict | None = None
    ) -> WorkflowResult:
        """The request ended by `failure` in `phase`, with what it reached before."""
        return failed_result(
            mode="plan",
            phase=phase,
            round_number=round_number,
            failure=failure,
            usage=ledger.usage,
            developer_thread_id=developer_thread,
            developer_worker_id=developer_worker,
            files_changed=files,
            selector=decision,
            plan=plan,
            verdict=verdict,
        )

    await reporter.phase("selecting", "")
    selected = await ledger.call(
        "selector",
        workflow_prompts.selector_prompt(prompt),
        round_number=None,
        thread_id=None,
        worker_id=None,
        describe=_describe_selector,
    )
    if isinstance(selected, RoleFailed):
        return failed("selecting", None, selected)
    decision = decode_selector_answer(selected.text)
    if decision.route == "single":
        return await _single(
            prompt,
            ledger=ledger,
            reporter=reporter,
            thread_id=thread_id,
            worker_id=worker_id,
            selector=decision,
        )

    await reporter.phase("planning", UNREADABLE_SELECTOR if decision.malformed else decision.reason)
    planned = await ledger.call(
        "planner",
        workflow_prompts.planner_prompt(prompt),
        round_number=None,
        thread_id=None,
        worker_id=None,
        describe=_describe_plan,
    )
    if isinstance(planned, RoleFailed):
        return failed("planning", None, planned)
    plan = planned.text.strip() or None
    shown = ""  # what the progress message says under the round: the reviewer's ask, or NO_PLAN
    if plan is None:  # the request still runs: the developer works from it alone, reviewed
        shown = NO_PLAN
    else:
        await reporter.phase(PHASE_PLAN, plan)

    reviewer_thread: str | None = None
    reviewer_worker: int | None = None
    developer_prompt = workflow_prompts.developer_prompt(prompt, plan)
    round_number = 0
    while True:
        round_number += 1
        await reporter.phase(f"developing round {round_number}", shown)
        developed = await ledger.call(
            "developer",
            developer_prompt,
            round_number=round_number,
            thread_id=developer_thread,
            worker_id=developer_worker,
            describe=_describe_developer,
        )
        if isinstance(developed, RoleFailed):
            return failed(
                "developing", round_number, developed, "changes" if round_number > 1 else None
            )
        developer_thread, developer_worker = developed.thread_id, developed.worker_id
        developer_context, developer_instructions = developed.context, developed.instructions
        report = developed.text.strip()
        files = merge_files_changed(
            files, developed.files_changed, extract_files_changed(developed.text)
        )

        await reporter.phase(f"reviewing round {round_number}", "")
        reviewer_prompt = (
            workflow_prompts.reviewer_prompt(prompt, plan, report)
            if reviewer_thread is None
            else workflow_prompts.reviewer_again_prompt(report, round_number)
        )
        reviewed = await ledger.call(
            "reviewer",
            reviewer_prompt,
            round_number=round_number,
            thread_id=reviewer_thread,
            worker_id=reviewer_worker,
            describe=_describe_review,
        )
        if isinstance(reviewed, RoleFailed):
            return failed("reviewing", round_number, reviewed)
        reviewer_thread, reviewer_worker = reviewed.thread_id, reviewed.worker_id
        verdict = decode_review_answer(reviewed.text)
        if verdict.verdict == "approved" or round_number >= max_review_rounds:
            files = merge_files_changed(files, tuple(reporter.patched()))
            return WorkflowResult(
                text=workflow_prompts.plan_summary(
                    verdict=verdict.verdict,
                    feedback=verdict.feedback,
                    rounds=round_number,
                    max_rounds=max_review_rounds,
                    files=files,
                    report=report,
                    unreadable=verdict.wrote if verdict.malformed else None,
                ),
                mode_used="plan",
                verdict=verdict.verdict,
                rounds_used=round_number,
                files_changed=files,
                developer_thread_id=developer_thread,
                developer_worker_id=developer_worker,
                usage=ledger.usage,
                selector=decision,
                plan=plan,
                developer_context=developer_context,
                developer_instructions=developer_instructions,
            )
        shown = UNREADABLE_REVIEW if verdict.malformed else verdict.feedback
        developer_prompt = workflow_prompts.developer_feedback_prompt(
            verdict.feedback, round_number, max_review_rounds
        )


async def carry_out_workflow(
    prompt: str,
    *,
    mode: Mode,
    caller: RoleCaller,
    reporter: PhaseReporter,
    trace: TraceSink,
    instructions: RoleInstructions,
    thread_id: str | None = None,
    worker_id: int | None = None,
) -> WorkflowResult:
    """Carry out the workflow of `mode` (the chat's ``/mode``): single or plan."""
    match mode:
        case "single":
            return await carry_out_single(
                prompt,
                caller=caller,
                reporter=reporter,
                trace=trace,
                instructions=instructions,
                thread_id=thread_id,
                worker_id=worker_id,
            )
        case "plan":
            return await carry_out_plan(
                prompt,
                caller=caller,
                reporter=reporter,
                trace=trace,
                instructions=instructions,
                thread_id=thread_id,
                worker_id=worker_id,
            )
        case _:
            assert_never(mode)
