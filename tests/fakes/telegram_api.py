"""An in-memory `TelegramApi` for actor tests under `autojump_clock`.

Updates are queued as JSON-able dicts (or raw bytes for undecodable ones); `get_updates`
honours the offset like Telegram (confirmed updates are forgotten) and parks in
``trio.sleep(poll_seconds)`` when nothing is pending, which costs no real time under the
autojump clock. Every call is recorded with its trio time; failures are scripted per method.
"""

from __future__ import annotations

import itertools
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec
import trio

from orchestrator.errors import TelegramBadRequest, TelegramError, TelegramFileTooBig
from orchestrator.ports import BotIdentity, ParseMode

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from orchestrator.messages import Keyboard


@dataclass
class Call:
    method: str
    at: float
    chat_id: int | None = None
    text: str = ""
    message_id: int | None = None
    parse_mode: ParseMode = None
    keyboard: Keyboard = ()
    extra: dict[str, object] = field(default_factory=dict)


class FakeTelegramApi:
    def __init__(self, username: str = "TestBot") -> None:
        self.username = username
        self.pending: list[tuple[int, bytes]] = []
        self.files: dict[str, bytes] = {}
        self.calls: list[Call] = []
        self.failures: dict[str, deque[TelegramError | Callable[[Call], None]]] = defaultdict(deque)
        self.messages: dict[int, dict[int, str]] = defaultdict(dict)
        self._ids = itertools.count(1)
        self._message_ids = itertools.count(100)
        self._changed = trio.Event()
        self._new_update = trio.Event()
        self.offsets: list[int | None] = []
        # Seconds each way between the bot and "Telegram" for message calls (None: instant);
        # a call is recorded when it arrives, as Telegram counts it for flood control.
        self.latency: Callable[[], float] | None = None

    # ------------------------------------------------------------ scripting

    def push(self, update: dict[str, object] | None = None, *, raw: bytes | None = None) -> int:
        update_id = next(self._ids)
        if raw is None:
            body = dict(update or {})
            body["update_id"] = update_id
            raw = msgspec.json.encode(body)
        self.pending.append((update_id, raw))
        self._new_update.set()
        self._new_update = trio.Event()
        return update_id

    def push_text(
        self,
        text: str,
        *,
        chat_id: int = 1,
        user_id: int = 1,
        entities: list[dict[str, object]] | None = None,
        edited: bool = False,
        date: int = 0,
    ) -> int:
        if entities is None and text.startswith("/"):
            command = text.split()[0]
            entities = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        message = {
            "message_id": next(self._message_ids),
            "date": date,
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"},
            "from": {"id": user_id, "is_bot": False, "first_name": "u"},
            "text": text,
            "entities": entities or [],
        }
        return self.push({"edited_message" if edited else "message": message})

    def fail(self, method: str, *errors: TelegramError) -> None:
        self.failures[method].extend(errors)

    def redeliver(self, updates: list[tuple[int, bytes]]) -> None:
        """Put already-delivered updates back, as Telegram does after a crash."""
        self.pending = sorted(updates + self.pending)
        self._new_update.set()
        self._new_update = trio.Event()

    # ------------------------------------------------------------ observing

    def calls_of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    async def wait_for(self, predicate: Callable[[FakeTelegramApi], bool]) -> None:
        while not predicate(self):
            await self._changed.wait()

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        self._notify()
        scripted = self.failures.get(call.method)
        if scripted:
            failure = scripted.popleft()
            if isinstance(failure, TelegramError):
                raise failure
            failure(call)

    async def _leg(self) -> None:
        if self.latency is not None:
            await trio.sleep(self.latency())

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # ------------------------------------------------------------ TelegramApi

    async def get_me(self) -> BotIdentity:
        self._record(Call("getMe", trio.current_time()))
        return BotIdentity(id=999, username=self.username)

    async def get_updates(
        self,
        *,
        offset: int | None,
        poll_seconds: int,
        limit: int,
        allowed_updates: Sequence[str],
    ) -> list[msgspec.Raw]:
        self.offsets.append(offset)
        self._record(Call("getUpdates", trio.current_time(), extra={"offset": offset}))
        if offset is not None:
            self.pending = [(uid, raw) for uid, raw in self.pending if uid >= offset]
        if not self.pending:
            with trio.move_on_after(poll_seconds):
                await self._new_update.wait()
        return [msgspec.Raw(raw) for _, raw in self.pending[:limit]]

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
        await self._leg()
        call = Call(
            "sendMessage",
            trio.current_time(),
            chat_id=chat_id,
            text=text,
            parse_mode=parse_mode,
            keyboard=keyboard,
            extra={
                **({"disable_notification": True} if disable_notification else {}),
                **({"reply_to_message_id": reply_to_message_id} if reply_to_message_id else {}),
            },
        )
        self._record(call)
        message_id = next(self._message_ids)
        call.message_id = message_id
        self.messages[chat_id][message_id] = text
        await self._leg()
        return message_id

    async def edit_message_text(
        self,
        chat_id: int,
        message_id: int,
        text: str,
        *,
        parse_mode: ParseMode = None,
        keyboard: Keyboard = (),
    ) -> None:
        await self._edit("editMessageText", chat_id, message_id, keyboard, text, parse_mode)

    async def edit_message_reply_markup(
        self, chat_id: int, message_id: int, *, keyboard: Keyboard = ()
    ) -> None:
        await self._edit("editMessageReplyMarkup", chat_id, message_id, keyboard, None)

    async def _edit(
        self,
        method: str,
        chat_id: int,
        message_id: int,
        keyboard: Keyboard,
        text: str | None,
        parse_mode: ParseMode = None,
    ) -> None:
        """An edit of a sent message: its text (None: kept) and its buttons, recorded."""
        await self._leg()
        call = Call(
            method,
            trio.current_time(),
            chat_id=chat_id,
            text=text or "",
            message_id=message_id,
            parse_mode=parse_mode,
            keyboard=keyboard,
        )
        self._record(call)
        if message_id not in self.messages[chat_id]:
            raise TelegramBadRequest("Bad Request: message to edit not found", 400)
        if text is not None:
            self.messages[chat_id][message_id] = text
        await self._leg()

    async def delete_message(self, chat_id: int, message_id: int) -> None:
        self._record(
            Call("deleteMessage", trio.current_time(), chat_id=chat_id, message_id=message_id)
        )
        self.messages[chat_id].pop(message_id, None)

    async def send_chat_action(
        self, chat_id: int, action: str, *, message_thread_id: int | None = None
    ) -> None:
        await self._leg()
        self._record(Call("sendChatAction", trio.current_time(), chat_id=chat_id, text=action))
        await self._leg()

    async def download_file(self, file_id: str, *, max_bytes: int) -> bytes:
        """The bytes put in `files` under `file_id` (an unknown id is Telegram's 400)."""
        self._record(Call("getFile", trio.current_time(), text=file_id))
        content = self.files.get(file_id)
        if content is None:
            raise TelegramBadRequest("Bad Request: invalid file_id", 400)
        if len(content) > max_bytes:
            raise TelegramFileTooBig(len(content), max_bytes)
        return content

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
        call = Call(
            "sendDocument",
            trio.current_time(),
            chat_id=chat_id,
            text=caption,
            keyboard=keyboard,
            extra={"filename": filename, "content": content, "silent": disable_notification},
        )
        self._record(call)
        message_id = next(self._message_ids)
        self.messages[chat_id][message_id] = f"[document {filename}] {caption}"
        return message_id

    async def answer_callback_query(
        self, callback_query_id: str, *, text: str = "", show_alert: bool = False
    ) -> None:
        self._record(
            Call(
                "answerCallbackQuery",
                trio.current_time(),
                text=text,
                extra={"id": callback_query_id},
            )
        )

    async def set_my_commands(self, commands: Sequence[tuple[str, str]]) -> None:
        self._record(Call("setMyCommands", trio.current_time(), extra={"commands": list(commands)}))
