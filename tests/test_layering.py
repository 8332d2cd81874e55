"""The layering rule: `orchestrator` imports neither `actors` nor `cli`; `actors` not `cli`.

Checked statically on the source (every import statement, including ones inside functions
and under TYPE_CHECKING), so a lazy import cannot hide a violation.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "orchestrator": {"actors", "cli"},
    "actors": {"cli"},
}


def imported_top_level_packages(source: Path) -> set[str]:
    tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_upper_layers(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no sources found under {package}/"
    violations = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in sorted(imported_top_level_packages(path) & FORBIDDEN[package])
    ]
    assert violations == []


def test_checker_sees_violations(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from cli import app\n    import actors.router\n")
    assert imported_top_level_packages(bad) == {"cli", "actors"}
