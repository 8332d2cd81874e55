"""How a request's end changes its chat's session: the pure half of `actors.chat_running.settle`.

A completed request moves the conversation on (its thread, the rolling summary the next
fresh thread starts from, the token counters); a failed developer turn drops the thread,
because continuing a Codex 0.153.4 thread after an error shifts every later answer by one
(an app-server thread is kept: `WorkflowResult.thread_kept`); a request stopped by a
shutdown goes back to the front of the queue (a photo request, which the text queue cannot
hold, is kept as the running record and offered with "Run again"); a cancel goes into the
summary as cancelled, and the developer's thread goes on where the cancel left it fit to (an
interrupted app-server turn, a first request's too; with MCP the cancel ends the worker, and
the next request's recap is all it knows of a first request); a failure only counts. Kept
apart from the actor so each outcome is one plain function of the old state, testable
without a chat.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, assert_never

import msgspec

from actors import chat_texts
from actors.chat_request import CancelledByUser, Completed, Failed, Interrupted
from orchestrator.messages import TraceRecord
from orchestrator.session_store import RequestRecord, SessionCounters
from orchestrator.workflow_types import ThreadInstructions

if TYPE_CHECKING:
    from actors.chat_request import Request, RequestOutcome
    from orchestrator.session_store import SessionState
    from orchestrator.workflow_types import WorkflowResult

__all__ = ["CANCELLED_SUMMARY", "FAILED_SUMMARY", "SUMMARY_LIMIT", "settled"]

FAILED_SUMMARY: Final = "(this request failed before Codex finished it)"
"""The summary's result line of a request that failed."""

CANCELLED_SUMMARY: Final = (
    "(the user cancelled this request before Codex finished it; what it changed so far stays "
    "changed)"
)
"""The summary's result line of a cancelled request: a fresh thread's recap knows it was
asked, so "go on" or "do it another way" after a cancel has something to go on."""

SUMMARY_LIMIT: Final = 1500
"""Characters of conversation summary kept as the context preamble."""


def settled(
    state: SessionState, request: Request, outcome: RequestOutcome
) -> tuple[SessionState, TraceRecord]:
    """The session after `request` ended with `outcome`, and its ``run_end`` trace (without
    the mode, profile and duration, which the chat adds)."""
    state = msgspec.structs.replace(state, running=None)
    counters = state.counters
    match outcome:
        case Completed(result=result):
            failed = result.error is not None
            usage = result.usage
            thread = result.developer_thread_id or state.developer_thread_id
            worker = (
                result.developer_worker_id
                if result.developer_thread_id
                else state.developer_worker_id
            )
            if result.failed_phase == "developing" and not result.thread_kept:
                # Codex's thread saw an error: continuing it shifts the next answers by one
                # (Codex 0.153.4). The next request starts a fresh thread with the summary
                # as its recap, as after a cancel. An app-server thread goes on.
                thread, worker = None, None
            answer = FAILED_SUMMARY if failed else result.text
            state = msgspec.structs.replace(
                state,
                developer_thread_id=thread,
                developer_worker_id=worker,
                context=result.developer_context or state.context,
                instructions=_instructions(result) or state.instructions,
                summary=_summarize(state.summary, request.prompt, answer),
                last_usage=usage,
                counters=SessionCounters(
                    runs=counters.runs + 1,
                    failures=counters.failures + (1 if failed else 0),
                    cancels=counters.cancels,
                    input_tokens=counters.input_tokens + usage.input_tokens,
                    output_tokens=counters.output_tokens + usage.output_tokens,
                ),
            )
            return state, TraceRecord(
                event="run_end",
                input_tokens=usage.input_tokens,
                cached_input_tokens=usage.cached_input_tokens,
                output_tokens=usage.output_tokens,
                total_tokens=usage.total_tokens,
                outcome="failed" if failed else "ok",
                detail=result.error,
            )
        case CancelledByUser() | Interrupted():
            if isinstance(outcome, Interrupted) and request.offered_after_a_stop:
                # Offered with "Run again" at the next start (`actors.chat_recovery`).
                record = RequestRecord(prompt=request.prompt, images=request.images, counted=True)
                state = msgspec.structs.replace(state, running=record)
            elif isinstance(outcome, Interrupted):
                # Codex had not acted on it yet: it runs again after the restart instead of
                # being lost.
                state = msgspec.structs.replace(state, queue=(request.prompt, *state.queue))
            else:
                summary = _summarize(state.summary, request.prompt, CANCELLED_SUMMARY)
                state = msgspec.structs.replace(state, summary=summary)
                if request.progress.thread is not None:  # interrupted, not gone: it goes on
                    state = msgspec.structs.replace(
                        state,
                        developer_thread_id=request.progress.thread,
                        developer_worker_id=request.progress.worker,
                    )
            counted = msgspec.structs.replace(
                counters, runs=counters.runs + 1, cancels=counters.cancels + 1
            )
            detail = outcome.reason if isinstance(outcome, CancelledByUser) else "shutdown"
            return (
                msgspec.structs.replace(state, counters=counted),
                TraceRecord(event="run_end", outcome="cancelled", detail=detail),
            )
        case Failed():
            counted = msgspec.structs.replace(
                counters, runs=counters.runs + 1, failures=counters.failures + 1
            )
            return (
                msgspec.structs.replace(state, counters=counted),
                TraceRecord(event="run_end", outcome="failed", detail=outcome.error),
            )
        case _:
            assert_never(outcome)


def _instructions(result: WorkflowResult) -> ThreadInstructions | None:
    """The developer instructions the result's thread has now, when its last call sent some."""
    if result.developer_thread_id is None or not result.developer_instructions:
        return None
    return ThreadInstructions(
        thread_id=result.developer_thread_id, digest=result.developer_instructions
    )


def _summarize(previous: str, prompt: str, answer: str) -> str:
    """A rolling summary: the last exchanges, newest last, cut to `SUMMARY_LIMIT`."""
    entry = f"User asked: {chat_texts.user_words(prompt)[:300]}\nResult: {answer[:500]}"
    combined = f"{previous}\n\n{entry}" if previous else entry
    return combined[-SUMMARY_LIMIT:]
