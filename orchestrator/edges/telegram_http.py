"""The Bot API over HTTP: the real `TelegramApi`, on keep-alive connections.

Calls go through `orchestrator.edges.http1` (a lean HTTP/1.1 client: httpx cost about a
millisecond of the event loop per call), document uploads too (so that an upload timed out
by a stop of the bot reads its answer instead of sending the document again), directly or
through an HTTP(S) or SOCKS5 proxy; file downloads, and every call when a test hands in an
``httpx`` transport, through one `httpx.AsyncClient`.

This module owns the Bot API's transport rules: POST with a JSON body to
``{base_url}/bot{token}/{method}`` (multipart for ``sendDocument``), the ``ok``/``result``
envelope, and the mapping of failures onto `orchestrator.errors`:

==========================================  ===========================
answer                                      raised
==========================================  ===========================
429 (``parameters.retry_after``)            `TelegramRetryAfter`
401                                         `TelegramUnauthorized`
403                                         `TelegramForbidden`
409                                         `TelegramConflict`
400 with ``parameters.migrate_to_chat_id``  `TelegramChatMigrated`
other 4xx                                   `TelegramBadRequest`
5xx, HTML / malformed body, timeout,        `TelegramTransientError`
connection error
==========================================  ===========================

The token is part of every URL, and httpx puts URLs into its exceptions and log lines. So no
httpx exception ever leaves this module (each is replaced by a token-free one, ``from None``),
and the client is built without event hooks that could log URLs.
"""

from __future__ import annotations

import mimetypes
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final, TypeVar, final

import httpx
import msgspec
import trio

from orchestrator.edges.http1 import HttpError, LeanHttp, multipart
from orchestrator.edges.http1_proxy import Proxy, environment_proxy
from orchestrator.errors import (
    TelegramBadRequest,
    TelegramChatMigrated,
    TelegramConflict,
    TelegramFileTooBig,
    TelegramForbidden,
    TelegramRetryAfter,
    TelegramTransientError,
    TelegramUnauthorized,
)
from orchestrator.ports import BotIdentity, ParseMode
from orchestrator.wire.json_bodies import decode_json

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from orchestrator.messages import Keyboard

__all__ = ["POLL_READ_MARGIN", "HttpTelegramApi", "open_telegram_api"]

POLL_READ_MARGIN: Final = 15.0
"""Seconds added to the long-poll timeout for the HTTP read timeout: Telegram answers an
empty poll right at `timeout`, so the client must wait a little longer than that."""

CONNECT_TIMEOUT: Final = 10.0

CONNECTIONS: Final = 10
"""HTTP connections to the Bot API, all kept alive between calls."""


class _Parameters(msgspec.Struct, frozen=True):
    retry_after: float | None = None
    migrate_to_chat_id: int | None = None


class _Envelope(msgspec.Struct, frozen=True):
    ok: bool
    result: msgspec.Raw = msgspec.Raw(b"null")
    description: str = ""
    error_code: int = 0
    parameters: _Parameters | None = None


class _SentMessage(msgspec.Struct, frozen=True):
    message_id: int


class _File(msgspec.Struct, frozen=True):
    file_id: str = ""
    file_size: int = 0
    file_path: str = ""


_ENVELOPE: Final = msgspec.json.Decoder(_Envelope)
_UPDATES: Final = msgspec.json.Decoder(list[msgspec.Raw])
_SENT: Final = msgspec.json.Decoder(_SentMessage)
_ME: Final = msgspec.json.Decoder(BotIdentity)
_FILE: Final = msgspec.json.Decoder(_File)
_ENCODER: Final = msgspec.json.Encoder()

Params = dict[str, object]
"""A method's parameters; msgspec encodes them to JSON."""

T = TypeVar("T")


def keyboard_markup(keyboard: Keyboard) -> dict[str, list[list[dict[str, str]]]]:
    """``reply_markup`` for an inline keyboard; an empty keyboard removes the buttons."""
    return {
        "inline_keyboard": [
            [{"text": button.text, "callback_data": button.callback_data} for button in row]
            for row in keyboard
        ]
    }


def classify(status: int, body: bytes, method: str) -> _Envelope:
    """Decode a Bot API answer; raise the matching `TelegramError` unless it is ``ok``."""
    try:
        envelope = decode_json(_ENVELOPE, body)
    except msgspec.DecodeError:
        kind = "an HTML" if body.lstrip()[:1] == b"<" else "a malformed"
        raise TelegramTransientError(f"{method}: HTTP {status} with {kind} body", status) from None
    if envelope.ok and status < 300:
        return envelope
    code = envelope.error_code or status
    description = envelope.description or f"HTTP {status}"
    parameters = envelope.parameters or _Parameters()
    if code == 429 or status == 429:
        # Telegram says whole seconds, at least 1; a proxy or a self-hosted server that says
        # 0, less or nothing must not make a caller spin (or `trio.sleep` refuse it).
        raise TelegramRetryAfter(description, max(parameters.retry_after or 0.0, 1.0))
    if parameters.migrate_to_chat_id is not None:
        raise TelegramChatMigrated(description, parameters.migrate_to_chat_id)
    if code == 401 or status == 401:
        raise TelegramUnauthorized(description, 401)
    if code == 403:
        raise TelegramForbidden(description, 403)
    if code == 409:
        raise TelegramConflict(description, 409)
    if code >= 500 or status >= 500:
        raise TelegramTransientError(description, code)
    raise TelegramBadRequest(description, code)


@final
class HttpTelegramApi:
    """`TelegramApi` over HTTP. Build it with `open_telegram_api`."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        token: str,
        *,
        request_timeout: float,
        lean: LeanHttp | None = None,
    ) -> None:
        self._client = client
        self._lean = lean
        self._prefix = f"/bot{token}/"
        self._file_prefix = f"/file/bot{token}/"
        self._request_timeout = request_timeout

    async def _call(
        self,
        method: str,
        params: Params,
        *,
        read_timeout: float | None = None,
        files: dict[str, tuple[str, bytes, str]] | None = None,
    ) -> msgspec.Raw:
        seconds = self._request_timeout if read_timeout is None else read_timeout
        if self._lean is not None:
            payload, kind = (
                (_ENCODER.encode(params), b"application/json")
                if files is None
                else multipart(_form(params), files)
            )
            try:
                status, body = await self._lean.post(
                    self._prefix + method,
                    payload,
                    connect_seconds=CONNECT_TIMEOUT,
                    seconds=seconds,
                    content_type=kind,
                )
            except trio.TooSlowError:
                raise TelegramTransientError(f"{method}: timed out") from None
            except HttpError as error:
                raise TelegramTransientError(f"{method}: {error}") from None
            return classify(status, body, method).result
        timeout = httpx.Timeout(seconds, connect=CONNECT_TIMEOUT)
        try:
            if files is None:
                response = await self._client.post(
                    self._prefix + method,
                    content=_ENCODER.encode(params),
                    headers={"content-type": "application/json"},
                    timeout=timeout,
                )
            else:
                response = await self._client.post(
                    self._prefix + method, data=_form(params), files=files, timeout=timeout
                )
        except httpx.TimeoutException as error:
            raise TelegramTransientError(f"{method}: timed out ({type(error).__name__})") from None
        except httpx.HTTPError as error:
            raise TelegramTransientError(f"{method}: {type(error).__name__}") from None
        return classify(response.status_code, response.content, method).result

    async def get_me(self) -> BotIdentity:
        """``getMe``."""
        return _decode(_ME, await self._call("getMe", {}), "getMe")

    async def get_updates(
        self,
        *,
        offset: int | None,
        poll_seconds: int,
        limit: int,
        allowed_updates: Sequence[str],
    ) -> list[msgspec.Raw]:
        """``getUpdates``; each update stays undecoded (the poller decodes one at a time)."""
        params: Params = {
            "timeout": poll_seconds,
            "limit": limit,
            "allowed_updates": list(allowed_updates),
        }
        if offset is not None:
            params["offset"] = offset
        raw = await self._call("getUpdates", params, read_timeout=poll_seconds + POLL_READ_MARGIN)
        return _decode(_UPDATES, raw, "getUpdates")

    async def send_message(
        self,
        chat_id: int,
        text: str,
        *,
        parse_mode: ParseMode = None,
        keyboard: Keyboard = (),
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
        disable_notification: bool = False,
    ) -> int:
        """``sendMessage`` without link previews; returns the message id."""
        params: Params = {
            "chat_id": chat_id,
            "text": text,
            "link_preview_options": {"is_disabled": True},
        }
        _add_common(params, parse_mode, keyboard, message_thread_id, reply_to_message_id)
        if disable_notification:
            params["disable_notification"] = True
        return _decode(_SENT, await self._call("sendMessage", params), "sendMessage").message_id

    async def edit_message_text(
        self,
        chat_id: int,
        message_id: int,
        text: str,
        *,
        parse_mode: ParseMode = None,
        keyboard: Keyboard = (),
    ) -> None:
        """``editMessageText``; an empty keyboard removes the buttons."""
        params: Params = {
            "chat_id": chat_id,
            "message_id": message_id,
            "text": text,
            "link_preview_options": {"is_disabled": True},
            "reply_markup": keyboard_markup(keyboard),
        }
        if parse_mode:
            params["parse_mode"] = parse_mode
        await self._call("editMessageText", params)

    async def edit_message_reply_markup(
        self, chat_id: int, message_id: int, *, keyboard: Keyboard = ()
    ) -> None:
        """``editMessageReplyMarkup``; an empty keyboard removes the buttons."""
        params: Params = {
            "chat_id": chat_id,
            "message_id": message_id,
            "reply_markup": keyboard_markup(keyboard),
        }
        await self._call("editMessageReplyMarkup", params)

    async def delete_message(self, chat_id: int, message_id: int) -> None:
        """``deleteMessage``."""
        await self._call("deleteMessage", {"chat_id": chat_id, "message_id": message_id})

    async def send_chat_action(
        self, chat_id: int, action: str, *, message_thread_id: int | None = None
    ) -> None:
        """``sendChatAction``."""
        params: Params = {"chat_id": chat_id, "action": action}
        if message_thread_id is not None:
            params["message_thread_id"] = message_thread_id
        await self._call("sendChatAction", params)

    async def send_document(
        self,
        chat_id: int,
        filename: str,
        content: bytes,
        *,
        caption: str = "",
        parse_mode: ParseMode = None,
        keyboard: Keyboard = (),
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
        disable_notification: bool = False,
    ) -> int:
        """``sendDocument`` as a multipart upload; returns the message id."""
        params: Params = {"chat_id": str(chat_id)}
        if caption:
            params["caption"] = caption
        _add_common(params, parse_mode, keyboard, message_thread_id, reply_to_message_id)
        if disable_notification:
            params["disable_notification"] = True
        raw = await self._call(
            "sendDocument",
            params,
            files={"document": (filename, content, _content_type(filename))},
        )
        return _decode(_SENT, raw, "sendDocument").message_id

    async def download_file(self, file_id: str, *, max_bytes: int) -> bytes:
        """``getFile``, then ``GET {base_url}/file/bot{token}/{file_path}``, streamed and cut
        off past `max_bytes` (`TelegramFileTooBig`). The URL holds the token: no httpx error
        or URL leaves this method."""
        try:
            raw = await self._call("getFile", {"file_id": file_id})
        except TelegramBadRequest as error:
            if "too big" in error.description:
                raise TelegramFileTooBig(0, max_bytes) from None
            raise
        info = _decode(_FILE, raw, "getFile")
        if info.file_size > max_bytes:
            raise TelegramFileTooBig(info.file_size, max_bytes)
        if not info.file_path or ".." in info.file_path.split("/"):
            raise TelegramTransientError("getFile: no usable file_path")
        timeout = httpx.Timeout(self._request_timeout, connect=CONNECT_TIMEOUT)
        received = bytearray()
        try:
            async with self._client.stream(
                "GET", self._file_prefix + info.file_path, timeout=timeout
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    classify(response.status_code, response.content, "file download")
                    raise TelegramTransientError(
                        f"file download: HTTP {response.status_code}", response.status_code
                    )
                chunks = response.aiter_bytes()
                async for chunk in chunks:
                    received += chunk
                    if len(received) > max_bytes:
                        break
                await chunks.aclose()  # type: ignore[attr-defined]  # an async generator
                if len(received) > max_bytes:
                    raise TelegramFileTooBig(info.file_size, max_bytes)
        except httpx.TimeoutException as error:
            raise TelegramTransientError(
                f"file download: timed out ({type(error).__name__})"
            ) from None
        except httpx.HTTPError as error:
            raise TelegramTransientError(f"file download: {type(error).__name__}") from None
        return bytes(received)

    async def answer_callback_query(
        self, callback_query_id: str, *, text: str = "", show_alert: bool = False
    ) -> None:
        """``answerCallbackQuery``."""
        params: Params = {"callback_query_id": callback_query_id}
        if text:
            params["text"] = text
        if show_alert:
            params["show_alert"] = True
        await self._call("answerCallbackQuery", params)

    async def set_my_commands(self, commands: Sequence[tuple[str, str]]) -> None:
        """``setMyCommands``."""
        listed = [{"command": name, "description": text} for name, text in commands]
        await self._call("setMyCommands", {"commands": listed})


def _add_common(
    params: Params,
    parse_mode: ParseMode,
    keyboard: Keyboard,
    message_thread_id: int | None,
    reply_to_message_id: int | None,
) -> None:
    if parse_mode:
        params["parse_mode"] = parse_mode
    if keyboard:
        params["reply_markup"] = keyboard_markup(keyboard)
    if message_thread_id is not None:
        params["message_thread_id"] = message_thread_id
    if reply_to_message_id is not None:
        params["reply_parameters"] = {
            "message_id": reply_to_message_id,
            "allow_sending_without_reply": True,
        }


def _form(params: Params) -> dict[str, str]:
    """`params` as the fields of a multipart form: strings as they are, the rest as JSON."""
    return {
        key: value if isinstance(value, str) else _ENCODER.encode(value).decode()
        for key, value in params.items()
        if value is not None
    }


def _content_type(filename: str) -> str:
    """The upload's content type, from its name (a reply's ``.md``, a ``.zip``, a ``.diff``)."""
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed or "application/octet-stream"


def _decode(decoder: msgspec.json.Decoder[T], raw: msgspec.Raw, method: str) -> T:
    try:
        return decode_json(decoder, raw)
    except msgspec.DecodeError:
        raise TelegramTransientError(f"{method}: unexpected result shape") from None


@asynccontextmanager
async def open_telegram_api(
    token: str,
    *,
    base_url: str = "https://api.telegram.org",
    request_timeout: float = 30.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[HttpTelegramApi]:
    """Open the adapter: one HTTP client (connection pool) for the whole run.

    Args:
        token: the bot token; it goes into URLs only, never into errors or logs.
        base_url: the Bot API server (``telegram.api_base_url``).
        request_timeout: read timeout of every call except the long poll.
        transport: a test transport (``httpx.MockTransport``).
    """
    # httpcore asks every idle connection whether the server closed it (a poll() each) on
    # every request and every response: with 20 kept alive that was 11 % of the bot's main
    # thread in bench/scale.py (py-spy). Telegram takes 30 calls/s; 10 connections carry that
    # at up to 300 ms a call, besides the long poll.
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    # Calls go through the lean client (`orchestrator.edges.http1`), directly or through an
    # HTTP(S) or SOCKS5 proxy; httpx carries file downloads, and everything when a test
    # hands in its transport (or for a proxy URL `proxy_problem` refuses at start).
    proxy_url = environment_proxy(base_url)
    proxy = Proxy.parse(proxy_url) if proxy_url is not None else None
    lean = None
    if transport is None and (proxy_url is None or proxy is not None):
        lean = LeanHttp(base_url, connections=CONNECTIONS, proxy=proxy)
    async with httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        transport=transport,
        limits=limits,
        follow_redirects=False,
    ) as client:
        try:
            yield HttpTelegramApi(client, token, request_timeout=request_timeout, lean=lean)
        finally:
            if lean is not None:
                await lean.aclose()
