"""reference_bot: the least a Telegram → Codex bot can do, as a yardstick for overhead.py.

A plain blocking program, standard library only: one keep-alive HTTP connection that
long-polls getUpdates, one warm Codex MCP server (``initialize`` + ``tools/list`` once at
start), then per text message one ``tools/call codex`` (reading the server's stdout lines until
the response with that id, skipping ``codex/event`` notifications) and one sendMessage with
the answer. No allow-list, no sessions, no durability, no rate limits, no rendering: whatever
the orchestrator spends beyond this program is what it adds.

    python bench/reference_bot.py --api-base-url URL [--token T] [--cwd DIR] -- CODEX ARGV...

The Codex server inherits this program's environment (``FAKE_CODEX_SCRIPT`` for the fake).
SIGTERM stops it: the Codex server's stdin is closed and it is waited for.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import urllib.parse
from typing import IO, Any

POLL_TIMEOUT = 30


class Telegram:
    """The Bot API over one keep-alive HTTP/1.1 connection (reopened if the server drops it)."""

    def __init__(self, base_url: str, token: str) -> None:
        url = urllib.parse.urlsplit(base_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.prefix = f"{url.path.rstrip('/')}/bot{token}/"
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=None)

    def call(self, method: str, params: dict[str, Any]) -> Any:
        body = json.dumps(params).encode()
        headers = {"content-type": "application/json", "content-length": str(len(body))}
        for attempt in (1, 2):
            try:
                self.connection.request("POST", self.prefix + method, body, headers)
                response = self.connection.getresponse()
                payload = json.loads(response.read())
                break
            except (http.client.HTTPException, ConnectionError):
                self.connection.close()
                if attempt == 2:
                    raise
        if not payload.get("ok"):
            raise RuntimeError(f"{method}: {payload}")
        return payload["result"]


class Codex:
    """One warm ``codex mcp-server`` over stdio, one call at a time."""

    def __init__(self, argv: list[str], cwd: str) -> None:
        self.cwd = cwd
        self.process = subprocess.Popen(
            argv, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.stdin: IO[bytes] = self.process.stdin
        self.stdout: IO[bytes] = self.process.stdout
        self.ids = 0
        self.request(
            "initialize",
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {"elicitation": {}},
                "clientInfo": {"name": "reference-bot", "version": "1"},
            },
        )
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        tools = self.request("tools/list", {})
        if not any(tool.get("name") == "codex" for tool in tools.get("tools", [])):
            raise RuntimeError("the MCP server has no `codex` tool")

    def send(self, message: dict[str, Any]) -> None:
        self.stdin.write(json.dumps(message).encode() + b"\n")
        self.stdin.flush()

    def request(self, method: str, params: dict[str, Any]) -> Any:
        self.ids += 1
        wanted = self.ids
        self.send({"jsonrpc": "2.0", "id": wanted, "method": method, "params": params})
        for line in self.stdout:
            message = json.loads(line)
            if message.get("id") == wanted and "method" not in message:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            # codex/event notifications (and anything else) are skipped
        raise RuntimeError("the MCP server closed its stdout")

    def run(self, prompt: str) -> str:
        result = self.request(
            "tools/call",
            {
                "name": "codex",
                "arguments": {
                    "prompt": prompt,
                    "cwd": self.cwd,
                    "sandbox": "workspace-write",
                    "approval-policy": "never",
                },
            },
        )
        structured = result.get("structuredContent") or {}
        if "content" in structured:
            return str(structured["content"])
        return "".join(part.get("text", "") for part in result.get("content", []))

    def close(self) -> None:
        self.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


def arguments(description: str) -> argparse.Namespace:
    """The command line of a yardstick bot (this one, and bench/trio_floor_bot.py): both are
    started alike by bench/harness.py."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--api-base-url", required=True)
    parser.add_argument("--token", default=os.environ.get("TELEGRAM_BOT_TOKEN", ""))
    parser.add_argument("--cwd", default=os.getcwd(), help="Codex's working directory")
    parser.add_argument("codex", nargs="+", help="the Codex MCP server's argv (after --)")
    return parser.parse_args()


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    signal.signal(signal.SIGTERM, stop)
    codex = Codex(args.codex, args.cwd)
    telegram = Telegram(args.api_base_url, args.token)
    offset = 0
    try:
        while True:
            updates = telegram.call("getUpdates", {"offset": offset, "timeout": POLL_TIMEOUT})
            for update in updates:
                offset = update["update_id"] + 1
                message = update.get("message") or {}
                text = message.get("text")
                if not text:
                    continue
                answer = codex.run(text)
                telegram.call(
                    "sendMessage", {"chat_id": message["chat"]["id"], "text": answer[:4096]}
                )
    finally:
        codex.close()


if __name__ == "__main__":
    main()
