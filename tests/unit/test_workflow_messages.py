"""Unit tests of the workflow types, the structured-answer decoders and the prompt loaders."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
import pytest

from orchestrator.prompts import load_instructions, load_role_instructions
from orchestrator.workflow_messages import (
    ROLES,
    RoleFailed,
    RoleOutcome,
    RoleSucceeded,
    RoleTrace,
    TokenUsage,
    WorkflowResult,
    decode_review_answer,
    decode_selector_answer,
    extract_files_changed,
    merge_files_changed,
)

if TYPE_CHECKING:
    from pathlib import Path


# --- selector ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "route", "reason"),
    [
        ('{"route": "single", "reason": "a typo"}', "single", "a typo"),
        ('{"route":"plan","reason":"touches three modules"}', "plan", "touches three modules"),
        ('```json\n{"route": "single", "reason": "small"}\n```', "single", "small"),
        ('Sure! Here it is:\n{"route": "plan", "reason": "big"}\nHope it helps.', "plan", "big"),
        ('{"route": "single"}', "single", ""),
        ('{"route": "single", "reason": "x", "confidence": 0.9}', "single", "x"),
        # A non-answer object first, then the answer: the first *valid* object wins.
        ('Context {"files": 3} then {"route": "single", "reason": "y"}', "single", "y"),
    ],
)
def test_selector_answer_is_read(text: str, route: str, reason: str) -> None:
    decision = decode_selector_answer(text)
    assert decision.route == route
    assert decision.reason == reason
    assert decision.malformed is False


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I think this should be done in single mode.",
        '{"route": "both", "reason": "?"}',
        '{"route": "single", "reason": 3}',
        '{"route": "single", "reason": "unterminated',
        '["single"]',
        '{"verdict": "approved", "feedback": "wrong role"}',
    ],
)
def test_malformed_selector_answer_routes_to_plan_and_is_flagged(text: str) -> None:
    decision = decode_selector_answer(text)
    assert decision.route == "plan"
    assert decision.malformed is True
    assert decision.reason.startswith("selector ")


# --- reviewer ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "verdict", "feedback"),
    [
        ('{"verdict": "approved", "feedback": "looks right"}', "approved", "looks right"),
        ('{"verdict": "changes", "feedback": "1. add a test"}', "changes", "1. add a test"),
        ('Review done.\n```json\n{"verdict":"approved"}\n```', "approved", ""),
        ('{"verdict": "changes", "feedback": "use {braces} \\"quoted\\""}', "changes", None),
    ],
)
def test_review_answer_is_read(text: str, verdict: str, feedback: str | None) -> None:
    answer = decode_review_answer(text)
    assert answer.verdict == verdict
    assert answer.malformed is False
    if feedback is not None:
        assert answer.feedback == feedback
    else:
        assert answer.feedback == 'use {braces} "quoted"'


def test_malformed_review_answer_is_changes_with_the_reviewers_text() -> None:
    answer = decode_review_answer("LGTM mostly, but the test for empty input is missing.")
    assert answer.verdict == "changes"
    assert answer.malformed is True
    assert "the test for empty input is missing" in answer.feedback


def test_invalid_verdict_value_is_never_an_approval() -> None:
    answer = decode_review_answer('{"verdict": "approve", "feedback": "fine"}')
    assert answer.verdict == "changes"
    assert answer.malformed is True


def test_empty_review_answer_still_gives_actionable_feedback() -> None:
    answer = decode_review_answer("   ")
    assert answer.verdict == "changes"
    assert answer.malformed is True
    assert "no answer" in answer.feedback


def test_huge_malformed_review_is_clipped() -> None:
    answer = decode_review_answer("x" * 50_000)
    assert answer.malformed is True
    assert len(answer.feedback) < 5_000


# --- files changed ----------------------------------------------------------------------------


def test_files_changed_list_is_extracted() -> None:
    report = (
        "Added the flag and a test.\n\n"
        "Tests: 12 passed.\n\n"
        "Files changed:\n"
        "- src/app/cli.py\n"
        "- `tests/test_cli.py` (new)\n"
        "* docs/usage.md \u2014 documented the flag\n"
        "\n"
        "- not/a/file/after/the/blank.py\n"
    )
    assert extract_files_changed(report) == (
        "src/app/cli.py",
        "tests/test_cli.py",
        "docs/usage.md",
    )


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ("## Files changed\n\n1. a.py\n2. b/c.py: renamed x\n", ("a.py", "b/c.py")),
        ("**Files changed:** `a.py`, `b.py`\n", ("a.py", "b.py")),
        ("Files modified: a.py, a.py\n", ("a.py",)),
        ("Files changed:\n- none\n", ()),
        ("I changed nothing.", ()),
        ("Files changed in this round are few.\n- a.py\n", ()),
        ("Changed files:\n  - x/y.toml\n  - x/z.toml\nDone.", ("x/y.toml", "x/z.toml")),
    ],
)
def test_files_changed_variants(report: str, expected: tuple[str, ...]) -> None:
    assert extract_files_changed(report) == expected


def test_merge_files_changed_keeps_first_seen_order() -> None:
    assert merge_files_changed(("b", "a"), ["a", "c"], ()) == ("b", "a", "c")


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


# --- prompts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_default_instructions_ship_for_every_role(role: str) -> None:
    text = load_role_instructions(role, {})  # type: ignore[arg-type]
    assert len(text) > 200
    assert text == text.strip()


def test_default_instructions_state_the_answer_contracts() -> None:
    assert '"route"' in load_role_instructions("selector", {})
    assert '"verdict"' in load_role_instructions("reviewer", {})
    assert "Files changed:" in load_role_instructions("developer", {})
    assert "numbered plan" in load_role_instructions("planner", {})
    # The developer's own report format must be one the extractor reads.
    developer = load_role_instructions("developer", {})
    assert extract_files_changed(developer[developer.index("Files changed:") :]) == (
        "path/to/first_file.py",
        "path/to/second_file.md",
    )


def test_override_replaces_only_its_role(tmp_path: Path) -> None:
    reviewer = tmp_path / "strict-reviewer.md"
    reviewer.write_text("  Be strict. Answer JSON.\n", encoding="utf-8")
    instructions = load_instructions({"reviewer": reviewer})
    assert instructions.reviewer == "Be strict. Answer JSON."
    assert instructions.developer == load_role_instructions("developer", {})
    assert instructions.for_role("reviewer") == "Be strict. Answer JSON."


def test_system_prompt_is_put_before_every_role(tmp_path: Path) -> None:
    instructions = load_instructions({}, system_prompt="Use British spelling.\n")
    for role in ROLES:
        text = instructions.for_role(role)
        assert text.startswith("Use British spelling.\n\n---\n\n")
        assert text.endswith(load_role_instructions(role, {}))


def test_unknown_override_role_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown role.*tester"):
        load_instructions({"tester": tmp_path / "x.md"})


def test_missing_or_empty_override_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.md"
    with pytest.raises(OSError, match=r"missing\.md"):
        load_role_instructions("planner", {"planner": missing})
    empty = tmp_path / "empty.md"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty"):
        load_role_instructions("planner", {"planner": empty})
