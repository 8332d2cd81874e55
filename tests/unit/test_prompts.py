"""Unit tests of the role instructions: packaged defaults, overrides, the per-profile cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.config import Profile, RolePrompts
from orchestrator.prompts import (
    PROMPT_FILE_LIMIT,
    current_instructions,
    instructions_for,
    load_instructions,
    load_role_instructions,
    profile_prompt_files,
)
from orchestrator.role_answers import extract_files_changed
from orchestrator.workflow_types import ROLES

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


# --- the per-profile cache --------------------------------------------------------------------


def test_a_profile_without_files_names_none_and_gets_the_defaults(tmp_path: Path) -> None:
    profile = Profile(working_directory=str(tmp_path))
    assert profile_prompt_files(profile) == []
    assert current_instructions(profile) == load_instructions({})


def test_cached_instructions_are_read_again_once_a_file_changed(tmp_path: Path) -> None:
    system = tmp_path / "system.md"
    developer = tmp_path / "developer.md"
    system.write_text("House rules.", encoding="utf-8")
    developer.write_text("Developer v1.", encoding="utf-8")
    profile = Profile(
        working_directory=str(tmp_path),
        system_prompt_file=str(system),
        role_prompts=RolePrompts(developer=str(developer)),
    )
    assert profile_prompt_files(profile) == [system, developer]
    first = current_instructions(profile)
    assert first.developer.startswith("House rules.")
    assert first.developer.endswith("Developer v1.")
    assert current_instructions(profile) is first  # unchanged files: no second read
    developer.write_text("Developer v2, longer.", encoding="utf-8")
    assert current_instructions(profile).developer.endswith("Developer v2, longer.")
    assert instructions_for(profile) == current_instructions(profile)


def test_an_unreadable_file_is_an_error_every_time(tmp_path: Path) -> None:
    profile = Profile(working_directory=str(tmp_path), system_prompt_file=str(tmp_path / "no.md"))
    for _ in range(2):
        with pytest.raises(OSError, match=r"no\.md"):
            current_instructions(profile)


def test_a_file_swapped_for_a_fifo_a_device_or_a_huge_one_is_refused_at_once(
    tmp_path: Path,
) -> None:
    """An instruction file may lie in the workspace, where the agent can swap it: a FIFO
    blocked the request's thread for ever (its /cancel and the bot's stop waited on it)."""
    fifo = tmp_path / "prompt.md"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.md"
    huge.write_text("x" * (PROMPT_FILE_LIMIT + 1))
    for path, error in [(fifo, OSError), (Path("/dev/zero"), OSError), (huge, ValueError)]:
        profile = Profile(working_directory=str(tmp_path), system_prompt_file=str(path))
        with pytest.raises(error):
            instructions_for(profile)
        override = Profile(
            working_directory=str(tmp_path), role_prompts=RolePrompts(developer=str(path))
        )
        with pytest.raises(error):
            instructions_for(override)
