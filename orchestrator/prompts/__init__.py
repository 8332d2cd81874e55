"""Each workflow role's instructions: packaged defaults and per-profile overrides.

This package owns the files ``selector.md``, ``planner.md``, ``developer.md`` and
``reviewer.md`` (package data, so they ship in the wheel) and the two loaders:

- `load_role_instructions(role, overrides)` returns one role's text: the override file when the
  profile names one for that role, else the packaged default.
- `load_instructions(overrides, system_prompt=...)` loads all four into a `RoleInstructions`,
  with the profile's ``system_prompt_file`` text (if any) placed before each role's text, so
  the project's own conventions reach every role.

The text is meant for Codex's ``developer-instructions`` tool argument, never for
``base-instructions``, which would replace Codex's own system prompt (tool use, sandbox rules).
Files are read when called: load once per profile, at start or on ``/profile``, not per message.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Final

from orchestrator.workflow_types import ROLES, Role, RoleInstructions

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

__all__ = ["load_instructions", "load_role_instructions"]

_SYSTEM_PROMPT_SEPARATOR: Final = "\n\n---\n\n"
"""Between the profile's system prompt and the role's text: a visible break for the model."""


def _check_override_keys(overrides: Mapping[str, Path]) -> None:
    unknown = sorted(set(overrides) - set(ROLES))
    if unknown:
        raise ValueError(
            f"unknown role(s) in instruction overrides: {', '.join(unknown)}; "
            f"expected some of: {', '.join(ROLES)}"
        )


def load_role_instructions(role: Role, overrides: Mapping[str, Path]) -> str:
    """Return the instructions of `role`.

    Args:
        role: The role whose instructions to load.
        overrides: Role name → file, from the profile; roles not named use the default.

    Returns:
        The instructions text, stripped of surrounding whitespace.

    Raises:
        ValueError: `overrides` names a role that does not exist, or the file is empty.
        OSError: An override file cannot be read (its path is in the message).
    """
    _check_override_keys(overrides)
    override = overrides.get(role)
    if override is None:
        text = resources.files(__name__).joinpath(f"{role}.md").read_text(encoding="utf-8")
    else:
        text = override.read_text(encoding="utf-8")
        if not text.strip():
            raise ValueError(f"instruction override for {role} is empty: {override}")
    return text.strip()


def load_instructions(
    overrides: Mapping[str, Path], *, system_prompt: str | None = None
) -> RoleInstructions:
    """Load the instructions of every role.

    Args:
        overrides: Role name → file, from the profile.
        system_prompt: The profile's ``system_prompt_file`` text, put before each role's
            instructions; None or blank for none.

    Returns:
        The four roles' instructions.

    Raises:
        ValueError: As `load_role_instructions`.
        OSError: As `load_role_instructions`.
    """
    prefix = system_prompt.strip() if system_prompt else ""

    def load(role: Role) -> str:
        text = load_role_instructions(role, overrides)
        return prefix + _SYSTEM_PROMPT_SEPARATOR + text if prefix else text

    return RoleInstructions(
        selector=load("selector"),
        planner=load("planner"),
        developer=load("developer"),
        reviewer=load("reviewer"),
    )
