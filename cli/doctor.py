"""``codex-orchestrator doctor``: checks everything the bot needs and says how to fix it.

Each check returns one or more `CheckResult` rows (check · status · detail · fix); the table
is printed. Exit codes agree with ``start``: 2 when the configuration is wrong (the config
file, or the token: unset, the `.env.example` placeholder, malformed), each named as
``start`` names it (``file: key: problem``); 1 when anything else failed (Telegram
unreachable or refusing the token, Codex missing, not logged in, or not starting); 0 when
every check passed. Checks run in order, and a check whose prerequisite failed is skipped
(no point starting Codex when the config is unreadable).

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
from typing import Final

from cli.doctor_codex_auth import codex_auth_rows, login_command
from cli.doctor_result import CheckResult
from cli.doctor_telegram import group_warning, telegram_failure
from orchestrator.config import (
    DEFAULT_APP_SERVER_COMMAND,
    DEFAULT_CODEX_COMMAND,
    LoadedConfig,
    load_config,
    token_error,
)
from orchestrator.errors import ConfigError, TelegramError
from orchestrator.redaction import redact
from orchestrator.wire.codex_app_server import CODEX_APP_SERVER_VERSION
from orchestrator.wire.codex_mcp import CODEX_MCP_VERSION
from orchestrator.worker_environment import codex_home, worker_environment

__all__ = [
    "CHECKS",
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "CheckResult",
    "DoctorContext",
    "format_table",
    "run_checks",
    "run_doctor",
]

EXIT_CONFIG: Final = 2
"""As ``start``: the configuration (conf.toml or the token) is wrong."""
EXIT_FAILED: Final = 1

LAST_MCP_SERVER_RELEASE: Final = tuple(int(part) for part in CODEX_MCP_VERSION.split("."))
PIN_FIX: Final = (
    f'pin it: command = ["npx", "-y", "@openai/codex@{CODEX_MCP_VERSION}", "mcp-server"] '
    f"({CODEX_MCP_VERSION} is the last Codex release with mcp-server)"
)
VERSION_TIMEOUT: Final = 120.0
"""Seconds for ``codex --version``; through npx the first run downloads the package."""
TELEGRAM_TIMEOUT: Final = 15.0
"""Seconds doctor waits for ``getMe`` (at most ``telegram.request_timeout``)."""
FIRST_APP_SERVER_RELEASE: Final = LAST_MCP_SERVER_RELEASE
"""The oldest Codex whose ``app-server`` was measured to behave as the edge needs."""
APP_SERVER_PACKAGE: Final = DEFAULT_APP_SERVER_COMMAND[2]
APP_SERVER_PIN_FIX: Final = (
    f'pin it: command = ["npx", "-y", "{APP_SERVER_PACKAGE}", "app-server"] (the release the '
    "app-server backend was measured on)"
)
CODEX_PACKAGE: Final = DEFAULT_CODEX_COMMAND[2]
"""The pinned npm package spec (``@openai/codex@<version>``) the fixes tell users to install."""


@dataclass
class DoctorContext:
    """What checks share: the config path, the environment and what earlier checks found."""

    config_path: Path | None
    environ: Mapping[str, str]
    loaded: LoadedConfig | None = None
    facts: dict[str, str] = field(default_factory=dict)
    config_error: bool = False
    """A configuration error was found: the doctor exits 2, as ``start`` would."""


def _config_row(check: str, error: ConfigError) -> CheckResult:
    """A configuration error as ``start`` prints it: ``file: key: problem`` and the fix."""
    where = f"{error.file}: {error.key}" if error.key else error.file
    return CheckResult(
        check=check, status="FAIL", detail=f"{where}: {error.problem}", fix=error.fix
    )


Check = Callable[[DoctorContext], Awaitable[list[CheckResult]]]


async def check_config(ctx: DoctorContext) -> list[CheckResult]:
    """The config file loads and validates (token checked separately)."""
    try:
        ctx.loaded = load_config(ctx.config_path, environ=ctx.environ, require_token=False)
    except ConfigError as error:
        ctx.config_error = True
        return [_config_row("config", error)]
    return [CheckResult(check="config", status="ok", detail=str(ctx.loaded.path))]


async def check_token(ctx: DoctorContext) -> list[CheckResult]:
    """TELEGRAM_BOT_TOKEN is set, is not the placeholder, looks like a token (never shown)."""
    if ctx.loaded is None:
        return [CheckResult(check="token", status="skip", detail="config not loaded")]
    token = ctx.loaded.token
    problem = token_error(token, ctx.loaded.token_source, ctx.loaded.path.parent)
    if problem is not None:
        ctx.config_error = True
        return [_config_row("token", problem)]
    detail = f"set in {ctx.loaded.token_source} ({len(token.reveal())} chars)"
    return [CheckResult(check="token", status="ok", detail=detail)] + [
        CheckResult(check=check, status="warn", detail=what, fix=fix)
        for check, what, fix in ctx.loaded.secret_warnings()
    ]


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
    """``codex ... mcp-server`` (or ``app-server``) → ``codex ... --version``."""
    subcommands = ("mcp-server", "app-server")
    base = list(argv[:-1]) if argv and argv[-1] in subcommands else list(argv)
    return [*base, "--version"]


def parse_version(text: str) -> tuple[int, int, int] | None:
    """The first ``X.Y.Z`` in `text`."""
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


async def check_codex_command(ctx: DoctorContext) -> list[CheckResult]:
    """The worker command exists, and its version has the configured backend's server
    (``mcp-server`` until 0.153.4; ``app-server``, pinned to the version measured)."""
    if ctx.loaded is None:
        return []
    import trio

    codex = ctx.loaded.config.codex
    argv = codex.argv()
    program = shutil.which(argv[0], path=worker_environment(codex, ctx.environ).get("PATH"))
    if program is None:
        package = CODEX_PACKAGE if codex.backend == "mcp" else APP_SERVER_PACKAGE
        install = f"npm install -g {package}"
        word = codex.subcommand
        fix = (
            "install Node.js with npm (npx comes with npm); or run "
            f'`{install}` and set codex.command = ["codex", "{word}"]'
            if argv[0] == "npx"
            else f"run `{install}` (it puts `codex` on npm's PATH), or set codex.command to "
            f'the full path of the codex binary, e.g. ["/usr/local/bin/codex", "{word}"]'
        )
        return [
            CheckResult(
                check="codex command",
                status="FAIL",
                detail=f"{argv[0]} not found" + ("" if "/" in argv[0] else " on PATH"),
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
    if codex.backend == "app-server":
        if version < FIRST_APP_SERVER_RELEASE:
            rows.append(
                CheckResult(
                    check="codex version",
                    status="FAIL",
                    detail=f"{shown} is older than the app-server this bot speaks",
                    fix=APP_SERVER_PIN_FIX,
                )
            )
        elif shown != CODEX_APP_SERVER_VERSION:
            rows.append(
                CheckResult(
                    check="codex version",
                    status="warn",
                    detail=f"{shown}; the app-server backend was measured on "
                    f"{CODEX_APP_SERVER_VERSION}",
                    fix=APP_SERVER_PIN_FIX,
                )
            )
        else:
            rows.append(CheckResult(check="codex version", status="ok", detail=shown))
        return rows
    if version > LAST_MCP_SERVER_RELEASE:
        rows.append(
            CheckResult(
                check="codex version",
                status="FAIL",
                detail=f"{shown} has no mcp-server (removed in 0.154.0)",
                fix=f'set backend = "app-server" in [codex] (this Codex speaks only app-server); '
                f"or {PIN_FIX}",
            )
        )
    else:
        rows.append(CheckResult(check="codex version", status="ok", detail=shown))
    return rows


async def check_codex_auth(ctx: DoctorContext) -> list[CheckResult]:
    """Codex can authenticate: a login in CODEX_HOME, an API key, or a custom provider.
    (``app-server``: the worker probe asks Codex itself, ``account/read``.)"""
    if ctx.loaded is None or ctx.loaded.config.codex.backend == "app-server":
        return []
    return codex_auth_rows(ctx.loaded, ctx.environ)


async def check_worker_pool(ctx: DoctorContext) -> list[CheckResult]:
    """``pool_size`` workers start, initialize and list ``codex`` and ``codex-reply``."""
    if ctx.loaded is None or ctx.facts.get("skip_pool"):
        return []
    import trio

    from cli.doctor_probe import probe_worker

    codex = ctx.loaded.config.codex
    env = worker_environment(codex, ctx.environ, state_dir=ctx.loaded.config.state_dir)
    if codex.backend == "app-server":
        return await _probe_app_servers(ctx.loaded, env)
    results: list[CheckResult | None] = [None] * codex.pool_size

    async def one(index: int) -> None:
        results[index] = await probe_worker(
            index, codex.argv(), env=env, startup_seconds=codex.startup_timeout
        )

    async with trio.open_nursery() as nursery:
        for index in range(codex.pool_size):
            nursery.start_soon(one, index)
    return [row for row in results if row is not None]


MCP_FENCE_FIX: Final = 'set codex.backend = "app-server" (Codex 0.171.0), which fences them'


async def check_agent_fence(ctx: DoctorContext) -> list[CheckResult]:
    """What a sandboxed agent can read on the ``mcp`` backend. The app-server's ``agent
    fence`` row comes from its probe (a thread tried in the bot's permission profile);
    Codex 0.153.4 takes the profile too, but then runs a command the user approved inside
    the sandbox, which breaks approvals (`orchestrator.agent_fence`), so this backend runs
    without it and the row says so once, where a profile is sandboxed at all (unsandboxed,
    the agent reads everything the bot's user can, as the runbook says)."""
    if ctx.loaded is None or ctx.loaded.config.codex.backend == "app-server":
        return []
    profiles = ctx.loaded.config.profiles
    sandboxed = sorted(
        name for name, profile in profiles.items() if profile.sandbox != "danger-full-access"
    )
    if not sandboxed:
        return []
    readable = ", ".join(what for what, _ in ctx.loaded.secret_files)
    return [
        CheckResult(
            check="agent fence",
            status="warn",
            detail=f"on the mcp backend a sandboxed agent can read {readable} and state_dir "
            f"(profiles: {', '.join(sandboxed)})",
            fix=MCP_FENCE_FIX,
        )
    ]


async def _probe_app_servers(loaded: LoadedConfig, env: Mapping[str, str]) -> list[CheckResult]:
    """``pool_size`` app-servers start and initialize; the first also reports the login
    (``account/read``), the models it offers (``model/list``) and whether a sandboxed
    thread starts in the agent fence, in the default profile's folder (when it is there)."""
    import trio

    from cli.doctor_app_server import probe_app_server
    from orchestrator.agent_fence import bot_fence

    codex = loaded.config.codex
    state_dir = loaded.config.state_dir
    home = env.get("HOME")
    if home and Path(home).is_relative_to(Path(state_dir)):  # the workers' own HOME
        await trio.to_thread.run_sync(lambda: Path(home).mkdir(parents=True, exist_ok=True))
    own_files = [path for _, path in loaded.secret_files]
    fence = await trio.to_thread.run_sync(
        lambda: bot_fence(own_files, Path(state_dir), codex_home(env))
    )
    default = loaded.config.profiles.get(loaded.config.default_profile)
    folder = default.working_directory if default else ""
    fence_cwd = folder if folder and await trio.Path(folder).is_dir() else ""
    results: list[list[CheckResult]] = [[] for _ in range(codex.pool_size)]

    async def one(index: int) -> None:
        results[index] = await probe_app_server(
            index,
            codex.argv(),
            env=env,
            startup_seconds=codex.startup_timeout,
            login=login_command(codex),
            details=index == 0,
            fence=fence,
            fence_cwd=fence_cwd,
        )

    async with trio.open_nursery() as nursery:
        for index in range(codex.pool_size):
            nursery.start_soon(one, index)
    workers = [row for rows in results for row in rows if row.check.startswith("worker")]
    others = [row for rows in results for row in rows if not row.check.startswith("worker")]
    return workers + others


RELAYED: Final = (
    "; the Codex workers reach it through the bot's relay, which keeps its password from them"
)
"""Said of a proxy with credentials (`orchestrator.edges.proxy_relay`)."""


async def check_telegram(ctx: DoctorContext) -> list[CheckResult]:
    """Telegram answers ``getMe`` with this token, as ``start`` needs before anything else."""
    if ctx.loaded is None:
        return []
    if ctx.config_error or not ctx.loaded.token:
        return [CheckResult(check="telegram", status="skip", detail="no usable token")]
    from orchestrator.edges.http1_proxy import (
        PROXY_FIX,
        Proxy,
        environment_proxy,
        proxy_problem,
        proxy_shown_url,
    )
    from orchestrator.edges.telegram_http import open_telegram_api

    telegram = ctx.loaded.config.telegram
    bad_proxy = proxy_problem(telegram.api_base_url)
    if bad_proxy is not None:
        return [CheckResult(check="telegram", status="FAIL", detail=bad_proxy, fix=PROXY_FIX)]
    proxy_url = environment_proxy(telegram.api_base_url)
    via = f", through the proxy {proxy_shown_url(proxy_url)}" if proxy_url else ""
    timeout = min(telegram.request_timeout, TELEGRAM_TIMEOUT)
    try:
        async with open_telegram_api(
            ctx.loaded.token.reveal(), base_url=telegram.api_base_url, request_timeout=timeout
        ) as api:
            me = await api.get_me()
    except TelegramError as error:
        detail, fix = telegram_failure(
            error, telegram.api_base_url, ctx.loaded.token_source, timeout
        )
        return [CheckResult(check="telegram", status="FAIL", detail=detail + via, fix=fix)]
    parsed = Proxy.parse(proxy_url) if proxy_url else None
    if parsed is not None and parsed.has_credentials:
        via += RELAYED
    found = [CheckResult(check="telegram", status="ok", detail=f"@{me.username}{via}")]
    warning = group_warning(me, telegram.group_requests)
    if warning is not None:
        detail, fix = warning
        found.append(CheckResult(check="groups", status="warn", detail=detail, fix=fix))
    return found


CHECKS: list[Check] = [
    check_config,
    check_token,
    check_allowed_users,
    check_folders,
    check_telegram,
    check_codex_command,
    check_codex_auth,
    check_worker_pool,
    check_agent_fence,
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
    """Run the doctor, print the table, and return the exit code: 2 for a configuration
    error (as ``start``), 1 if anything else failed, else 0."""
    import trio

    ctx = DoctorContext(config_path=config_path, environ=environ or dict(os.environ))
    rows = trio.run(run_checks, checks or CHECKS, ctx)
    text = format_table(rows)
    if ctx.loaded is not None and ctx.loaded.token:
        text = redact(text, [ctx.loaded.token.reveal()])
    print(text)
    failed = [row for row in rows if row.status == "FAIL"]
    problems = f"{len(failed)} problem{'' if len(failed) == 1 else 's'}"
    print(f"\n{problems} found." if failed else "\nAll checks passed.")
    sys.stdout.flush()
    if ctx.config_error:
        return EXIT_CONFIG
    return EXIT_FAILED if failed else 0
