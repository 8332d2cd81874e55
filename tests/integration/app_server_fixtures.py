"""The real Codex 0.171.0 (``codex app-server``) for integration tests: installed with npm
into ``.cache/`` on first use, skipped without npm, failed when npm exists but the install
fails (like the 0.153.4 fixture in conftest.py). Import the fixture into a test module."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.fakes.codex_install import CodexInstallError, ensure_app_server_codex

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="session")
def app_server_codex() -> Path:
    try:
        binary = ensure_app_server_codex()
    except CodexInstallError as error:
        pytest.fail(str(error))
    if binary is None:
        pytest.skip("npm not found: the real Codex 0.171.0 cannot be installed")
    return binary
