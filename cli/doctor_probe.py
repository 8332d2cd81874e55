"""The doctor's worker probe: start one Codex MCP server, handshake, list tools, stop it.

Kept apart from `cli.doctor` so the MCP SDK is imported only when the probe runs.
"""

from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING

import trio
from mcp import ClientSession, StdioServerParameters, stdio_client

from cli.doctor import PIN_FIX
from cli.doctor_result import CheckResult
from orchestrator.wire.codex_mcp import CODEX_MCP_VERSION, REQUIRED_TOOLS

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["REQUIRED_TOOLS", "probe_worker"]


async def probe_worker(
    index: int, argv: tuple[str, ...], *, env: Mapping[str, str], startup_seconds: float
) -> CheckResult:
    """Start worker `index`, run initialize + tools/list, and report what it found."""
    name = f"worker {index}"
    params = StdioServerParameters(command=argv[0], args=list(argv[1:]), env=dict(env))
    began = trio.current_time()
    with tempfile.TemporaryFile(mode="w+") as errlog:
        try:
            with trio.fail_after(startup_seconds):
                async with (
                    stdio_client(params, errlog=errlog) as (read, write),
                    ClientSession(read, write) as session,
                ):
                    init = await session.initialize()
                    handshake_ms = (trio.current_time() - began) * 1000
                    tools = {tool.name for tool in (await session.list_tools()).tools}
        except trio.TooSlowError:
            return CheckResult(
                check=name,
                status="FAIL",
                detail=f"no MCP handshake within {startup_seconds:g} s",
                fix="check codex.command by hand; raise codex.startup_timeout if npx is slow",
            )
        except Exception as error:  # the probe reports every failure as a row
            errlog.seek(0)
            said = errlog.read()
            last_line = (said.strip().splitlines() or [""])[-1][:160]
            no_subcommand = "unrecognized subcommand" in said and "mcp-server" in said
            # Codex 0.154.0 and later take `mcp-server` as a prompt for the interactive UI.
            as_prompt = "stdin is not a terminal" in said
            return CheckResult(
                check=name,
                status="FAIL",
                detail=f"did not start: {error.__class__.__name__} {last_line}".strip(),
                fix=PIN_FIX
                if no_subcommand
                else f'set backend = "app-server" in [codex] (this Codex has no mcp-server); '
                f"or {PIN_FIX}"
                if as_prompt
                else "run codex.command by hand to see why; it must be `codex mcp-server`",
            )
    missing = REQUIRED_TOOLS - tools
    server = f"{init.server_info.name} {init.server_info.version}"
    if missing:
        return CheckResult(
            check=name,
            status="FAIL",
            detail=f"{server} lacks the tools {', '.join(sorted(missing))}",
            fix=f"use Codex {CODEX_MCP_VERSION} `mcp-server` (the last release that has it)",
        )
    return CheckResult(
        check=name,
        status="ok",
        detail=f"{server}: handshake {handshake_ms:.0f} ms, tools {', '.join(sorted(tools))}",
    )
