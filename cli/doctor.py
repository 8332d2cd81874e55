"""``codex-orchestrator doctor``: checks everything the bot needs and says how to fix it.

Each check returns one or more `CheckResult` rows (check · status · detail · fix); the table
is printed and the exit code is 1 when any row is ``FAIL``. Checks run in order, and a check
whose prerequisite failed is skipped (no point starting Codex when the config is unreadable).

The token is never printed: the token row shows where it came from and its length.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import msgspec

from orchestrator.config import LoadedConfig, load_config, worker_environment
from orchestrator.errors import ConfigError

__all__ = [
    "CHECKS",
    "CheckResult",
    "DoctorContext",
    "format_table",
    "run_checks",
    "run_doctor",
]

Status = Literal["ok", "warn", "FAIL", "skip"]

LAST_MCP_SERVER_RELEASE: Final = (0, 153, 4)
PIN_FIX: Final = (
    'pin it: command = ["npx", "-y", "@openai/codex@0.153.4", "mcp-server"] '
    "(0.153.4 is the last Codex release with mcp-server)"
)
VERSION_TIMEOUT: Final = 120.0
"""Seconds for ``codex --version``; through npx the first run downloads the package."""


class CheckResult(msgspec.Struct, frozen=True, kw_only=True):
    """One row of the doctor's table."""

    check: str
    status: Status
    detail: str = ""
    fix: str = ""


@dataclass
class DoctorContext:
    """What checks share: the config path, the environment and what earlier checks found."""

    config_path: Path | None
    environ: Mapping[str, str]
    loaded: LoadedConfig | None = None
    facts: dict[str, str] = field(default_factory=dict)


Check = Callable[[DoctorContext], Awaitable[list[CheckResult]]]


async def check_config(ctx: DoctorContext) -> list[CheckResult]:
    """The config file loads and validates (token checked separately)."""
    try:
        ctx.loaded = load_config(ctx.config_path, environ=ctx.environ, require_token=False)
    except ConfigError as error:
        return [CheckResult(check="config", status="FAIL", detail=error.problem, fix=error.fix)]
    return [CheckResult(check="config", status="ok", detail=str(ctx.loaded.path))]


async def check_token(ctx: DoctorContext) -> list[CheckResult]:
    """TELEGRAM_BOT_TOKEN is set (its value is never shown)."""
    if ctx.loaded is None:
        return [CheckResult(check="token", status="skip", detail="config not loaded")]
    token = ctx.loaded.token
    if not token:
        return [
            CheckResult(
                check="token",
                status="FAIL",
                detail="TELEGRAM_BOT_TOKEN is not set",
                fix="put TELEGRAM_BOT_TOKEN=<token from @BotFather> in .env",
            )
        ]
    detail = f"set in {ctx.loaded.token_source} ({len(token.reveal())} chars)"
    return [CheckResult(check="token", status="ok", detail=detail)]


async def check_allowed_users(ctx: DoctorContext) -> list[CheckResult]:
    """Someone is allowed in (an empty allowlist is legal but locks everyone out)."""
    if ctx.loaded is None:
        return []
    users = ctx.loaded.config.telegram.allowed_users
    if not users:
        return [
            CheckResult(
                check="allowed_users",
                status="warn",
                detail="empty: nobody can use the bot",
                fix="add your Telegram user id to telegram.allowed_users",
            )
        ]
    return [
        CheckResult(
            check="allowed_users",
            status="ok",
            detail=f"{len(users)} user{'' if len(users) == 1 else 's'}",
        )
    ]


def _writable(path: Path) -> str | None:
    """None if `path` is (or can be made) a writable folder, else the reason."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
            pass
    except OSError as error:
        return f"{error.strerror or error.__class__.__name__}"
    return None


async def check_folders(ctx: DoctorContext) -> list[CheckResult]:
    """state_dir and every profile's working directory are writable."""
    if ctx.loaded is None:
        return []
    config = ctx.loaded.config
    rows = []
    problem = _writable(Path(config.state_dir))
    rows.append(
        CheckResult(
            check="state_dir",
            status="FAIL" if problem else "ok",
            detail=f"{config.state_dir}" + (f": {problem}" if problem else ""),
            fix="make state_dir writable by this user" if problem else "",
        )
    )
    for name, profile in config.profiles.items():
        problem = _writable(Path(profile.working_directory))
        rows.append(
            CheckResult(
                check=f"profile {name}",
                status="FAIL" if problem else "ok",
                detail=profile.working_directory + (f": {problem}" if problem else ""),
                fix="make the working directory writable by this user" if problem else "",
            )
        )
    return rows


def _version_argv(argv: tuple[str, ...]) -> list[str]:
    """``codex ... mcp-server`` → ``codex ... --version``."""
    base = list(argv[:-1]) if argv and argv[-1] == "mcp-server" else list(argv)
    return [*base, "--version"]


def parse_version(text: str) -> tuple[int, int, int] | None:
    """The first ``X.Y.Z`` in `text`."""
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


async def check_codex_command(ctx: DoctorContext) -> list[CheckResult]:
    """The worker command exists, and its version still has ``mcp-server``."""
    if ctx.loaded is None:
        return []
    import trio

    codex = ctx.loaded.config.codex
    argv = codex.argv()
    program = shutil.which(argv[0], path=worker_environment(codex, ctx.environ).get("PATH"))
    if program is None:
        fix = (
            "install Node.js and npm (npx comes with npm)"
            if argv[0] == "npx"
            else "install Codex (npm install @openai/codex@0.153.4) or fix codex.command"
        )
        return [
            CheckResult(
                check="codex command",
                status="FAIL",
                detail=f"{argv[0]} not found on PATH",
                fix=fix,
            )
        ]
    rows = [CheckResult(check="codex command", status="ok", detail=" ".join(argv))]
    try:
        with trio.fail_after(VERSION_TIMEOUT):
            result = await trio.run_process(
                _version_argv(argv),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=worker_environment(codex, ctx.environ),
                stdin=subprocess.DEVNULL,
            )
    except (OSError, trio.TooSlowError) as error:
        rows.append(
            CheckResult(
                check="codex version",
                status="FAIL",
                detail=f"could not run --version: {error.__class__.__name__}",
                fix="check codex.command",
            )
        )
        return rows
    output = (result.stdout + result.stderr).decode(errors="replace")
    version = parse_version(output)
    if version is None:
        rows.append(
            CheckResult(
                check="codex version",
                status="warn",
                detail="no version in the output of --version",
                fix="check that codex.command starts Codex",
            )
        )
        return rows
    shown = ".".join(map(str, version))
    ctx.facts["codex_version"] = shown
    if version > LAST_MCP_SERVER_RELEASE:
        rows.append(
            CheckResult(
                check="codex version",
                status="FAIL",
                detail=f"{shown} has no mcp-server (removed in 0.154.0)",
                fix=PIN_FIX,
            )
        )
    else:
        rows.append(CheckResult(check="codex version", status="ok", detail=shown))
    return rows


async def check_codex_auth(ctx: DoctorContext) -> list[CheckResult]:
    """Codex can authenticate: a login in CODEX_HOME, an API key, or a custom provider."""
    if ctx.loaded is None:
        return []
    return _codex_auth_rows(ctx.loaded, ctx.environ)


def _codex_auth_rows(loaded: LoadedConfig, environ: Mapping[str, str]) -> list[CheckResult]:
    env = worker_environment(loaded.config.codex, environ)
    home = Path(env.get("CODEX_HOME") or Path(env.get("HOME", "~")) / ".codex").expanduser()
    if (home / "auth.json").is_file():
        return [CheckResult(check="codex auth", status="ok", detail=f"login in {home}")]
    if env.get("OPENAI_API_KEY") or env.get("CODEX_API_KEY"):
        return [CheckResult(check="codex auth", status="ok", detail="API key in the environment")]
    config_file = home / "config.toml"
    if config_file.is_file() and re.search(
        r"^\s*model_provider\s*=", config_file.read_text(errors="replace"), re.MULTILINE
    ):
        return [
            CheckResult(
                check="codex auth",
                status="ok",
                detail=f"custom model provider in {config_file}",
            )
        ]
    return [
        CheckResult(
            check="codex auth",
            status="FAIL",
            detail=f"no login in {home}, no OPENAI_API_KEY, no custom provider",
            fix="run `codex login`, or set OPENAI_API_KEY in [codex.env] or the environment",
        )
    ]


async def check_worker_pool(ctx: DoctorContext) -> list[CheckResult]:
    """``pool_size`` workers start, initialize and list ``codex`` and ``codex-reply``."""
    if ctx.loaded is None or ctx.facts.get("skip_pool"):
        return []
    import trio

    from cli.doctor_probe import probe_worker

    codex = ctx.loaded.config.codex
    env = worker_environment(codex, ctx.environ)
    results: list[CheckResult | None] = [None] * codex.pool_size

    async def one(index: int) -> None:
        results[index] = await probe_worker(
            index, codex.argv(), env=env, startup_seconds=codex.startup_timeout
        )

    async with trio.open_nursery() as nursery:
        for index in range(codex.pool_size):
            nursery.start_soon(one, index)
    return [row for row in results if row is not None]


async def check_telegram(ctx: DoctorContext) -> list[CheckResult]:
    """Telegram accepts the token (``getMe``)."""
    if ctx.loaded is None or not ctx.loaded.token:
        return []
    from orchestrator.edges.telegram_http import open_telegram_api
    from orchestrator.errors import TelegramError, TelegramUnauthorized

    telegram = ctx.loaded.config.telegram
    try:
        async with open_telegram_api(
            ctx.loaded.token.reveal(),
            base_url=telegram.api_base_url,
            request_timeout=min(telegram.request_timeout, 15.0),
        ) as api:
            me = await api.get_me()
    except TelegramUnauthorized:
        return [
            CheckResult(
                check="telegram",
                status="FAIL",
                detail="Telegram rejected the token (401)",
                fix="copy the token again from @BotFather (/token)",
            )
        ]
    except TelegramError as error:
        return [
            CheckResult(
                check="telegram",
                status="warn",
                detail=f"getMe failed: {error.description}",
                fix=f"check the network and telegram.api_base_url ({telegram.api_base_url})",
            )
        ]
    return [CheckResult(check="telegram", status="ok", detail=f"@{me.username}")]


CHECKS: list[Check] = [
    check_config,
    check_token,
    check_allowed_users,
    check_folders,
    check_telegram,
    check_codex_command,
    check_codex_auth,
    check_worker_pool,
]
"""The checks, in order; later issues append here."""


async def run_checks(checks: Sequence[Check], ctx: DoctorContext) -> list[CheckResult]:
    """Run `checks` in order and collect their rows."""
    rows: list[CheckResult] = []
    for check in checks:
        rows.extend(await check(ctx))
    return rows


def format_table(rows: list[CheckResult]) -> str:
    """The rows as an aligned text table: check · status · detail · fix."""
    cells = [("check", "status", "detail", "fix")] + [
        (row.check, row.status, row.detail, row.fix) for row in rows
    ]
    widths = [max(len(line[column]) for line in cells) for column in range(3)]
    lines = []
    for line in cells:
        padded = [line[column].ljust(widths[column]) for column in range(3)]
        lines.append("  ".join([*padded, line[3]]).rstrip())
    return "\n".join(lines)


def run_doctor(
    config_path: Path | None,
    *,
    environ: Mapping[str, str] | None = None,
    checks: Sequence[Check] | None = None,
) -> int:
    """Run the doctor, print the table, and return the exit code (1 if anything failed)."""
    import trio

    ctx = DoctorContext(config_path=config_path, environ=environ or dict(os.environ))
    rows = trio.run(run_checks, checks or CHECKS, ctx)
    text = format_table(rows)
    if ctx.loaded is not None and ctx.loaded.token:
        text = text.replace(ctx.loaded.token.reveal(), "[REDACTED]")
    print(text)
    failed = [row for row in rows if row.status == "FAIL"]
    problems = f"{len(failed)} problem{'' if len(failed) == 1 else 's'}"
    print(f"\n{problems} found." if failed else "\nAll checks passed.")
    sys.stdout.flush()
    return 1 if failed else 0
