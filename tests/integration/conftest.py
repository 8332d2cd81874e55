"""Integration tests run the real Codex 0.153.4 against the mock model, on the real clock.

The binary is installed with npm into the git-ignored ``.cache/`` on first use. Without npm
the tests are skipped with that reason; if npm exists but the install fails, they fail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.fakes.codex_install import CodexInstallError, ensure_codex

if TYPE_CHECKING:
    from pathlib import Path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def codex_binary() -> Path:
    try:
        binary = ensure_codex()
    except CodexInstallError as error:
        pytest.fail(str(error))
    if binary is None:
        pytest.skip("npm not found: the real Codex 0.153.4 cannot be installed")
    return binary
