"""Unit tests of the readers of the roles' answers: route, verdict, files changed."""

from __future__ import annotations

import pytest

from orchestrator.role_answers import (
    decode_review_answer,
    decode_selector_answer,
    extract_files_changed,
    has_files_section,
    merge_files_changed,
)

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


def test_a_files_section_is_found_by_its_heading_alone() -> None:
    assert has_files_section("Done.\n\n## Files changed\n\n- a.py")
    assert has_files_section("Done.\n\nFiles changed: none")
    assert not has_files_section("Done. Files changed in this round are few.")
