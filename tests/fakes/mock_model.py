"""A mock OpenAI Responses API for the real Codex 0.153.4.

A real HTTP server on 127.0.0.1 (port 0) answering ``POST /v1/responses`` with the SSE event
sequence Codex 0.153.4 reads: ``response.created``, then per output item
``response.output_item.added``, its ``response.output_text.delta`` events and
``response.output_item.done``, then ``response.completed`` (or ``response.failed``). Each
request is answered by the next scripted turn, or by a `Responder` that looks at the request
(the role's prompt, tool outputs so far), or by echoing the last user text. Every request
body is recorded.

Turn items: `Text` (an assistant message, streamed as deltas), `Shell` (an ``exec_command``
function call, optionally asking for escalation), `Patch` (an ``apply_patch`` custom tool call;
needs a known model name such as ``gpt-5.2``), `Fail` (``response.failed``), `HttpError`,
`Hang` (headers, then nothing).
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from tests.fakes.http11 import Reply, serve_http

if TYPE_CHECKING:
    from pathlib import Path

    import h11

KNOWN_MODEL = "gpt-5.2"


@dataclass
class Text:
    text: str


@dataclass
class Shell:
    command: str
    escalated: bool = False
    justification: str = "needed for the task"
    yield_ms: int | None = None
    """``yield_time_ms``: how long Codex waits before it hands a running command back."""


@dataclass
class Patch:
    patch: str


@dataclass
class Fail:
    message: str = "mock failure"
    code: str = "server_error"
    """The error's ``code``: Codex reads some (``context_length_exceeded``,
    ``insufficient_quota``) as causes of their own."""


@dataclass
class HttpError:
    status: int


@dataclass
class Hang:
    pass


@dataclass
class Reasoning:
    """A reasoning item whose summary `parts` stream as deltas (two per part)."""

    parts: tuple[str, ...]
    every: float = 0.0
    """Seconds the model thinks before each delta: the stream is sent in paced pieces."""
    silent: float = 0.0
    """Seconds it thinks after the item starts, before any summary (summaries may be off)."""


@dataclass
class Wait:
    """The model says nothing for `seconds` before what follows (no reasoning item: a
    silence that counts against the bot's endpoint watchdog)."""

    seconds: float


Item = Text | Shell | Patch | Fail | HttpError | Hang | Reasoning | Wait
Turn = list[Item]
Responder = Callable[[dict[str, Any]], Turn]


def last_user_text(body: dict[str, Any]) -> str:
    """The newest user message in a Responses API request."""
    for item in reversed(body.get("input", [])):
        if item.get("type") == "message" and item.get("role") == "user":
            parts = [part.get("text", "") for part in item.get("content", [])]
            text = "".join(parts)
            if not text.lstrip().startswith("<environment_context>"):
                return text
    return ""


def last_item_type(body: dict[str, Any]) -> str:
    items = body.get("input", [])
    return items[-1].get("type", "") if items else ""


@dataclass
class MockModel:
    base_url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    peers: list[int] = field(default_factory=list)
    """The client's TCP port of each of `requests`: which process asked (`tests.procfs`)."""
    turns: deque[Turn] = field(default_factory=deque)
    responder: Responder | None = None
    answered: int = 0
    """Responses sent whole (the last piece of a paced one included)."""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _changed: trio.Event = field(default_factory=trio.Event)

    def _note(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _answered(self) -> None:
        self.answered += 1
        self._note()

    async def wait_for(self, predicate: Callable[[MockModel], bool]) -> None:
        """Until `predicate(self)` holds: woken by each request and each whole answer."""
        while not predicate(self):
            await self._changed.wait()

    def script(self, *turns: Turn) -> None:
        self.turns.extend(turns)

    def next_turn(self, body: dict[str, Any]) -> Turn:
        if self.turns:
            return self.turns.popleft()
        if self.responder is not None:
            return self.responder(body)
        return [Text(f"MOCK-REPLY: {last_user_text(body)}")]

    def sse(self, turn: Turn) -> tuple[int, bytes | list[tuple[float, bytes]] | None]:
        """The HTTP status and SSE body for one turn (None body: hang; a list: the body in
        pieces, each sent after its pause)."""
        number = next(self._ids)
        events: list[tuple[str, dict[str, Any]]] = [
            ("response.created", {"type": "response.created", "response": {"id": f"resp_{number}"}})
        ]
        for index, item in enumerate(turn):
            if isinstance(item, HttpError):
                return item.status, json.dumps(
                    {"error": {"message": f"mock {item.status}"}}
                ).encode()
            if isinstance(item, Hang):
                return 200, None
            if isinstance(item, Wait):
                events.append((_PAUSE, {"seconds": item.seconds}))
                continue
            if isinstance(item, Fail):
                events.append(
                    (
                        "response.failed",
                        {
                            "type": "response.failed",
                            "response": {
                                "id": f"resp_{number}",
                                "error": {"code": item.code, "message": item.message},
                            },
                        },
                    )
                )
                return 200, _frame(events)
            done_item: dict[str, Any]
            if isinstance(item, Reasoning):
                done_item = _reasoning(item, f"rs_{number}_{index}", index, events)
            elif isinstance(item, Text):
                message_id = f"msg_{number}_{index}"
                events.append(
                    (
                        "response.output_item.added",
                        {
                            "type": "response.output_item.added",
                            "output_index": index,
                            "item": {
                                "type": "message",
                                "id": message_id,
                                "role": "assistant",
                                "status": "in_progress",
                                "content": [],
                            },
                        },
                    )
                )
                for start in range(0, len(item.text), 40):
                    events.append(
                        (
                            "response.output_text.delta",
                            {
                                "type": "response.output_text.delta",
                                "item_id": message_id,
                                "output_index": index,
                                "content_index": 0,
                                "delta": item.text[start : start + 40],
                            },
                        )
                    )
                done_item = {
                    "type": "message",
                    "id": message_id,
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": item.text, "annotations": []}],
                }
            elif isinstance(item, Shell):
                arguments: dict[str, Any] = {"cmd": item.command}
                if item.yield_ms is not None:
                    arguments["yield_time_ms"] = item.yield_ms
                if item.escalated:
                    arguments["sandbox_permissions"] = "require_escalated"
                    arguments["justification"] = item.justification
                done_item = {
                    "type": "function_call",
                    "id": f"fc_{number}_{index}",
                    "call_id": f"call_{number}_{index}",
                    "name": "exec_command",
                    "arguments": json.dumps(arguments),
                    "status": "completed",
                }
            else:
                done_item = {
                    "type": "custom_tool_call",
                    "id": f"ctc_{number}_{index}",
                    "call_id": f"call_{number}_{index}",
                    "name": "apply_patch",
                    "input": item.patch,
                    "status": "completed",
                }
            events.append(
                (
                    "response.output_item.done",
                    {"type": "response.output_item.done", "output_index": index, "item": done_item},
                )
            )
        events.append(
            (
                "response.completed",
                {
                    "type": "response.completed",
                    "response": {
                        "id": f"resp_{number}",
                        "usage": {
                            "input_tokens": 11,
                            "input_tokens_details": {"cached_tokens": 0},
                            "output_tokens": 7,
                            "output_tokens_details": {"reasoning_tokens": 0},
                            "total_tokens": 18,
                        },
                    },
                },
            )
        )
        if any(name == _PAUSE for name, _ in events):
            return 200, _paced(events)
        return 200, _frame(events)


_PAUSE = ""
"""The name of a pseudo-event in `MockModel.sse`'s list: ``{"seconds": s}``, a pause."""


def _reasoning(
    item: Reasoning, item_id: str, index: int, events: list[tuple[str, dict[str, Any]]]
) -> dict[str, Any]:
    """Append `item`'s stream to `events`; return its done item."""
    added = {"type": "reasoning", "id": item_id, "summary": []}
    events.append(
        (
            "response.output_item.added",
            {"type": "response.output_item.added", "output_index": index, "item": added},
        )
    )
    where = {"item_id": item_id, "output_index": index}
    if item.silent:
        events.append((_PAUSE, {"seconds": item.silent}))
    for summary_index, part in enumerate(item.parts):
        events.append(
            (
                "response.reasoning_summary_part.added",
                {
                    "type": "response.reasoning_summary_part.added",
                    **where,
                    "summary_index": summary_index,
                    "part": {"type": "summary_text", "text": ""},
                },
            )
        )
        half = len(part) // 2
        for delta in (part[:half], part[half:]):
            if item.every:
                events.append((_PAUSE, {"seconds": item.every}))
            events.append(
                (
                    "response.reasoning_summary_text.delta",
                    {
                        "type": "response.reasoning_summary_text.delta",
                        **where,
                        "summary_index": summary_index,
                        "delta": delta,
                    },
                )
            )
    summary = [{"type": "summary_text", "text": part} for part in item.parts]
    return {"type": "reasoning", "id": item_id, "summary": summary, "encrypted_content": None}


def _frame(events: list[tuple[str, dict[str, Any]]]) -> bytes:
    return b"".join(
        f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
        for name, data in events
        if name != _PAUSE
    )


def _paced(events: list[tuple[str, dict[str, Any]]]) -> list[tuple[float, bytes]]:
    """`events` framed in pieces: each pause starts a new piece, sent after it."""
    pieces: list[tuple[float, bytes]] = []
    pause: float = 0.0
    run: list[tuple[str, dict[str, Any]]] = []
    for name, data in events:
        if name == _PAUSE:
            pieces.append((pause, _frame(run)))
            pause, run = data["seconds"], []
        else:
            run.append((name, data))
    pieces.append((pause, _frame(run)))
    return pieces


async def _serve(stream: trio.SocketStream, model: MockModel) -> None:
    peer = stream.socket.getpeername()[1]

    async def handle(request: h11.Request, body: bytes) -> Reply:
        parsed = json.loads(body) if body else {}
        model.peers.append(peer)
        model.requests.append(parsed)
        model._note()
        if not request.target.decode().rstrip("/").endswith("/responses"):
            return Reply(404, b'{"error":{"message":"not found"}}')
        status, payload = model.sse(model.next_turn(parsed))
        if isinstance(payload, list):
            pieces = tuple(payload)
            return Reply(status, None, "text/event-stream", pieces, model._answered)
        kind = "text/event-stream" if status == 200 else "application/json"
        return Reply(status, payload, kind, on_sent=model._answered)

    await serve_http(stream, handle)


@asynccontextmanager
async def open_mock_model() -> AsyncIterator[MockModel]:
    """Serve a mock Responses API on 127.0.0.1 for the duration of the block."""
    model = MockModel()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    model.base_url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/v1"
    async with trio.open_nursery() as nursery:

        async def serve(stream: trio.SocketStream) -> None:
            await _serve(stream, model)

        nursery.start_soon(trio.serve_listeners, serve, listeners)
        try:
            yield model
        finally:
            nursery.cancel_scope.cancel()


def codex_home_config(
    base_url: str,
    *,
    model: str = KNOWN_MODEL,
    approval_policy: str = "never",
    sandbox_mode: str = "read-only",
) -> str:
    """config.toml for CODEX_HOME pointing Codex at the mock (no login needed)."""
    return f"""model = "{model}"
model_provider = "mock"
approval_policy = "{approval_policy}"
sandbox_mode = "{sandbox_mode}"

[model_providers.mock]
name = "Mock"
base_url = "{base_url}"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
"""


def write_codex_home(path: Path, base_url: str, **overrides: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.toml").write_text(codex_home_config(base_url, **overrides))
    return path


def codex_env(home: Path) -> dict[str, str]:
    """CODEX_HOME and HOME for a real Codex under test, both the folder `write_codex_home` made.

    Codex runs commands in the user's login shell (``bash -lc``). With the machine's HOME that
    shell reads the user's profile; one that runs ``pyenv rehash`` leaves its lock file behind
    when a test kills the shell mid-rehash (a cancel does exactly that), and every later login
    shell on the machine then waits 60 s for the lock. A HOME of its own reads no profile.
    """
    return {"CODEX_HOME": str(home), "HOME": str(home)}
