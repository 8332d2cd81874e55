"""Installing the real Codex from npm into the git-ignored ``.cache/`` folder.

Only ``@openai/codex@0.153.4`` (the last release with ``mcp-server``) and
``@openai/codex@0.171.0`` (the pinned ``app-server`` release), never the unrelated npm
package named just ``codex``. The native binary is used directly: it starts in ~60 ms, the
node wrapper costs an extra process and ~200 ms (both measured).
"""

from __future__ import annotations

import fcntl
import platform
import shutil
import subprocess
from pathlib import Path

from orchestrator.wire.codex_mcp import CODEX_MCP_VERSION

VERSION = CODEX_MCP_VERSION
PACKAGE = f"@openai/codex@{VERSION}"
REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / f"codex-{VERSION}"

APP_SERVER_VERSION = "0.171.0"
"""Pinned for ``codex app-server`` (orchestrator.wire.codex_app_server.CODEX_APP_SERVER_VERSION)."""
APP_SERVER_PACKAGE = f"@openai/codex@{APP_SERVER_VERSION}"
APP_SERVER_CACHE = REPO / ".cache" / f"codex-{APP_SERVER_VERSION}"

_TRIPLES = {
    ("x86_64", "linux"): ("codex-linux-x64", "x86_64-unknown-linux-musl"),
    ("aarch64", "linux"): ("codex-linux-arm64", "aarch64-unknown-linux-musl"),
}


class CodexInstallError(RuntimeError):
    """npm exists but the install failed."""


def binary_path(cache: Path = CACHE) -> Path:
    machine = platform.machine().lower()
    system = platform.system().lower()
    package, triple = _TRIPLES.get((machine, system), _TRIPLES[("x86_64", "linux")])
    return cache / "node_modules" / "@openai" / package / "vendor" / triple / "bin" / "codex"


def ensure_codex(cache: Path = CACHE, package: str = PACKAGE) -> Path | None:
    """The native Codex binary of `package` (0.153.4 by default), installing it into `cache`
    first if needed; None without npm.

    The binary exists while npm is still writing it, and running it then fails with "Text
    file busy" (it did in CI, under pytest-xdist). So only the marker npm's finished install
    leaves says the binary is ready; until it exists, a caller waits on the install lock.
    """
    binary = binary_path(cache)
    installed = cache / ".installed"
    if installed.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        return None
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test runs install once, and wait for it
        if installed.exists():
            return binary
        if not binary.exists():
            _npm_install(npm, cache, package, binary)
        # Every install runs under this lock, so a binary found here is a finished one.
        installed.write_text(package + "\n")
    return binary


def _npm_install(npm: str, cache: Path, package: str, binary: Path) -> None:
    result = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--prefix", str(cache), package],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    (cache / "npm.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0 or not binary.exists():
        raise CodexInstallError(
            f"npm install {package} failed (exit {result.returncode}):\n"
            + (result.stderr or result.stdout)[-2000:]
        )


def ensure_app_server_codex() -> Path | None:
    """The native Codex 0.171.0 binary (``codex app-server``); None without npm."""
    return ensure_codex(APP_SERVER_CACHE, APP_SERVER_PACKAGE)
