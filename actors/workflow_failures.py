"""What a workflow says when a role's Codex call failed.

This module owns the failure texts of both workflows (`failure_text`: what happened and what
to do, in people's words, naming the phase and round) and the `WorkflowResult` a failed role
call ends its workflow with (`failed_result`). The sequencing that decides when a failure ends
a workflow stays in `actors.workflows`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, assert_never

from orchestrator.codex_words import read_codex_error
from orchestrator.words import sentence
from orchestrator.workflow_types import WorkflowResult

if TYPE_CHECKING:
    from orchestrator.workflow_types import (
        Mode,
        Phase,
        RoleFailed,
        SelectorDecision,
        TokenUsage,
        Verdict,
    )

__all__ = ["failed_result", "failure_text"]


def _doing(mode: Mode, phase: Phase, round_number: int | None) -> str:
    """What the workflow was doing, in people's words."""
    if mode == "single":
        return "working on your request"
    rounds = f" (round {round_number})" if round_number is not None else ""
    match phase:
        case "selecting":
            return "deciding how to handle your request"
        case "planning":
            return "writing the plan"
        case "developing":
            return "carrying out the plan" + rounds
        case "reviewing":
            return "reviewing the work" + rounds
        case _:
            assert_never(phase)


def failure_text(*, mode: Mode, phase: Phase, round_number: int | None, failure: RoleFailed) -> str:
    """What the user reads when a role's Codex call failed: what happened, what to do."""
    match failure.failure:
        case "codex_error":
            why = read_codex_error(failure.message).words
        case "worker_died":
            why = "The Codex process working on it stopped unexpectedly."
            if "another request" in failure.message:
                why = sentence(failure.message.split(";")[0])
        case "timeout" | "stalled":
            why = sentence(failure.message) or "Codex took too long, so it was stopped."
        case _:
            why = sentence(failure.message)
    # no_worker: nothing ran, no worker could take it
    what = "could not start" if failure.failure == "no_worker" else "failed while"
    return f"❌ Codex {what} {_doing(mode, phase, round_number)}. {why}".strip()


def _fit_to_continue(failure: RoleFailed) -> bool:
    """Whether the failed turn's thread can take the next request: not one Codex found too
    long for the model (the retry would fail the same way; a fresh one gets the summary)."""
    return failure.failure != "codex_error" or read_codex_error(failure.message).thread_fit


def failed_result(
    *,
    mode: Mode,
    phase: Phase,
    round_number: int | None,
    failure: RoleFailed,
    usage: TokenUsage,
    developer_thread_id: str | None,
    developer_worker_id: int | None,
    files_changed: tuple[str, ...] = (),
    selector: SelectorDecision | None = None,
    plan: str | None = None,
    verdict: Verdict | None = None,
) -> WorkflowResult:
    error = f"{failure.message} ({failure.failure})"
    kept = (
        phase == "developing"
        and failure.thread_kept
        and failure.thread_id is not None
        and _fit_to_continue(failure)
    )
    if kept:  # the failed turn is part of the thread now: the next request goes on from it
        developer_thread_id, developer_worker_id = failure.thread_id, failure.worker_id
    lines = [failure_text(mode=mode, phase=phase, round_number=round_number, failure=failure)]
    if files_changed:
        lines.append("Files changed before the failure: " + ", ".join(files_changed))
    if mode == "plan" and phase != "reviewing":
        lines.append("The steps after this one did not run.")
    if failure.failure == "no_worker":
        pass  # the pool's message says when it tries again and how to find out why
    elif kept:
        lines.append(
            "Send the request again to retry: it goes on in the same Codex session. /new "
            "starts over."
        )
    elif phase == "developing":
        lines.append(
            "Send the request again to retry: it starts a fresh Codex session that gets a "
            "summary of this conversation. /new starts over without one."
        )
    else:
        lines.append("Send the request again to retry, or /new to start over.")
    return WorkflowResult(
        text="\n\n".join(lines),
        mode_used=mode,
        verdict=verdict,
        rounds_used=round_number or 0,
        files_changed=files_changed,
        developer_thread_id=developer_thread_id,
        developer_worker_id=developer_worker_id,
        usage=usage,
        selector=selector,
        plan=plan,
        failed_phase=phase,
        error=error,
        thread_kept=kept,
    )
