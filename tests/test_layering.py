"""The layering rules, checked statically on the source.

- `orchestrator` (the kernel) imports neither `actors` nor `cli`; `actors` not `cli`.
- Actors reach Codex and Telegram only through the ports: `actors` never imports
  `orchestrator.edges`, and the edges never import `actors`.
- Wire types are pure data: `orchestrator.wire` never imports `orchestrator.edges`.

Every import statement counts, including ones inside functions and under TYPE_CHECKING, so
a lazy import cannot hide a violation. Rules name dotted prefixes: ``orchestrator.edges``
covers ``orchestrator.edges.codex_mcp`` and ``from orchestrator import edges`` alike.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "orchestrator": {"actors", "cli"},
    "orchestrator.edges": {"actors"},
    "orchestrator.wire": {"orchestrator.edges"},
    "actors": {"cli", "orchestrator.edges"},
}
"""Package (dotted) → what no module under it may import (dotted prefixes)."""


def module_name(source: Path) -> str:
    """The dotted name of a source file under `ROOT` (a package's ``__init__`` is the package)."""
    parts = list(source.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: Path, module: str) -> set[str]:
    """Every dotted name `source` (the module `module`) imports.

    ``from a.b import c`` counts as importing ``a.b`` and ``a.b.c`` (``c`` may be a
    submodule); relative imports are resolved against `module`.
    """
    tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    is_package = source.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")
                drop = node.level - 1 if is_package else node.level
                anchor = package[: len(package) - drop] if drop else package
                base = ".".join([*anchor, *([base] if base else [])])
            if base:
                found.add(base)
            found.update(f"{base}.{alias.name}" if base else alias.name for alias in node.names)
    return found


def matches(name: str, prefix: str) -> bool:
    """Whether the dotted `name` is `prefix` or lies under it."""
    return name == prefix or name.startswith(prefix + ".")


def violations(package: str) -> list[str]:
    files = sorted((ROOT / package.replace(".", "/")).rglob("*.py"))
    assert files, f"no sources found under {package}"
    found = []
    for path in files:
        imported = imported_modules(path, module_name(path))
        for forbidden in sorted(FORBIDDEN[package]):
            found += [
                f"{path.relative_to(ROOT)} imports {name}"
                for name in sorted(imported)
                if matches(name, forbidden)
            ]
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_what_it_must_not(package: str) -> None:
    assert violations(package) == []


def test_checker_sees_violations(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def f():\n"
        "    from cli import app\n"
        "    import actors.router\n"
        "    from orchestrator import edges\n"
        "    from ..edges.codex_mcp import open_codex_process\n"
    )
    found = imported_modules(bad, "orchestrator.wire.bad")
    assert {"cli", "actors.router", "orchestrator.edges"} <= found
    assert "orchestrator.edges.codex_mcp" in found  # the relative import, resolved
    assert matches("orchestrator.edges.codex_mcp", "orchestrator.edges")
    assert not matches("orchestrator.edges_extra", "orchestrator.edges")
