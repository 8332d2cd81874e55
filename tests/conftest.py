"""Test-suite charter.

Rules every test here follows (docs/architecture.md, "Rules of the house"):

- Actor logic runs under the ``autojump_clock`` fixture: backoffs, long polls, drain graces and
  intensity windows all pass in virtual time. A deadlock jumps straight to the test's
  ``trio.fail_after`` ceiling and fails at once instead of hanging CI.
- No test sleeps on the wall clock to synchronise. Tests wait on events the fakes expose,
  ``nursery.start``/``task_status``, or ``trio.testing.wait_all_tasks_blocked``.
- Edges are real protocols: the fake Telegram Bot API is an HTTP server on 127.0.0.1
  (``tests/fakes/telegram_server.py``), the fake Codex is a stdio MCP server
  (``tests/fakes/codex_mcp_server.py``), the mock model is a Responses-API SSE server
  (``tests/fakes/mock_model.py``). Tests that use real sockets or subprocesses run on the real
  clock (never autojump while real I/O is in flight) and are bounded by ``trio.fail_after``.
- Tests marked ``integration`` start real subprocesses (the fake MCP server or the real Codex
  0.153.4 against the mock model); they clean up every process they start, checked in /proc.
- No network beyond loopback; no secrets in output.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO: Path = Path(__file__).resolve().parent.parent

MACHINE_HOME: Path = Path.home()
"""The real HOME, captured before any fixture replaces it (only npm's settings are kept)."""

UNSET = ("CODEX_CONF_PATH", "TELEGRAM_BOT_TOKEN", "CODEX_HOME", "OPENAI_API_KEY", "CODEX_API_KEY")
"""Variables of the machine that would change what the bot or Codex under test reads."""

LOOPBACK = ("127.0.0.1", "localhost", "::1")
"""Where the fakes listen."""


@pytest.fixture(scope="session", autouse=True)
def hermetic_machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Tests read no ``.env``, config or HOME of the machine they run on.

    For the whole session (module and session fixtures included): HOME is an empty folder,
    the current directory is another empty folder (so the repository's ``.env``, made in the
    README's step 2, is never found), and CODEX_CONF_PATH, TELEGRAM_BOT_TOKEN, CODEX_HOME and
    the API keys are unset unless a test sets them. Subprocesses inherit this environment.
    npm, which installs the real Codex for the integration tests, keeps the machine's
    settings and cache (they name a registry, not anything of the bot's), and a proxy of the
    machine (``HTTPS_PROXY``) with it; the fakes on loopback are added to ``NO_PROXY``, so
    that nothing the bot, the CLI or Codex sends them goes to that proxy.

    A machine that keeps Python from writing bytecode (``PYTHONDONTWRITEBYTECODE``, as CI's
    does) would have every process the suite starts (the bot, its CLI, the fake Codex) compile
    the bot and its libraries from source again, about a second of CPU each: there, the
    subprocesses keep their bytecode in the git-ignored ``.cache/pycache`` instead
    (``PYTHONPYCACHEPREFIX``), never beside the sources. On this repository's CI machine that
    took ``tests/system`` from 138 s to 86 s.
    """
    root = tmp_path_factory.mktemp("machine")
    home = root / "home"
    cwd = root / "cwd"
    home.mkdir()
    cwd.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        for name in UNSET:
            patch.delenv(name, raising=False)
        npmrc = MACHINE_HOME / ".npmrc"
        if npmrc.is_file() and "npm_config_userconfig" not in os.environ:
            patch.setenv("npm_config_userconfig", str(npmrc))
        if "npm_config_cache" not in os.environ:
            patch.setenv("npm_config_cache", str(MACHINE_HOME / ".npm"))
        for name in ("NO_PROXY", "no_proxy"):  # the fakes on loopback: never via a proxy
            kept = [host for host in os.environ.get(name, "").split(",") if host.strip()]
            patch.setenv(name, ",".join([*kept, *LOOPBACK]))
        if os.environ.get("PYTHONDONTWRITEBYTECODE"):
            patch.delenv("PYTHONDONTWRITEBYTECODE")
            patch.setenv("PYTHONPYCACHEPREFIX", str(REPO / ".cache" / "pycache"))
        patch.setenv("HOME", str(home))
        patch.chdir(cwd)
        yield home
