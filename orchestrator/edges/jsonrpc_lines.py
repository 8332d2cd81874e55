"""JSON-RPC over a subprocess's stdin/stdout, one JSON object per line: the transport under
both Codex edges (`orchestrator.edges.codex_app_server`, `orchestrator.edges.codex_mcp`).

`LineRpc` writes messages (with the ``"jsonrpc"`` member its owner names: ``codex mcp-server``
wants ``"2.0"``, ``codex app-server`` neither needs nor sends it), matches responses to the
requests waiting for them, and hands every other message (notifications and server requests,
which carry a ``method``) to a callback, synchronously and in wire order. A line may be up to
`MAX_LINE` long (``codex app-server`` sent 200 kB lines; a huge tool result still fits); a
longer one is dropped. A line that the decoder refuses is logged (throttled) and read again
leniently (`orchestrator.wire.jsonrpc.salvage`); a response that still cannot be read fails
its request at once and marks the process `garbled`.

Process death is noticed at end of output, or by `LineRpc.watch_exit` when the process exited
while a child that inherited its stdout keeps the pipe open; either way the requests in flight
fail with `WorkerUnavailable` and `LineRpc.exited` is set.
"""

from __future__ import annotations

import itertools
import logging
import os
from contextlib import suppress
from typing import TYPE_CHECKING, Final, final

import msgspec
import trio

from orchestrator import uncontended
from orchestrator.errors import WorkerUnavailable
from orchestrator.logging import ThrottledWarning
from orchestrator.wire.jsonrpc import (
    UNREADABLE_ANSWER,
    Incoming,
    Response,
    RpcError,
    incoming_from,
    salvage,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["EXIT_DRAIN", "MAX_LINE", "READ_CHUNK", "WRITE_TIMEOUT", "LineRpc", "Refused"]

logger: Final = logging.getLogger(__name__)

EXIT_DRAIN: Final = 0.5
"""Seconds the reader may keep draining stdout after the process exited; a command that
inherited the pipe would otherwise hold it open and hide the death."""

READ_CHUNK: Final = 65536

MAX_LINE: Final = 64 * 1024 * 1024
"""Longest line kept: a server that never ends its line must not take all memory."""

WRITE_TIMEOUT: Final = 10.0
"""Seconds one line may take to enter the process's stdin before it counts as wedged (a
healthy app-server reads continuously; a pipe holds 64 KiB)."""

_ENCODER: Final = msgspec.json.Encoder()
_INCOMING: Final = msgspec.json.Decoder(Incoming)


class Refused(Exception):
    """The server answered a request with an error; the message is the server's text."""


@final
class LineRpc:
    """The JSON-RPC line transport of one process; `read_loop` and `watch_exit` must run.

    `on_message` gets each notification and server request; it must not block.
    `on_end` runs once the reader stopped, after pending requests were failed.
    `version` is the ``"jsonrpc"`` member every message sent carries (None: none).
    """

    def __init__(
        self,
        process: trio.Process,
        *,
        label: str,
        on_message: Callable[[Incoming], None],
        on_end: Callable[[], None] = lambda: None,
        version: str | None = None,
    ) -> None:
        assert process.stdin is not None
        self._process = process
        self._stdin = process.stdin
        self._label = label
        self._on_message = on_message
        self._on_end = on_end
        self._envelope: dict[str, object] = {} if version is None else {"jsonrpc": version}
        self._ids = itertools.count(1)
        self._pending: dict[int | str, trio.MemorySendChannel[Response]] = {}
        self._write_lock = trio.Lock()
        self._reader_scope = trio.CancelScope()
        self._reading = True
        self.garbled = False
        """A response could not be read at all: the process speaks something we do not
        understand, so it takes no more requests (the pool replaces it)."""
        self._unreadable = ThrottledWarning(logger)
        self._broken = False
        self.exited = trio.Event()
        """Set once the process exited or closed its output (not when merely cancelled)."""
        self.process_ended = False
        """The process itself exited (`watch_exit` saw it), though its output may still be
        draining: a command it started can hold the pipe open."""

    def usable(self) -> bool:
        """Whether a request sent now can still get an answer."""
        return self._reading and not self.garbled and not self.exited.is_set()

    async def write(self, message: Mapping[str, object], *, seconds: float = WRITE_TIMEOUT) -> None:
        """Send one message; `WorkerUnavailable` when the process closed its input.

        A line is written whole or not at all: the write is shielded from cancellation (a
        half-written line would garble the next one), and bounded by `seconds`, past which
        the process counts as wedged and the transport as unusable.
        """
        data = _ENCODER.encode({**self._envelope, **message} if self._envelope else message)
        data += b"\n"
        await uncontended.acquire(self._write_lock)
        try:
            if self._broken:
                raise WorkerUnavailable(f"{self._label} stopped reading its input")
            with trio.CancelScope(shield=True), trio.move_on_after(seconds) as bound:
                try:
                    rest = self._write_now(data)
                    if rest:
                        await self._stdin.send_all(rest)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
                    raise WorkerUnavailable(f"{self._label} closed its input") from error
            if bound.cancelled_caught:
                self._broken = True
                self._reading = False
                raise WorkerUnavailable(f"{self._label} stopped reading its input")
        finally:
            self._write_lock.release()

    def _write_now(self, data: bytes) -> bytes:
        """Write what the pipe takes at once; return the rest. ``send_all`` passes through
        the run loop before it writes (every other runnable task steps first); a line that
        fits in the pipe, as nearly every request does, is written here without that pass.
        An error leaves the whole line to ``send_all``, which raises it as trio does."""
        if not isinstance(self._stdin, trio.lowlevel.FdStream):
            return data
        try:
            written = os.write(self._stdin.fileno(), data)
        except OSError:  # full (BlockingIOError), closed or broken: send_all says which
            return data
        return data[written:]

    async def close_input(self) -> None:
        """Close the process's stdin (its graceful stop)."""
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._stdin.aclose()

    def next_id(self) -> int:
        """A request id not used before (for a caller that needs it before the request)."""
        return next(self._ids)

    async def request(
        self, method: str, params: object, *, request_id: int | str | None = None
    ) -> Response:
        """Send a request and wait for its response; `WorkerUnavailable` if the process went.

        `request_id`: the id to send (from `next_id`, or its text), when the caller must know
        it before the answer comes; a new one by default."""
        if not self.usable():
            raise WorkerUnavailable(f"{self._label} has exited")
        if request_id is None:
            request_id = next(self._ids)
        send, receive = trio.open_memory_channel[Response](1)
        self._pending[request_id] = send
        try:
            with receive:
                await self.write({"id": request_id, "method": method, "params": params})
                try:
                    return await receive.receive()
                except trio.EndOfChannel:
                    raise WorkerUnavailable(f"{self._label} exited mid-request") from None
        finally:
            self._pending.pop(request_id, None)

    async def result(self, method: str, params: object) -> bytes:
        """The raw result of a request; `Refused` with the server's text on an error."""
        response = await self.request(method, params)
        if response.error is not None or response.result is None:
            raise Refused(response.error.message if response.error else "no result")
        return bytes(response.result)

    async def read_loop(self) -> None:
        """Route every line; on end of output fail what is pending, then call `on_end`."""
        try:
            with self._reader_scope:
                await self._read_lines()
            self.exited.set()  # end of output, or `watch_exit` stopped the reader
        finally:
            self._reading = False
            for send in self._pending.values():
                send.close()
            self._pending.clear()
            self._on_end()

    async def _read_lines(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        buffer = bytearray()
        scanned = 0
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while True:
                chunk = await stdout.receive_some(READ_CHUNK)
                if not chunk:
                    return
                buffer += chunk
                while (end := buffer.find(b"\n", scanned)) >= 0:
                    line = bytes(buffer[:end])
                    del buffer[: end + 1]
                    scanned = 0
                    if line.strip():
                        self._dispatch(line)
                scanned = len(buffer)  # a long line: never rescan what has no newline
                if scanned > MAX_LINE:
                    logger.error("%s sent a line over %d bytes; dropped", self._label, MAX_LINE)
                    buffer.clear()
                    scanned = 0

    def _dispatch(self, line: bytes) -> None:
        try:
            message = _INCOMING.decode(line)
        except msgspec.DecodeError as error:
            self._unreadable.warning("%s: unreadable line (%s): %.200r", self._label, error, line)
            salvaged = salvage(line)
            if not salvaged.readable:
                self._fail_unreadable(salvaged.id)
                return
            message = incoming_from(salvaged)
        if message.method is not None:  # server request ids overlap ours: method first
            self._on_message(message)
            return
        pending = self._pending.pop(message.id, None) if message.id is not None else None
        if pending is not None:
            result = message.result if len(message.result) else None
            pending.send_nowait(Response(result, message.error))

    def _fail_unreadable(self, request_id: int | str | None) -> None:
        """A response nobody can read still ends its request at once (it would hang)."""
        pending = self._pending.pop(request_id, None) if request_id is not None else None
        if pending is not None:
            self.garbled = True
            pending.send_nowait(Response(None, RpcError(code=-32700, message=UNREADABLE_ANSWER)))

    async def watch_exit(self) -> None:
        """When the process exits, let the reader drain for `EXIT_DRAIN`, then stop it."""
        await self._process.wait()
        self.process_ended = True
        with trio.move_on_after(EXIT_DRAIN):
            await self.exited.wait()
        if not self.exited.is_set():
            logger.warning("%s exited but its output stays open (held by a child)", self._label)
            self._reader_scope.cancel()
