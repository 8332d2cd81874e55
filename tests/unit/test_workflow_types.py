"""Unit tests of the workflow types: token usage, role outcomes, traces and results."""

from __future__ import annotations

import msgspec

from orchestrator.workflow_types import (
    RoleFailed,
    RoleOutcome,
    RoleSucceeded,
    RoleTrace,
    TokenUsage,
    WorkflowResult,
)

# --- structs ----------------------------------------------------------------------------------


def test_token_usage_adds_field_by_field() -> None:
    total = TokenUsage(input_tokens=10, output_tokens=2, total_tokens=12) + TokenUsage(
        input_tokens=5, cached_input_tokens=1, reasoning_output_tokens=3, total_tokens=5
    )
    assert total == TokenUsage(
        input_tokens=15,
        cached_input_tokens=1,
        output_tokens=2,
        reasoning_output_tokens=3,
        total_tokens=17,
    )


def test_role_outcome_union_round_trips_with_its_tag() -> None:
    outcomes: list[RoleOutcome] = [
        RoleSucceeded(text="ok", thread_id="t1", worker_id=0, files_changed=("a.py",)),
        RoleFailed(failure="worker_died", message="worker 1 exited"),
    ]
    encoded = msgspec.json.encode(outcomes)
    assert b'"kind":"RoleSucceeded"' in encoded
    assert msgspec.json.decode(encoded, type=list[RoleOutcome]) == outcomes


def test_trace_and_result_encode_to_json() -> None:
    trace = RoleTrace(role="reviewer", round=2, started_at=1.0, duration=0.5, outcome="failed")
    result = WorkflowResult(text="done", mode_used="plan", verdict="approved", rounds_used=1)
    assert msgspec.json.decode(msgspec.json.encode(trace), type=RoleTrace) == trace
    assert msgspec.json.decode(msgspec.json.encode(result), type=WorkflowResult) == result
    assert result.ok
    assert not WorkflowResult(text="x", mode_used="plan", failed_phase="planning").ok
