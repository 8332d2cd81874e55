"""The JSON-RPC line transport under both Codex edges, against a tiny echo server.

A real subprocess and the real clock, under a `CEILING`: the server answers every request
with what it received, so a test reads exactly the line the transport wrote.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from orchestrator.edges import jsonrpc_lines
from orchestrator.edges.jsonrpc_lines import LineRpc

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import pytest

    from orchestrator.wire.jsonrpc import Incoming

CEILING = 10  # seconds: a hang fails fast instead of blocking CI

ECHO = """
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if "id" not in message:
        continue
    if message.get("method") == "long first":
        sys.stdout.write("x" * 5000 + "\\n")
    sys.stdout.write(json.dumps({"id": message["id"], "result": {"got": message}}) + "\\n")
    sys.stdout.flush()
"""


@asynccontextmanager
async def echo_rpc(version: str | None = None) -> AsyncIterator[LineRpc]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", ECHO], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    seen: list[Incoming] = []
    rpc = LineRpc(process, label="echo", on_message=seen.append, version=version)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rpc.read_loop)
            nursery.start_soon(rpc.watch_exit)
            yield rpc
            await rpc.close_input()
            await rpc.exited.wait()
    finally:
        with trio.CancelScope(shield=True):
            process.kill()
            await process.wait()


def received(raw: bytes) -> dict[str, Any]:
    """What the echo server read, from its answer."""
    got = json.loads(raw)["got"]
    assert isinstance(got, dict)
    return got


async def test_every_message_carries_the_version_its_owner_names() -> None:
    """MCP wants ``"jsonrpc": "2.0"`` on every message; app-server sends none."""
    with trio.fail_after(CEILING):
        async with echo_rpc(version="2.0") as rpc:
            got = received(await rpc.result("ping", {}))
        assert got == {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {}}
        async with echo_rpc() as rpc:
            got = received(await rpc.result("ping", {}))
        assert got == {"id": 1, "method": "ping", "params": {}}


async def test_a_caller_may_choose_its_request_id_before_the_answer() -> None:
    """The MCP edge names a tools/call by its id before the answer: its events carry it."""
    with trio.fail_after(CEILING):
        async with echo_rpc(version="2.0") as rpc:
            chosen = str(rpc.next_id())
            response = await rpc.request("tools/call", {"a": 1}, request_id=chosen)
            assert response.result is not None
            got = received(bytes(response.result))
            assert got["id"] == chosen == "1"
            assert received(await rpc.result("ping", {}))["id"] == 2  # never reused


async def test_an_endless_line_is_dropped_and_the_next_answer_still_arrives(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(jsonrpc_lines, "MAX_LINE", 1000)
    monkeypatch.setattr(jsonrpc_lines, "READ_CHUNK", 512)  # the line comes in pieces
    caplog.set_level(logging.WARNING)
    with trio.fail_after(CEILING):
        async with echo_rpc() as rpc:
            got = received(await rpc.result("long first", {}))
            assert got["method"] == "long first"
            assert rpc.usable()
    assert any("over 1000 bytes; dropped" in r.getMessage() for r in caplog.records)
