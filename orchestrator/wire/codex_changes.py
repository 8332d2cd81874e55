"""The diff of a Codex patch approval: ``codex_changes`` rendered as one unified diff.

Codex 0.153.4 sends, per absolute path, ``{"type": "add", "content": ...}``,
``{"type": "delete", "content": ...}`` or ``{"type": "update", "unified_diff": ...,
"move_path": ...}`` (older builds wrap the same fields as ``{"add": {...}}``). The user must
see what a patch does before approving it, not only which files it touches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgspec

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["changes_diff"]

_KINDS: Final = ("add", "delete", "update")


def changes_diff(changes: Mapping[str, msgspec.Raw] | None) -> str:
    """One unified diff of every change, in Codex's order; "" when there are none."""
    parts = []
    for path, raw in (changes or {}).items():
        try:
            change = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            change = None
        parts.append(_file_diff(path, change if isinstance(change, dict) else {}))
    return "".join(parts)


def _file_diff(path: str, change: dict[str, object]) -> str:
    kind = change.get("type", "")
    if kind not in _KINDS:  # {"add": {...}}
        for name in _KINDS:
            inner = change.get(name)
            if isinstance(inner, dict):
                kind, change = name, inner
                break
    content = change.get("content")
    content = content if isinstance(content, str) else ""
    lines = content.splitlines()
    if kind == "add":
        body = "".join(f"+{line}\n" for line in lines)
        return f"--- /dev/null\n+++ {path}\n@@ -0,0 +1,{len(lines)} @@\n{body}"
    if kind == "delete":
        body = "".join(f"-{line}\n" for line in lines)
        return f"--- {path}\n+++ /dev/null\n@@ -1,{len(lines)} +0,0 @@\n{body}"
    diff = change.get("unified_diff")
    diff = diff if isinstance(diff, str) else ""
    moved = change.get("move_path")
    target = moved if isinstance(moved, str) and moved else path
    if diff and not diff.endswith("\n"):
        diff += "\n"
    header = f"--- {path}\n+++ {target}\n"
    if kind != "update":
        return f"{header}(a change Codex did not describe)\n"
    # Codex's unified_diff is hunks only; a diff with its own header gets ours instead.
    return header + (diff.split("\n", 2)[2] if diff.startswith("--- ") else diff)
