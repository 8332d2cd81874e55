"""Profiles are permissions: ``profiles.NAME.users``, required where the agent leaves the
sandbox or is never asked, and a default profile every allowed user may use."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from orchestrator.config import load_config
from tests.unit.test_config import ENV, fail, write

if TYPE_CHECKING:
    from pathlib import Path

HEAD = "[telegram]\nallowed_users = [1, 2]\n[profiles.default]\nworking_directory = 'work'\n"


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("sandbox = 'danger-full-access'", 'sandbox = "danger-full-access"'),
        ("approval_policy = 'never'", 'approval_policy = "never"'),
    ],
)
def test_a_profile_outside_the_sandbox_must_name_its_users(
    tmp_path: Path, setting: str, named: str
) -> None:
    path = write(tmp_path, f"{HEAD}[profiles.root]\nworking_directory = 'work'\n{setting}\n")
    error = fail(path)
    assert error.key == "profiles.root.users"
    assert named in error.problem
    assert "users = [" in error.fix


def test_users_must_be_allowed_users(tmp_path: Path) -> None:
    path = write(tmp_path, f"{HEAD}[profiles.root]\nworking_directory = 'work'\nusers = [1, 3]\n")
    error = fail(path)
    assert error.key == "profiles.root.users[1]"
    assert "not in telegram.allowed_users" in error.problem


def test_the_default_profile_must_be_usable_by_every_allowed_user(tmp_path: Path) -> None:
    path = write(tmp_path, f"{HEAD}users = [1]\n")
    error = fail(path)
    assert error.key == "default_profile"
    assert "[2]" in error.problem


def test_a_privileged_profile_with_users_loads(tmp_path: Path) -> None:
    text = (
        f"{HEAD}[profiles.root]\nworking_directory = 'work'\n"
        "sandbox = 'danger-full-access'\napproval_policy = 'never'\nusers = [1]\n"
    )
    loaded = load_config(write(tmp_path, text), environ=ENV, cwd=tmp_path)
    root = loaded.config.profiles["root"]
    assert root.allows(1)
    assert not root.allows(2)
    assert loaded.config.profiles["default"].allows(2)
