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

A profile's instructions are cached: `current_instructions(profile)` reads its files once and
again only after one of them changed (a stat of each file per request instead of reading up to
five), so an edited prompt file applies from the next request without a restart.
`profile_prompt_files(profile)` names the files, so a caller can skip a thread hop when there
are none (the usual case).
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeAlias

import msgspec

from orchestrator import disk
from orchestrator.workflow_types import ROLES, Role, RoleInstructions

if TYPE_CHECKING:
    from collections.abc import Mapping

    from orchestrator.config import Profile

__all__ = [
    "PROMPT_FILE_LIMIT",
    "current_instructions",
    "instructions_digest",
    "instructions_for",
    "load_instructions",
    "load_role_instructions",
    "profile_prompt_files",
    "read_prompt_file",
]

_SYSTEM_PROMPT_SEPARATOR: Final = "\n\n---\n\n"
"""Between the profile's system prompt and the role's text: a visible break for the model."""


def instructions_digest(instructions: str) -> str:
    """A short fingerprint of a role's developer instructions ("" for none): what a session
    remembers of those its Codex thread has, to tell whether a resumed thread needs them
    again without keeping the text."""
    if not instructions:
        return ""
    return hashlib.sha256(instructions.encode()).hexdigest()[:16]


def _check_override_keys(overrides: Mapping[str, Path]) -> None:
    unknown = sorted(set(overrides) - set(ROLES))
    if unknown:
        raise ValueError(
            f"unknown {'role' if len(unknown) == 1 else 'roles'} in instruction overrides: "
            f"{', '.join(unknown)}; "
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
        text = read_prompt_file(override)
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


PROMPT_FILE_LIMIT: Final = 256 * 1024
"""Bytes an instruction file may hold: it goes with every turn of the role."""


def read_prompt_file(path: Path) -> str:
    """The text of an instruction file the profile names (blocking). It may lie in the
    workspace, where the agent can swap it: a FIFO there blocked the request's thread for
    ever (its cancel and the bot's stop waited on it), a device would be read for ever.

    Raises:
        OSError: it cannot be read, or is not a regular file (`disk.NotARegularFile`).
        ValueError: it is not UTF-8, or holds more than `PROMPT_FILE_LIMIT` bytes.
    """
    data = disk.read_operator_file(path, PROMPT_FILE_LIMIT)
    if len(data) > PROMPT_FILE_LIMIT:
        raise ValueError(f"{path} is over {PROMPT_FILE_LIMIT // 1024} KB")
    return data.decode("utf-8")


def instructions_for(profile: Profile) -> RoleInstructions:
    """The role instructions of `profile`: shipped defaults, its overrides, its system prompt.

    Raises:
        ValueError: As `load_role_instructions`.
        OSError: A file the profile names cannot be read.
    """
    overrides = {
        role: Path(path)
        for role, path in msgspec.structs.asdict(profile.role_prompts).items()
        if path
    }
    system_prompt = (
        read_prompt_file(Path(profile.system_prompt_file)) if profile.system_prompt_file else None
    )
    return load_instructions(overrides, system_prompt=system_prompt)


def profile_prompt_files(profile: Profile) -> list[Path]:
    """The files `profile` takes instructions from (its system prompt and role overrides)."""
    named = [profile.system_prompt_file, *msgspec.structs.astuple(profile.role_prompts)]
    return [Path(path) for path in named if path]


_FileStamp: TypeAlias = tuple[int, int] | None
"""A file's (mtime in ns, size), or None when it cannot be stat'ed."""

_CACHE: dict[Profile, tuple[tuple[_FileStamp, ...], RoleInstructions]] = {}
"""Role instructions per profile with the stamps of the files they came from."""


def _stamp(path: Path) -> _FileStamp:
    try:
        status = path.stat()
    except OSError:
        return None  # reading it will say what is wrong
    return status.st_mtime_ns, status.st_size


def current_instructions(profile: Profile) -> RoleInstructions:
    """`instructions_for` cached per profile, read again once one of its files changed.

    Blocking (a stat per file, reads on a change): call it in a worker thread when
    `profile_prompt_files` is not empty.

    Raises:
        ValueError: As `instructions_for`.
        OSError: As `instructions_for`.
    """
    stamps = tuple(_stamp(path) for path in profile_prompt_files(profile))
    cached = _CACHE.get(profile)
    if cached is not None and cached[0] == stamps:
        return cached[1]
    instructions = instructions_for(profile)
    _CACHE[profile] = (stamps, instructions)
    return instructions
