"""The permission profile that keeps the bot's own files from a sandboxed agent
(`orchestrator.agent_fence`): what it names, what it leaves out, and the legacy
``[sandbox_workspace_write]`` settings it carries over from Codex's config.toml."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest

from orchestrator.agent_fence import (
    PROFILE_NAME,
    AgentFence,
    LegacySandboxSettings,
    legacy_sandbox_settings,
)

if TYPE_CHECKING:
    from pathlib import Path


def bot_files(tmp_path: Path) -> tuple[list[Path], Path]:
    """A config (reached through a symlink), a token file, a `.env` that is gone, and a
    state_dir holding sessions, a session key and the commands' HOME."""
    real = tmp_path / "etc" / "conf.toml"
    real.parent.mkdir()
    real.write_text("")
    (tmp_path / "conf.toml").symlink_to(real)
    (tmp_path / "token.txt").write_text("")
    state = tmp_path / "state"
    for folder in ("sessions", "worker-home"):
        (state / folder).mkdir(parents=True)
    (state / "session.key").write_bytes(b"k")
    own = [tmp_path / "conf.toml", tmp_path / "token.txt", tmp_path / ".env"]
    return own, state


def profile_of(config: dict[str, object] | None) -> dict[str, Any]:
    """The permission profile a thread's config override defines."""
    assert config is not None
    assert config["default_permissions"] == PROFILE_NAME
    profiles: Any = config["permissions"]
    return dict(profiles[PROFILE_NAME])


def filesystem(config: dict[str, object] | None) -> dict[str, str]:
    return dict(profile_of(config)["filesystem"])


def test_a_sandboxed_thread_gets_the_bots_files_that_exist_resolved_and_unreadable(
    tmp_path: Path,
) -> None:
    own, state = bot_files(tmp_path)
    fence = AgentFence(own_files=own, state_dir=state)
    config = fence.thread_config("workspace-write")
    assert config is not None
    assert config["sandbox_mode"] == "workspace-write"  # a Codex without profiles: as before
    assert profile_of(config)["extends"] == ":workspace"
    assert "network" not in profile_of(config)
    real_state = os.path.realpath(state)
    assert filesystem(config) == {
        str(tmp_path / "etc" / "conf.toml"): "none",  # the target, never the symlink
        str(tmp_path / "token.txt"): "none",
        f"{real_state}/sessions": "none",
        f"{real_state}/session.key": "none",
    }  # no .env (gone), no worker-home (the commands' HOME)
    read_only = fence.thread_config("read-only")
    assert profile_of(read_only)["extends"] == ":read-only"
    assert filesystem(read_only) == filesystem(config)


def test_what_appears_later_is_fenced_from_the_next_thread_on(tmp_path: Path) -> None:
    own, state = bot_files(tmp_path)
    fence = AgentFence(own_files=own, state_dir=state)
    (state / "images").mkdir()
    (tmp_path / ".env").write_text("")
    entries = filesystem(fence.thread_config("workspace-write"))
    assert entries[f"{os.path.realpath(state)}/images"] == "none"
    assert entries[str(tmp_path / ".env")] == "none"


def test_codexs_databases_are_fenced_by_a_pattern_in_its_real_folder(tmp_path: Path) -> None:
    own, state = bot_files(tmp_path)
    (tmp_path / "codex-real").mkdir()
    (tmp_path / "codex").symlink_to(tmp_path / "codex-real")
    (tmp_path / "we[ird]").mkdir()
    patterns = [(tmp_path / "codex", "*.sqlite*"), (tmp_path / "we[ird]", "*.sqlite*")]
    fence = AgentFence(own_files=own, state_dir=state, own_patterns=patterns)
    entries = filesystem(fence.thread_config("read-only"))
    # Named though nothing matches yet: Codex matches it as each command starts.
    assert entries[str(tmp_path / "codex-real" / "*.sqlite*")] == "none"
    # A folder whose name Codex would read as a pattern itself is left out.
    assert not [key for key in entries if "we[ird]" in key]


def test_danger_full_access_keeps_its_sandbox_argument(tmp_path: Path) -> None:
    own, state = bot_files(tmp_path)
    assert AgentFence(own_files=own, state_dir=state).thread_config("danger-full-access") is None


def test_codexs_own_workspace_write_settings_are_carried_over(tmp_path: Path) -> None:
    own, state = bot_files(tmp_path)
    root = tmp_path / "cache"
    root.mkdir()
    (tmp_path / "cache-link").symlink_to(root)
    legacy = LegacySandboxSettings(
        writable_roots=(str(tmp_path / "cache-link"), str(tmp_path / "gone")),
        network_access=True,
        exclude_tmpdir_env_var=True,
        exclude_slash_tmp=True,
    )
    fence = AgentFence(own_files=own, state_dir=state, legacy=legacy)
    config = fence.thread_config("workspace-write")
    entries = filesystem(config)
    assert entries[str(root)] == "write"  # resolved; a root that is gone is left out
    assert str(tmp_path / "gone") not in entries
    assert entries[":slash_tmp"] == entries[":tmpdir"] == "read"
    assert profile_of(config)["network"] == {"enabled": True}
    # Read-only has none of them, as Codex's own read-only sandbox.
    read_only = fence.thread_config("read-only")
    assert str(root) not in filesystem(read_only)
    assert "network" not in profile_of(read_only)


def test_the_legacy_settings_are_read_from_codexs_config(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        'sandbox_mode = "workspace-write"\n'
        "[sandbox_workspace_write]\n"
        'writable_roots = ["/opt/cache", "relative/one", 7, "~/.cargo"]\n'
        "network_access = true\n"
        "exclude_slash_tmp = true\n"
    )
    settings = legacy_sandbox_settings(config)
    home = os.path.expanduser("~")
    assert settings == LegacySandboxSettings(
        writable_roots=("/opt/cache", f"{home}/.cargo"),
        network_access=True,
        exclude_slash_tmp=True,
    )


@pytest.mark.parametrize(
    "content",
    [None, "not toml [", "sandbox_workspace_write = 3\n", b"\xff\xfe"],
    ids=["missing", "broken", "not-a-table", "not-utf8"],
)
def test_a_codex_config_without_usable_settings_gives_the_defaults(
    tmp_path: Path, content: str | bytes | None
) -> None:
    config = tmp_path / "config.toml"
    if isinstance(content, str):
        config.write_text(content)
    elif content is not None:
        config.write_bytes(content)
    assert legacy_sandbox_settings(config) == LegacySandboxSettings()


def test_a_codex_config_that_is_a_fifo_is_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "config.toml")
    assert legacy_sandbox_settings(tmp_path / "config.toml") == LegacySandboxSettings()
