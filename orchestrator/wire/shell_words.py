"""A command Codex reports, as the user would type it: the shell wrapper taken off.

Codex runs a command as ``["/bin/bash", "-lc", "<script>"]`` and reports it so; the user
reads ``<script>``. Only a real shell's wrapper comes off: a program that merely ends in "sh"
(``./setup.sh -c "ls -la"``, ``publish``, ``ssh``) runs itself, which an approval must show,
or the user approves ``ls -la`` and the agent's own script runs (found in a review).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["FOLDERS_OF_SHELLS", "SHELLS", "shell_script"]

SHELLS: Final = frozenset({"sh", "bash", "zsh", "dash", "ksh", "fish"})
"""The shells whose ``-c``/``-lc`` wrapper is shown as the script it runs."""

FOLDERS_OF_SHELLS: Final = frozenset({"", "/bin", "/usr/bin", "/usr/local/bin"})
"""Where such a shell is (``""``: found on PATH, by its bare name)."""


def shell_script(words: Sequence[str]) -> str | None:
    """The script of ``[shell, "-c" | "-lc", script]`` when `shell` is a real shell (by its
    name, bare or in a system folder); None for anything else."""
    if len(words) != 3 or words[1] not in ("-c", "-lc"):
        return None
    program = PurePosixPath(words[0])
    folder = "" if program.parent == PurePosixPath() else program.parent.as_posix()
    if program.name in SHELLS and folder in FOLDERS_OF_SHELLS:
        return words[2]
    return None
