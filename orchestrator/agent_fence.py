"""The bot's own files, fenced off from a sandboxed agent.

Codex's sandbox modes (``read-only``, ``workspace-write``) limit writes and the network, not
reads: a command the agent runs in them could read the token file, the config, ``.env`` and
everything in state_dir (other chats' sessions, traces and photos, the session key), and a
prompt injection is all it takes to ask for that. Codex also takes a *permission profile*
(``default_permissions`` and ``[permissions.NAME]``), whose filesystem entries can make paths
unreadable. Measured on 0.171.0 (``thread/start`` and ``thread/resume``, their ``config``):

- a profile given as the thread's config override applies, whatever sandbox_mode Codex's
  own config.toml names, and on a thread resumed in a new process too; ``cat`` of a path set
  to ``"none"`` says "Permission denied" (bubblewrap; the bundled one where none is on PATH);
- a command the user approved out of the sandbox writes where it asked to, and still cannot
  read what the profile denies (Codex marks deny entries not escalatable);
- a ``sandbox`` argument beside it wins over the profile (the legacy sandbox, every file
  readable), while a ``sandbox_mode`` in the same override does not: it stays there so
  that a Codex without profiles still runs the legacy sandbox (not measured: none is
  pinned; Codex reports the profile a thread runs in, and the edge logs one not ours);
- the profile ignores ``[sandbox_workspace_write]`` of config.toml, so its writable roots,
  network access and /tmp exclusions are carried over here (`LegacySandboxSettings`);
- a denied path that does not exist fails the thread (bwrap cannot mount over it) and
  leaves an empty placeholder file behind: only paths that exist are named, resolved (a
  symlink is never a mount target);
- a deny wins over a write grant of a folder around it, and a deny of a folder over a read
  grant of a path inside it.

Only the app-server backend gets it: Codex 0.153.4 (``mcp-server``) takes the same profile
as the ``codex`` tool's ``config``, but then runs a command the user approved out of the
sandbox inside it still, which would break every approval. ``danger-full-access`` has no
sandbox to carry such a rule: it keeps the legacy setting.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from orchestrator import disk

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from orchestrator.codex_runs import Sandbox

__all__ = [
    "CODEX_PRIVATE",
    "CODEX_PRIVATE_PATTERN",
    "PROFILE_NAME",
    "AgentFence",
    "LegacySandboxSettings",
    "bot_fence",
    "legacy_sandbox_settings",
]

PROFILE_NAME: Final = "codex-orchestrator"
"""The permission profile's name in the thread's config (Codex reports it back as the
thread's ``activePermissionProfile``)."""
_PARENTS: Final[dict[str, str]] = {"read-only": ":read-only", "workspace-write": ":workspace"}
"""Codex's built-in profile each sandbox mode matches."""
CODEX_PRIVATE: Final = ("auth.json", "sessions", "archived_sessions", "history.jsonl", "log")
"""What CODEX_HOME holds that is no command's business: the login (an API key or ChatGPT
tokens), every chat's transcripts and prompts, other users' included, and Codex's logs. Not
its skills, config or shell snapshots, which the agent's commands read; Codex reads these
in its own process, outside the sandbox."""
CODEX_PRIVATE_PATTERN: Final = "*.sqlite*"
"""Codex 0.171.0's databases in CODEX_HOME (``state_5.sqlite``, ``thread_history_1.sqlite``,
``logs_2.sqlite``, ``memories_1.sqlite``, … and their ``-wal``/``-shm``): the threads, their
history, logs and memories, of every chat. A pattern, as their numbers change with the
release: Codex matches it when each command starts, and one that matches nothing is
harmless (measured)."""
_GLOB_CHARACTERS: Final = frozenset("*?[]{}")
CODEX_CONFIG_LIMIT: Final = 1024 * 1024
"""Bytes of Codex's config.toml read for its sandbox settings (as the bot's own config)."""


@dataclass(frozen=True)
class LegacySandboxSettings:
    """``[sandbox_workspace_write]`` of Codex's config.toml, which the profile would drop."""

    writable_roots: tuple[str, ...] = ()
    network_access: bool = False
    exclude_tmpdir_env_var: bool = False
    exclude_slash_tmp: bool = False


def legacy_sandbox_settings(codex_config: Path) -> LegacySandboxSettings:
    """The ``[sandbox_workspace_write]`` settings of `codex_config` (blocking; at start); the
    defaults when the file or the table is missing or unreadable (Codex reads the same file
    and says what is wrong with it). Writable roots are kept as absolute paths only."""
    try:
        text = disk.read_operator_file(codex_config, CODEX_CONFIG_LIMIT).decode("utf-8")
        table = tomllib.loads(text).get("sandbox_workspace_write")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return LegacySandboxSettings()
    if not isinstance(table, dict):
        return LegacySandboxSettings()
    roots = table.get("writable_roots")
    return LegacySandboxSettings(
        writable_roots=tuple(
            str(Path(root).expanduser())
            for root in (roots if isinstance(roots, list) else [])
            if isinstance(root, str) and Path(root).expanduser().is_absolute()
        ),
        network_access=table.get("network_access") is True,
        exclude_tmpdir_env_var=table.get("exclude_tmpdir_env_var") is True,
        exclude_slash_tmp=table.get("exclude_slash_tmp") is True,
    )


@dataclass(frozen=True)
class AgentFence:
    """The paths a sandboxed agent may not read, and the config override that says so.

    `own_files` (the config, ``.env``, the token file, Codex's `CODEX_PRIVATE`),
    `state_dir` (its `disk.PRIVATE_STATE`) and the folders of `own_patterns` are resolved here,
    once: the override names real paths, and only those that exist when a thread starts;
    a pattern always (it may match files that come later).
    """

    own_files: Sequence[Path]
    state_dir: Path
    legacy: LegacySandboxSettings = field(default_factory=LegacySandboxSettings)
    own_patterns: Sequence[tuple[Path, str]] = ()
    """(folder, glob) of files named by a pattern (`CODEX_PRIVATE_PATTERN` in CODEX_HOME)."""
    _sealed: tuple[str, ...] = field(init=False, default=())
    _patterns: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        state = os.path.realpath(self.state_dir)
        paths = [os.path.realpath(path) for path in self.own_files]
        paths += [os.path.join(state, name) for name in disk.PRIVATE_STATE]
        object.__setattr__(self, "_sealed", tuple(dict.fromkeys(paths)))
        folders = ((os.path.realpath(folder), glob) for folder, glob in self.own_patterns)
        patterns = [
            os.path.join(folder, glob)
            for folder, glob in folders
            if _GLOB_CHARACTERS.isdisjoint(folder)  # a folder's own `[` would be read as one
        ]
        object.__setattr__(self, "_patterns", tuple(patterns))

    def sealed_paths(self) -> list[str]:
        """The fenced-off paths that exist now (blocking: one ``stat`` each)."""
        return [path for path in self._sealed if os.path.lexists(path)]

    def thread_config(self, sandbox: Sandbox) -> dict[str, object] | None:
        """The config override a fresh or resumed thread in `sandbox` gets (sent instead of
        the ``sandbox`` argument); None for ``danger-full-access``, which keeps it.
        Blocking: one ``stat`` per fenced-off path (microseconds)."""
        parent = _PARENTS.get(sandbox)
        if parent is None:
            return None
        filesystem: dict[str, str] = {}
        network = False
        if sandbox == "workspace-write":
            roots = (os.path.realpath(root) for root in self.legacy.writable_roots)
            filesystem |= {root: "write" for root in roots if os.path.isdir(root)}
            if self.legacy.exclude_slash_tmp:
                filesystem[":slash_tmp"] = "read"
            if self.legacy.exclude_tmpdir_env_var:
                filesystem[":tmpdir"] = "read"
            network = self.legacy.network_access
        filesystem |= {path: "none" for path in (*self.sealed_paths(), *self._patterns)}
        profile: dict[str, object] = {"extends": parent, "filesystem": filesystem}
        if network:
            profile["network"] = {"enabled": True}
        return {
            "sandbox_mode": sandbox,
            "default_permissions": PROFILE_NAME,
            "permissions": {PROFILE_NAME: profile},
        }


def bot_fence(own_files: Iterable[Path], state_dir: Path, codex_home: Path) -> AgentFence:
    """The fence of a bot whose secrets are in `own_files` (the config, ``.env``, the token
    file), whose state is in `state_dir` and whose workers' Codex keeps its login and
    transcripts in `codex_home` (blocking: resolves paths, reads Codex's config.toml).
    ``start`` gives it to its workers and ``doctor`` tries it."""
    return AgentFence(
        own_files=[*own_files, *(codex_home / name for name in CODEX_PRIVATE)],
        state_dir=state_dir,
        legacy=legacy_sandbox_settings(codex_home / "config.toml"),
        own_patterns=[(codex_home, CODEX_PRIVATE_PATTERN)],
    )
