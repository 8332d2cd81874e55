"""JSON-RPC messages as both Codex edges read them, and the second reading of a line that the
fast decoder refused.

`Incoming` is any line from a server (a request, a response or a notification), decoded
with its members left raw; `Response` is what the transport hands a caller for its request.
Both Codex protocols share this envelope (``codex mcp-server`` adds ``"jsonrpc": "2.0"``,
``codex app-server`` leaves it out), so one transport reads both
(`orchestrator.edges.jsonrpc_lines`).

Both Codex edges decode every line with a strict msgspec decoder built once (fast, typed). A
line it refuses — valid JSON of a shape it does not accept (an id that is a float, an error
whose code is a string), or no JSON at all — used to be logged and dropped, and a response
dropped that way left its call waiting until ``codex.request_timeout``. `salvage` reads such
a line with the standard library's lenient parser and keeps what can be used; when even that
fails it still looks for the request id in the raw text, so the edge can fail that call at
once instead of letting it hang.
"""

from __future__ import annotations

import json
import re
from typing import Final

import msgspec

__all__ = [
    "UNREADABLE_ANSWER",
    "Incoming",
    "Response",
    "RpcError",
    "Salvaged",
    "incoming_from",
    "salvage",
]

UNREADABLE_ANSWER: Final = "Codex sent an answer the bot cannot read; the worker is replaced"
"""The error a call gets when its response could not be read at all."""

_ID_IN_TEXT: Final = re.compile(rb'"id"\s*:\s*(-?\d{1,18}|"[^"\\]{1,200}")')
_EMPTY: Final = msgspec.Raw(b"")


class RpcError(msgspec.Struct, frozen=True, kw_only=True):
    """A JSON-RPC error; Codex's `code` is -32600 for everything observed, so read `message`."""

    code: int = 0
    message: str = ""


class Incoming(msgspec.Struct, frozen=True, kw_only=True):
    """Any line from the server: request (id + method), response (id) or notification."""

    id: int | str | None = None
    method: str | None = None
    params: msgspec.Raw = _EMPTY
    result: msgspec.Raw = _EMPTY
    error: RpcError | None = None


class Response(msgspec.Struct, frozen=True):
    """The answer to one of our requests, as the reader hands it to the caller: `result`
    (raw JSON) or `error`."""

    result: msgspec.Raw | None
    error: RpcError | None


class Salvaged(msgspec.Struct, frozen=True, kw_only=True):
    """What could be read of a refused line.

    `readable` is False when the line is not JSON (or not an object): then only `id` may be
    known, guessed from the text, and a pending call with that id must fail. `error` is
    ``(code, message)`` when the line carries an error member, whatever its shape.
    """

    readable: bool
    id: int | str | None = None
    method: str | None = None
    params: msgspec.Raw = _EMPTY
    result: msgspec.Raw = _EMPTY
    error: tuple[int, str] | None = None


def salvage(line: bytes) -> Salvaged:
    """Read `line` leniently (see the module docstring); never raises."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return Salvaged(readable=False, id=_id_in_text(line))
    if not isinstance(value, dict):
        return Salvaged(readable=False, id=_id_in_text(line))
    method = value.get("method")
    return Salvaged(
        readable=True,
        id=_plain_id(value.get("id")),
        method=method if isinstance(method, str) else None,
        params=_raw(value.get("params")),
        result=_raw(value.get("result")),
        error=_error(value["error"]) if value.get("error") is not None else None,
    )


def _plain_id(value: object) -> int | str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | str):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _raw(value: object) -> msgspec.Raw:
    if value is None:
        return _EMPTY
    try:
        return msgspec.Raw(json.dumps(value).encode())
    except (ValueError, RecursionError):
        return _EMPTY


def _error(value: object) -> tuple[int, str]:
    if isinstance(value, dict):
        code, message = value.get("code"), value.get("message")
        try:
            number = int(code) if code is not None and not isinstance(code, bool) else -32603
        except (TypeError, ValueError):
            number = -32603
        return number, message if isinstance(message, str) else json.dumps(value)[:300]
    return -32603, str(value)[:300]


def _id_in_text(line: bytes) -> int | str | None:
    found = _ID_IN_TEXT.search(line)
    if found is None:
        return None
    token = found.group(1)
    return token[1:-1].decode(errors="replace") if token.startswith(b'"') else int(token)


def incoming_from(salvaged: Salvaged) -> Incoming:
    """A line read by `salvage` (readable), as the fast decoder would have returned it."""
    error = RpcError(code=salvaged.error[0], message=salvaged.error[1]) if salvaged.error else None
    return Incoming(
        id=salvaged.id,
        method=salvaged.method,
        params=salvaged.params,
        result=salvaged.result,
        error=error,
    )
