"""A fake Telegram Bot API: a real HTTP server on 127.0.0.1 that behaves like Telegram.

What it serves, as the real Bot API does: ``/bot<token>/<method>`` (method case-insensitive),
``getFile`` and the file download ``/file/bot<token>/<file_path>`` (`add_file`),
query, JSON, form and multipart bodies; the ``ok``/``error_code``/``description``/
``parameters`` envelope; getUpdates with offset confirmation, limit and timeout clamps, real
long-poll parking and wake-up, 409 for a second parked poller; Telegram's text cleaning and
limits (4096 code points after parsing, 32768 raw bytes), HTML parse errors with the server's
wording, "message is not modified", "message to edit not found", BUTTON_DATA_INVALID, 403 for
blocked chats, migrate_to_chat_id; scripted faults (429 with retry_after, 5xx with an HTML
body, malformed JSON, delays) and optional flood limits. Every call is recorded, and tests
wait for conditions on the calls without sleeping.

Usage::

    async with open_fake_telegram(token=TOKEN) as tg:
        tg.base_url                     # http://127.0.0.1:PORT
        tg.push_message(chat_id=1, user_id=1, text="/start")
        await tg.wait_for(lambda tg: len(tg.sent_texts(1)) == 1)
"""

from __future__ import annotations

import html
import itertools
import json
import math
import re
import urllib.parse
from collections import defaultdict, deque
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from tests.fakes.http11 import Reply, serve_http

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncIterator, Callable

    import h11

CONFLICT = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
ALLOWED_TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "tg-spoiler",
    "span",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-emoji",
    "tg-time",
}
HTML_ERROR_BODY = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


# ----------------------------------------------------------------------------- faults


@dataclass
class RetryAfter:
    seconds: int


@dataclass
class ServerError:
    status: int = 502
    html: bool = True


@dataclass
class MalformedJson:
    pass


@dataclass
class Delay:
    seconds: float


@dataclass
class Unauthorized:
    pass


Fault = RetryAfter | ServerError | MalformedJson | Delay | Unauthorized


@dataclass
class _ScriptedFault:
    method: str
    fault: Fault
    times: int
    chat_id: int | None


class ApiError(Exception):
    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


# ----------------------------------------------------------------------------- records


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float
    status: int = 200


@dataclass
class StoredMessage:
    message_id: int
    chat_id: int
    text: str
    parse_mode: str | None
    reply_markup: Any
    document: bytes | None = None
    filename: str | None = None
    deleted: bool = False
    edits: int = 0
    silent: bool = False
    """Sent with ``disable_notification`` (no sound on the phone)."""
    reply_to: int | None = None
    """The message it replies to (``reply_parameters``), in the same chat."""


# ----------------------------------------------------------------------------- HTML


def parse_html(text: str) -> str:
    """Validate Telegram HTML like the server's parser; return the visible text.

    Raises ApiError with the server's descriptions for the errors it reports.
    """
    out: list[str] = []
    stack: list[tuple[str, int]] = []
    for match in re.finditer(r"<[^<>]*>|<|&[^;&<>\s]*;?|[^<&]+|&", text):
        piece = match.group(0)
        offset = len(text[: match.start()].encode())
        if piece.startswith("<"):
            if piece == "<" or not piece.endswith(">"):
                raise ApiError(
                    400,
                    "Bad Request: can't parse entities: Unclosed start tag at byte offset "
                    f"{offset}",
                )
            inner = piece[1:-1].strip()
            if inner.startswith("/"):
                name = inner[1:].strip().lower()
                if not stack:
                    raise ApiError(
                        400,
                        "Bad Request: can't parse entities: Unexpected end tag at byte offset "
                        f"{offset}",
                    )
                expected = stack[-1][0]
                if name != expected:
                    raise ApiError(
                        400,
                        "Bad Request: can't parse entities: Unmatched end tag at byte offset "
                        f'{offset}, expected "</{expected}>", found "</{name}>"',
                    )
                stack.pop()
            else:
                name = re.split(r"\s", inner, maxsplit=1)[0].lower()
                if name not in ALLOWED_TAGS:
                    raise ApiError(
                        400,
                        f'Bad Request: can\'t parse entities: Unsupported start tag "{name}" at '
                        f"byte offset {offset}",
                    )
                stack.append((name, offset))
        elif piece.startswith("&"):
            decoded = html.unescape(piece) if piece.endswith(";") else piece
            if piece.endswith(";") and not re.fullmatch(
                r"&(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);", piece
            ):
                decoded = piece  # unknown named entities stay literal
            out.append(decoded)
        else:
            out.append(piece)
    if stack:
        name, _ = stack[-1]
        raise ApiError(
            400,
            "Bad Request: can't parse entities: Can't find end tag corresponding to start tag "
            f'"{name}"',
        )
    return "".join(out)


def clean_text(text: str) -> str:
    """The server's cleaning: control characters to spaces, \\r dropped, trimmed."""
    text = text.replace("\r", "")
    text = re.sub(r"[\u2028-\u202e]", "", text)
    text = "".join(" " if ord(c) < 32 and c != "\n" else c for c in text)
    return text.strip()


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def command_entities(text: str) -> list[dict[str, Any]]:
    """Server-side entity detection for ``/commands`` and ``@username`` mentions (UTF-16
    offsets, in order), as Telegram marks them in what a user sends."""
    found = [
        ("bot_command", match)
        for match in re.finditer(r"(?<![\w/])/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?", text)
    ]
    found += [
        ("mention", match) for match in re.finditer(r"(?<![\w@/])@[A-Za-z0-9_]{5,32}\b", text)
    ]
    return [
        {
            "type": kind,
            "offset": utf16_len(text[: match.start()]),
            "length": utf16_len(match.group(0)),
        }
        for kind, match in sorted(found, key=lambda found: found[1].start())
    ]


# ----------------------------------------------------------------------------- the server


class FakeTelegram:
    def __init__(self, token: str, bot_username: str) -> None:
        self.token = token
        self.bot_username = bot_username
        self.reads_all_group_messages = False
        """``getMe``'s ``can_read_all_group_messages``: privacy mode off."""
        self.base_url = ""
        self.calls: list[Call] = []
        self.updates: list[tuple[int, bytes]] = []
        self._update_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count[int]] = defaultdict(lambda: itertools.count(1))
        self.chats: dict[int, dict[int, StoredMessage]] = defaultdict(dict)
        self.blocked: set[int] = set()
        self.migrated: dict[int, int] = {}
        self.faults: list[_ScriptedFault] = []
        self.outages: dict[str, Fault] = {}
        self.enforce_flood_limits = False
        self.flood_429s = 0
        self._sends: dict[int, deque[float]] = defaultdict(deque)
        self._global_sends: deque[float] = deque()
        self._new_update = trio.Event()
        self._changed = trio.Event()
        self._parked: trio.Event | None = None
        self.commands: list[dict[str, str]] = []
        self.allowed_updates: list[str] | None = None
        self.files: dict[str, tuple[str, bytes]] = {}
        """file_id → (file_path, content): what getFile and the file download serve."""
        self.downloads: list[str] = []
        """file_path of every file download (the request path's token checked)."""
        self._file_ids = itertools.count(1)
        self._senders: dict[tuple[int, int], dict[str, Any]] = {}
        """(chat id, message id) → the ``from`` of each message pushed: what a callback's
        message carries as its ``reply_to_message`` when the bot's message replied to one."""
        self.forums: set[int] = set()
        """Chats with topics (``is_forum``): any a topic message was pushed to, or added."""

    # ------------------------------------------------------------------ scripting

    def _chat(self, chat_id: int, chat_type: str | None = None) -> dict[str, Any]:
        """A message's ``chat``: private for a positive id, else a supergroup (a forum when
        it is in `forums`)."""
        chat: dict[str, Any] = {
            "id": chat_id,
            "type": chat_type or ("private" if chat_id > 0 else "supergroup"),
        }
        if chat_id in self.forums:
            chat["is_forum"] = True
        return chat

    def _wake(self) -> None:
        self._new_update.set()
        self._new_update = trio.Event()

    def push_update(self, body: dict[str, Any]) -> int:
        update_id = next(self._update_ids)
        self.updates.append((update_id, json.dumps({"update_id": update_id, **body}).encode()))
        self._wake()
        return update_id

    def push_raw(self, raw: bytes) -> None:
        """An update the bot cannot decode (it still carries the next update_id)."""
        update_id = next(self._update_ids)
        self.updates.append((update_id, raw.replace(b"$ID", str(update_id).encode())))
        self._wake()

    def push_message(
        self,
        *,
        chat_id: int,
        user_id: int,
        text: str | None = None,
        chat_type: str | None = None,
        message_thread_id: int | None = None,
        edited: bool = False,
        is_bot: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> int:
        if message_thread_id is not None:
            self.forums.add(chat_id)  # only a chat with topics has topic messages
        message: dict[str, Any] = {
            "message_id": next(self._message_ids[chat_id]),
            "date": 1_760_000_000,
            "chat": self._chat(chat_id, chat_type),
            "from": {"id": user_id, "is_bot": is_bot, "first_name": f"user{user_id}"},
        }
        if text is not None:
            message["text"] = text
            entities = command_entities(text)
            if entities:
                message["entities"] = entities
        if message_thread_id is not None:
            message["message_thread_id"] = message_thread_id
            message["is_topic_message"] = True
        message.update(extra or {})
        self._senders[chat_id, message["message_id"]] = message["from"]
        return self.push_update({"edited_message" if edited else "message": message})

    def push_callback(self, *, chat_id: int, user_id: int, message_id: int, data: str) -> int:
        chat = self._chat(chat_id)
        message: dict[str, Any] = {"message_id": message_id, "date": 1_760_000_000, "chat": chat}
        stored = self.chats[chat_id].get(message_id)
        if stored is not None and stored.text and stored.document is None:
            message["text"] = stored.text  # as Telegram gives it: the text, not its markup
        if stored is not None and (stored.reply_markup or {}).get("inline_keyboard"):
            message["reply_markup"] = stored.reply_markup  # the buttons it shows now
        replied = stored.reply_to if stored is not None else None
        if replied is not None and (chat_id, replied) in self._senders:
            message["reply_to_message"] = {
                "message_id": replied,
                "date": 1_760_000_000,
                "chat": chat,
                "from": self._senders[chat_id, replied],
            }
        return self.push_update(
            {
                "callback_query": {
                    "id": f"cbq{next(self._update_ids)}",
                    "from": {"id": user_id, "is_bot": False, "first_name": "u"},
                    "chat_instance": "1",
                    "data": data,
                    "message": message,
                }
            }
        )

    def add_file(self, content: bytes, path: str = "documents/file_0.bin") -> dict[str, Any]:
        """Serve `content` for download; returns the file object a message carries (its
        ``file_id``, ``file_unique_id``, ``file_size``)."""
        number = next(self._file_ids)
        file_id = f"FILE{number}"
        self.files[file_id] = (path, content)
        return {"file_id": file_id, "file_unique_id": f"U{number}", "file_size": len(content)}

    def script_fault(
        self, method: str, fault: Fault, *, times: int = 1, chat_id: int | None = None
    ) -> None:
        self.faults.append(_ScriptedFault(method.lower(), fault, times, chat_id))

    def start_outage(self, method: str, fault: Fault) -> None:
        """Every call of `method` fails with `fault` until `end_outage`: an outage of any
        length, controlled by the test instead of a clock."""
        self.outages[method.lower()] = fault

    def end_outage(self, method: str) -> None:
        self.outages.pop(method.lower(), None)

    def block(self, chat_id: int) -> None:
        self.blocked.add(chat_id)

    def migrate(self, chat_id: int, new_chat_id: int) -> None:
        self.migrated[chat_id] = new_chat_id

    # ------------------------------------------------------------------ observing

    def calls_of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method.lower()]

    def messages(self, chat_id: int) -> list[StoredMessage]:
        return [m for m in self.chats[chat_id].values() if not m.deleted]

    def sent_texts(self, chat_id: int) -> list[str]:
        return [m.text for m in self.messages(chat_id)]

    async def wait_for(self, predicate: Callable[[FakeTelegram], bool]) -> None:
        while not predicate(self):
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # ------------------------------------------------------------------ dispatch

    async def handle(self, method: str, params: dict[str, Any]) -> tuple[int, bytes]:
        call = Call(method, params, trio.current_time())
        self.calls.append(call)
        self._notify()
        try:
            outage = self.outages.get(method)
            if outage is not None:
                scripted_outage = _ScriptedFault(method, outage, 1, None)
                self.faults.insert(0, scripted_outage)
            for scripted in self.faults:
                if (
                    scripted.method == method
                    and scripted.times > 0
                    and (
                        scripted.chat_id is None
                        or str(scripted.chat_id) == str(params.get("chat_id"))
                    )
                ):
                    scripted.times -= 1
                    fault = scripted.fault
                    if isinstance(fault, Delay):
                        await trio.sleep(fault.seconds)
                        break
                    if isinstance(fault, RetryAfter):
                        raise ApiError(
                            429,
                            f"Too Many Requests: retry after {fault.seconds}",
                            {"retry_after": fault.seconds},
                        )
                    if isinstance(fault, ServerError):
                        call.status = fault.status
                        body = (
                            HTML_ERROR_BODY
                            if fault.html
                            else b'{"ok":false,"error_code":502,"description":"Bad Gateway"}'
                        )
                        return fault.status, body
                    if isinstance(fault, MalformedJson):
                        return 200, b'{"ok": true, "result": [{"update_id": '
                    if isinstance(fault, Unauthorized):
                        raise ApiError(401, "Unauthorized")
            handler = getattr(self, f"_m_{method}", None)
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            result = await handler(params)
            return 200, b'{"ok":true,"result":' + result + b"}"
        except ApiError as error:
            call.status = error.status
            envelope: dict[str, Any] = {
                "ok": False,
                "error_code": error.status,
                "description": error.description,
            }
            if error.parameters:
                envelope["parameters"] = error.parameters
            return error.status, json.dumps(envelope).encode()
        finally:
            self.faults = [scripted for scripted in self.faults if scripted.times > 0]
            self._notify()

    # ------------------------------------------------------------------ methods

    async def _m_getme(self, params: dict[str, Any]) -> bytes:
        return json.dumps(
            {
                "id": 4242,
                "is_bot": True,
                "first_name": "Test",
                "username": self.bot_username,
                "can_join_groups": True,
                "can_read_all_group_messages": self.reads_all_group_messages,
                "supports_inline_queries": False,
            }
        ).encode()

    async def _m_deletewebhook(self, params: dict[str, Any]) -> bytes:
        return b"true"

    async def _m_setmycommands(self, params: dict[str, Any]) -> bytes:
        self.commands = list(_json_value(params.get("commands", "[]")))
        return b"true"

    async def _m_getmycommands(self, params: dict[str, Any]) -> bytes:
        return json.dumps(self.commands).encode()

    async def _m_getupdates(self, params: dict[str, Any]) -> bytes:
        offset = int(params.get("offset", 0) or 0)
        limit = min(100, max(1, int(params.get("limit", 100))))
        timeout = min(50, max(0, int(params.get("timeout", 0))))
        if "allowed_updates" in params:
            self.allowed_updates = list(_json_value(params["allowed_updates"]))
        if offset > 0:
            self.updates = [(uid, raw) for uid, raw in self.updates if uid >= offset]
        elif offset < 0:
            self.updates = self.updates[offset:]
        if not self.updates and timeout > 0:
            if self._parked is not None:
                self._parked.set()  # the older poller gets the 409
            mine = trio.Event()
            self._parked = mine
            with trio.move_on_after(timeout):
                new_update = self._new_update
                async with trio.open_nursery() as nursery:

                    async def watch(event: trio.Event) -> None:
                        await event.wait()
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(watch, new_update)
                    nursery.start_soon(watch, mine)
            if self._parked is mine:
                self._parked = None
            elif mine.is_set():
                raise ApiError(409, CONFLICT)
        batch = self.updates[:limit]
        return b"[" + b",".join(raw for _, raw in batch) + b"]"

    def _target(self, params: dict[str, Any]) -> int:
        if "chat_id" not in params:
            raise ApiError(400, "Bad Request: chat_id is empty")
        chat_id = int(params["chat_id"])
        if chat_id in self.migrated:
            raise ApiError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": self.migrated[chat_id]},
            )
        if chat_id in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat_id

    def _flood(self, chat_id: int) -> None:
        if not self.enforce_flood_limits:
            return
        now = trio.current_time()
        window, limit = (60.0, 20) if chat_id < 0 else (1.0, 1)
        sends = self._sends[chat_id]
        while sends and now - sends[0] >= window:
            sends.popleft()
        while self._global_sends and now - self._global_sends[0] >= 1.0:
            self._global_sends.popleft()
        burst = 3 if chat_id > 0 else 0  # short bursts in private chats are tolerated
        if len(sends) >= limit + burst or len(self._global_sends) >= 30:
            self.flood_429s += 1
            retry = max(1, math.ceil(window - (now - sends[0]))) if sends else 1
            raise ApiError(429, f"Too Many Requests: retry after {retry}", {"retry_after": retry})
        sends.append(now)
        self._global_sends.append(now)

    def _visible(
        self, text: Any, parse_mode: Any, *, limit: int = 4096, caption: bool = False
    ) -> str:
        if text is None or text == "":
            if caption:
                return ""
            raise ApiError(400, "Bad Request: message text is empty")
        text = str(text)
        if len(text.encode()) > 32768:
            raise ApiError(400, "Bad Request: text is too long")
        visible = parse_html(text) if str(parse_mode or "").lower() == "html" else text
        visible = clean_text(visible)
        if not visible and not caption:
            raise ApiError(400, "Bad Request: text must be non-empty")
        if len(visible) > limit:
            raise ApiError(
                400,
                "Bad Request: message caption is too long"
                if caption
                else "Bad Request: message is too long",
            )
        return visible

    def _markup(self, params: dict[str, Any]) -> Any:
        markup = _json_value(params.get("reply_markup"))
        for row in (markup or {}).get("inline_keyboard", []):
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= 64:
                    raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        return markup or None

    def _store(self, chat_id: int, text: str, params: dict[str, Any], **kw: Any) -> bytes:
        message_id = next(self._message_ids[chat_id])
        self.chats[chat_id][message_id] = StoredMessage(
            message_id=message_id,
            chat_id=chat_id,
            text=text,
            parse_mode=params.get("parse_mode"),
            reply_markup=self._markup(params),
            silent=bool(params.get("disable_notification")),
            **kw,
        )
        return json.dumps(
            {
                "message_id": message_id,
                "date": 1_760_000_000,
                "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"},
                "text": text,
            }
        ).encode()

    async def _m_sendmessage(self, params: dict[str, Any]) -> bytes:
        chat_id = self._target(params)
        visible = self._visible(params.get("text"), params.get("parse_mode"))
        self._markup(params)
        self._flood(chat_id)
        replying = _json_value(params.get("reply_parameters")) or {}
        return self._store(chat_id, visible, params, reply_to=replying.get("message_id"))

    async def _m_editmessagetext(self, params: dict[str, Any]) -> bytes:
        chat_id = self._target(params)
        visible = self._visible(params.get("text"), params.get("parse_mode"))
        return self._edit(chat_id, params, visible)

    async def _m_editmessagereplymarkup(self, params: dict[str, Any]) -> bytes:
        return self._edit(self._target(params), params, None)

    def _edit(self, chat_id: int, params: dict[str, Any], text: str | None) -> bytes:
        """Edit a stored message: its text (None: kept) and its buttons (none without
        ``reply_markup``); the same text and buttons again are "not modified"."""
        markup = self._markup(params)
        keyboard = markup if markup and markup.get("inline_keyboard") else None
        stored = self.chats[chat_id].get(int(params.get("message_id", 0)))
        if stored is None or stored.deleted:
            raise ApiError(400, "Bad Request: message to edit not found")
        text = stored.text if text is None else text
        if stored.text == text and (stored.reply_markup or None) == keyboard:
            raise ApiError(400, NOT_MODIFIED)
        self._flood(chat_id)
        stored.text = text
        stored.reply_markup = keyboard
        stored.edits += 1
        return json.dumps({"message_id": stored.message_id, "text": text}).encode()

    async def _m_deletemessage(self, params: dict[str, Any]) -> bytes:
        chat_id = self._target(params)
        stored = self.chats[chat_id].get(int(params.get("message_id", 0)))
        if stored is None or stored.deleted:
            raise ApiError(400, "Bad Request: message to delete not found")
        stored.deleted = True
        return b"true"

    async def _m_sendchataction(self, params: dict[str, Any]) -> bytes:
        self._target(params)
        return b"true"

    async def _m_answercallbackquery(self, params: dict[str, Any]) -> bytes:
        if not params.get("callback_query_id"):
            raise ApiError(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
            )
        return b"true"

    async def _m_getfile(self, params: dict[str, Any]) -> bytes:
        found = self.files.get(str(params.get("file_id", "")))
        if found is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        path, content = found
        if len(content) > 20 * 1024 * 1024:
            raise ApiError(400, "Bad Request: file is too big")
        file_id = str(params["file_id"])
        return json.dumps(
            {
                "file_id": file_id,
                "file_unique_id": f"U{file_id}",
                "file_size": len(content),
                "file_path": path,
            }
        ).encode()

    def download(self, path: str) -> tuple[int, bytes]:
        """``GET /file/bot<token>/<file_path>``: the file's bytes, or 404."""
        for file_path, content in self.files.values():
            if file_path == path:
                self.downloads.append(path)
                self._notify()
                return 200, content
        return 404, b'{"ok":false,"error_code":404,"description":"Not Found"}'

    async def _m_senddocument(self, params: dict[str, Any]) -> bytes:
        chat_id = self._target(params)
        document = params.get("document")
        if not isinstance(document, _FilePart):
            raise ApiError(400, "Bad Request: there is no document in the request")
        caption = self._visible(
            params.get("caption"), params.get("parse_mode"), limit=1024, caption=True
        )
        self._flood(chat_id)
        return self._store(
            chat_id, caption, params, document=document.content, filename=document.filename
        )


@dataclass
class _FilePart:
    filename: str
    content: bytes


def _json_value(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _parse_body(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    kind = headers.get("content-type", "")
    if not body:
        return {}
    if kind.startswith("application/json"):
        return dict(json.loads(body))
    if kind.startswith("application/x-www-form-urlencoded"):
        return {
            k: v[-1]
            for k, v in urllib.parse.parse_qs(body.decode(), keep_blank_values=True).items()
        }
    if kind.startswith("multipart/form-data"):
        boundary = re.search(r"boundary=\"?([^\";]+)", kind)
        assert boundary is not None
        params: dict[str, Any] = {}
        for part in body.split(b"--" + boundary.group(1).encode()):
            if b"\r\n\r\n" not in part:
                continue
            head, _, content = part.partition(b"\r\n\r\n")
            content = content.removesuffix(b"\r\n")
            disposition = head.decode(errors="replace")
            name = re.search(r'name="([^"]*)"', disposition)
            if name is None:
                continue
            filename = re.search(r'filename="([^"]*)"', disposition)
            if filename is not None:
                params[name.group(1)] = _FilePart(filename.group(1), content)
            else:
                params[name.group(1)] = content.decode()
        return params
    return {}


async def _serve_connection(stream: trio.abc.Stream, fake: FakeTelegram) -> None:
    async def handle(request: h11.Request, body: bytes) -> Reply:
        status, payload = await _respond(fake, request, body)
        content_type = "text/html" if payload.startswith(b"<html") else "application/json"
        if request.target.startswith(b"/file/") and status == 200:
            content_type = "application/octet-stream"
        return Reply(status, payload, content_type)

    await serve_http(stream, handle)


async def _respond(fake: FakeTelegram, request: h11.Request, body: bytes) -> tuple[int, bytes]:
    target = request.target.decode()
    path, _, query = target.partition("?")
    download = re.fullmatch(r"/file/bot([^/]+)/(.+)", path)
    if download is not None and request.method == b"GET":
        if download.group(1) != fake.token:
            return 401, b'{"ok":false,"error_code":401,"description":"Unauthorized"}'
        return fake.download(urllib.parse.unquote(download.group(2)))
    match = re.fullmatch(r"/bot([^/]+)/([A-Za-z]+)", path)
    if match is None:
        return 404, b'{"ok":false,"error_code":404,"description":"Not Found"}'
    if match.group(1) != fake.token:
        return 401, b'{"ok":false,"error_code":401,"description":"Unauthorized"}'
    headers = {name.decode().lower(): value.decode() for name, value in request.headers}
    params = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
    try:
        params.update(_parse_body(headers, body))
    except (ValueError, AssertionError):
        return (
            400,
            b'{"ok":false,"error_code":400,"description":"Bad Request: can\'t parse request"}',
        )
    return await fake.handle(match.group(2).lower(), params)


@asynccontextmanager
async def open_fake_telegram(
    token: str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
    bot_username: str = "TestBot",
    *,
    port: int = 0,
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[FakeTelegram]:
    """Serve a fake Bot API on 127.0.0.1 (`port`, 0: any free one) for the duration of the
    block. A fixed `port` lets a test start the bot before Telegram is up (connection
    refused), then bring Telegram up at the address the bot keeps trying. `tls`: over
    HTTPS, as the real one (`tests.fakes.tls`)."""
    fake = FakeTelegram(token, bot_username)
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    fake.base_url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    async with trio.open_nursery() as nursery:

        async def serve(stream: trio.SocketStream) -> None:
            if tls is None:
                await _serve_connection(stream, fake)
            else:
                await _serve_connection(trio.SSLStream(stream, tls, server_side=True), fake)

        nursery.start_soon(trio.serve_listeners, serve, listeners)
        try:
            yield fake
        finally:
            nursery.cancel_scope.cancel()
