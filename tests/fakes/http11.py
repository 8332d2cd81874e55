"""The HTTP/1.1 server loop the fakes share (h11 over a trio stream).

Reads one request at a time, hands it to the fake's handler, writes the reply and keeps the
connection alive for the next request, as real servers (and the clients under test) expect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import h11
import trio


@dataclass
class Reply:
    status: int
    payload: bytes | None
    """None: send the headers of a 200 event stream, then never finish (a hung server), or,
    with `pieces`, send those."""
    content_type: str = "application/json"
    pieces: tuple[tuple[float, bytes], ...] = ()
    """A body sent in pieces (chunked), each after its pause in seconds: a model that thinks."""
    on_sent: Callable[[], None] | None = None
    """Called once the whole reply has been sent."""


Handler = Callable[[h11.Request, bytes], Awaitable[Reply]]


async def serve_http(stream: trio.abc.Stream, handle: Handler) -> None:
    """Serve requests on `stream` until the client closes it; always close it at the end."""
    connection = h11.Connection(h11.SERVER)
    try:
        while True:
            received = await _read_request(connection, stream)
            if received is None:
                return
            reply = await handle(*received)
            if reply.pieces:
                headers = [("content-type", reply.content_type)]
                response = h11.Response(status_code=reply.status, headers=headers)
                await stream.send_all(connection.send(response))
                for pause, piece in reply.pieces:
                    await trio.sleep(pause)
                    await stream.send_all(connection.send(h11.Data(data=piece)))
            elif reply.payload is None:
                headers = [("content-type", reply.content_type)]
                await stream.send_all(
                    connection.send(h11.Response(status_code=200, headers=headers))
                )
                await trio.sleep_forever()
            else:
                headers = [
                    ("content-type", reply.content_type),
                    ("content-length", str(len(reply.payload))),
                ]
                await stream.send_all(
                    connection.send(h11.Response(status_code=reply.status, headers=headers))
                )
                await stream.send_all(connection.send(h11.Data(data=reply.payload)))
            await stream.send_all(connection.send(h11.EndOfMessage()))
            if reply.on_sent is not None:
                reply.on_sent()
            if connection.our_state is h11.MUST_CLOSE:
                return
            connection.start_next_cycle()
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
        return
    finally:
        await trio.aclose_forcefully(stream)


async def _read_request(
    connection: h11.Connection, stream: trio.abc.Stream
) -> tuple[h11.Request, bytes] | None:
    """The next whole request and its body; None once the client has gone."""
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            if not data:
                return None
            connection.receive_data(bytes(data))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            return request, bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            return None
