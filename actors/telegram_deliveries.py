"""How each kind of queued item becomes Bot API calls: replies, live messages, closes, and
the refusals to strangers.

Split from `actors.telegram_sender`, which owns the lanes, the call ladder (spacing, rate,
429, retries) and the bookkeeping; the methods here call `_in_chat` for every call and
handle the answers that are particular to one kind of item: HTML Telegram cannot parse is
sent again as plain text, "message is not modified" is success, an edit of a message that is
gone sends a new one, and a long reply is split into chunks or sent as a document. A
refusal to a stranger goes outside the lanes: once, in the limiter's lowest class.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Final, TypeVar

import trio

from actors.telegram_flood_control import never
from orchestrator.errors import TelegramBadRequest, TelegramError, TelegramRetryAfter
from orchestrator.messages import AnswerCallback
from orchestrator.rendering import (
    CAPTION_LIMIT,
    MESSAGE_LIMIT,
    render_markdown,
    render_plain,
    render_reply,
    sanitize_text,
    utf16_length,
    visible_text,
)
from orchestrator.words import plural

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from actors.telegram_flood_control import Lane, RateLimiter, StrangerGate
    from actors.telegram_outbox import Outbox
    from actors.telegram_sender import SenderStatistics
    from orchestrator.messages import CloseLive, Keyboard, SendReply, UpdateLive
    from orchestrator.ports import ParseMode, TelegramApi
    from orchestrator.recent import Recent

__all__ = ["KEYBOARDS_REMEMBERED", "Deliveries", "GiveUp", "fit", "rewrite_html"]

logger: Final = logging.getLogger("actors.telegram_sender")  # one logger for the sender

T = TypeVar("T")

KEYBOARDS_REMEMBERED: Final = 1024
"""Replies sent with a `SendReply.keyboard_slot` whose message ids (and last parts) the
sender keeps (the oldest is forgotten first): a later change of their buttons finds them."""


class GiveUp(Exception):
    """This item cannot be delivered (already logged and traced)."""


class Deliveries:
    """The deliveries of the sender (`actors.telegram_sender._Sender` is the one subclass)."""

    api: TelegramApi
    max_chunks: int
    outbox: Outbox | None
    stats: SenderStatistics
    limiter: RateLimiter
    strangers: StrangerGate
    keyboards: Recent[tuple[int, str], tuple[int, str]]
    """(chat, `SendReply.keyboard_slot`) → the message that carries the reply's buttons, and
    its HTML as rendered ("" for a document or a plain reply): what a rewrite starts from."""

    async def _in_chat(
        self,
        lane: Lane,
        call: Callable[[int], Awaitable[T]],
        *,
        preview: str,
        until_taken: bool = False,
    ) -> T:
        raise NotImplementedError

    def _undelivered(self, chat_id: int, why: str, preview: str) -> None:
        raise NotImplementedError

    async def _to_stranger(self, message: SendReply | AnswerCallback) -> None:
        """A refusal to a stranger: the lowest class of the limiter, one try, never retried
        or queued."""
        try:
            async with self.limiter.slot(never, stranger=True):
                self.stats.calls += 1
                if isinstance(message, AnswerCallback):
                    await self.api.answer_callback_query(
                        message.callback_query_id, text=message.text
                    )
                else:
                    rendered = render_plain(message.markdown, max_chunks=1)
                    text = rendered.chunks[0] if rendered.chunks else rendered.summary
                    await self.api.send_message(
                        message.chat_id,
                        text,
                        parse_mode="HTML",
                        message_thread_id=message.thread_id,
                        reply_to_message_id=message.reply_to_message_id,  # in a group: whose
                    )
            self.stats.strangers_sent += 1
        except TelegramRetryAfter as error:
            self.stats.strangers_429 += 1
            until = trio.current_time() + error.retry_after
            self.limiter.strangers_paused_until = max(self.limiter.strangers_paused_until, until)
            logger.warning(
                "flood control on a refusal: refusals wait %g s (allowed users do not)",
                error.retry_after,
            )
            self._stranger_dropped("429")
        except TelegramError as error:
            self._stranger_dropped(str(error))
        finally:
            self.strangers.waiting -= 1

    def _stranger_dropped(self, why: str) -> None:
        self.stats.strangers_dropped += 1
        dropped = self.stats.strangers_dropped
        if dropped in (1, 100) or dropped % 1000 == 0:
            logger.warning(
                "%s to strangers dropped so far (last: %s)", plural(dropped, "refusal"), why
            )

    async def _deliver_reply(self, lane: Lane, reply: SendReply) -> None:
        render = render_plain if reply.plain else render_reply
        rendered = render(reply.markdown, max_chunks=self.max_chunks)
        chunks, document, summary = rendered.chunks, rendered.document, rendered.summary
        if document is not None:
            sent = await self._in_chat(
                lane,
                lambda chat_id: self.api.send_document(
                    chat_id,
                    reply.document_name,
                    document,
                    caption=summary,
                    parse_mode="HTML",
                    keyboard=reply.keyboard,
                    message_thread_id=reply.thread_id,
                    reply_to_message_id=reply.reply_to_message_id,
                    disable_notification=reply.silent,
                ),
                preview=reply.markdown,
            )
            self._remember_keyboard(lane, reply, sent, "")
            return
        # The parts Telegram took before a restart are not sent again (`Outbox.mark_delivered`).
        entry, outbox = lane.entry, self.outbox
        done = outbox.delivered(entry) if outbox is not None and entry is not None else 0
        for number, chunk in enumerate(chunks):
            if number < done:
                continue
            last = number == len(chunks) - 1
            sent = await self._send_html(
                lane,
                chunk,
                keyboard=reply.keyboard if last else (),
                thread_id=reply.thread_id,
                reply_to=reply.reply_to_message_id if number == 0 else None,
                silent=reply.silent,
            )
            if last:
                self._remember_keyboard(lane, reply, sent, chunk)
            elif outbox is not None and entry is not None:
                await outbox.mark_delivered(entry, number + 1)

    def _remember_keyboard(self, lane: Lane, reply: SendReply, message_id: int, html: str) -> None:
        if reply.keyboard_slot:
            kept = html if not reply.plain else ""
            self.keyboards.remember((lane.chat_id, reply.keyboard_slot), (message_id, kept))

    async def _change_buttons(self, lane: Lane, close: CloseLive) -> None:
        """`close.keyboard` under the reply remembered as `close.slot` (or `close.message_id`),
        and its `close.text_from` rewritten; best effort: a message Telegram no longer has, or
        one this process did not send, is left as it is."""
        remembered = self.keyboards.pop((lane.chat_id, close.slot), None)
        message_id, html = remembered if remembered is not None else (close.message_id, "")
        if message_id is None:
            return
        rewritten = rewrite_html(html, close.text_from, close.text_to) if html else None
        if rewritten is not None:
            try:
                await self._in_chat(
                    lane,
                    lambda chat_id: self.api.edit_message_text(
                        chat_id, message_id, rewritten, parse_mode="HTML", keyboard=close.keyboard
                    ),
                    preview=rewritten,
                )
                return
            except TelegramBadRequest as error:  # its buttons still go, below
                logger.info("could not change the text of message %s: %s", message_id, error)
        try:
            await self._in_chat(
                lane,
                lambda chat_id: self.api.edit_message_reply_markup(
                    chat_id, message_id, keyboard=close.keyboard
                ),
                preview="",
            )
        except TelegramBadRequest as error:
            logger.info("could not change the buttons of message %s: %s", message_id, error)

    async def _send_html(
        self,
        lane: Lane,
        chunk: str,
        *,
        keyboard: Keyboard = (),
        thread_id: int | None = None,
        reply_to: int | None = None,
        parse_mode: ParseMode = "HTML",
        silent: bool = False,
    ) -> int:
        try:
            return await self._in_chat(
                lane,
                lambda chat_id: self.api.send_message(
                    chat_id,
                    chunk,
                    parse_mode=parse_mode,
                    keyboard=keyboard,
                    message_thread_id=thread_id,
                    reply_to_message_id=reply_to,
                    disable_notification=silent,
                ),
                preview=chunk,
            )
        except TelegramBadRequest as error:
            if parse_mode and "can't parse entities" in error.description:
                logger.warning("Telegram refused our HTML (%s); resending as plain text", error)
                return await self._send_html(
                    lane,
                    visible_text(chunk),
                    keyboard=keyboard,
                    thread_id=thread_id,
                    reply_to=reply_to,
                    parse_mode=None,
                    silent=silent,
                )
            self._undelivered(lane.chat_id, str(error), chunk)
            raise GiveUp from error

    async def _live(self, lane: Lane, live: UpdateLive) -> None:
        """Deliver a progress text. An edit of a message already shown can be dropped by a
        final that arrives meanwhile (`Lane.edit_call`): the progress message is closed or
        left behind by that final anyway. A first send is never cut short: a message that
        Telegram made but we never heard of would keep a dead Cancel button."""
        with contextlib.suppress(GiveUp):  # refused for good (traced)
            if live.slot not in lane.live_message:
                await self._deliver_live(lane, live)
                return
            edit = lane.edit_call = trio.CancelScope()
            try:
                with edit:
                    await self._deliver_live(lane, live)
            finally:
                lane.edit_call = None
            if edit.cancelled_caught:
                self.stats.shed_live += 1

    async def _deliver_live(self, lane: Lane, live: UpdateLive) -> None:
        text = fit(sanitize_text(live.text))
        message_id = lane.live_message.get(live.slot)
        if message_id is None:
            if live.document:
                document_id = await self._send_live_document(lane, live)  # GiveUp: no message
                if not live.text:  # the file says it all (/get)
                    lane.live_message[live.slot] = document_id
                    _tell_shown(live, document_id)
                    return
            lane.live_message[live.slot] = await self._send_plain(lane, live, text)
            _tell_shown(live, lane.live_message[live.slot])
            return
        try:
            await self._in_chat(
                lane,
                lambda chat_id: self.api.edit_message_text(
                    chat_id, message_id, text, keyboard=live.keyboard
                ),
                preview=text,
            )
        except TelegramBadRequest as error:
            if "not modified" in error.description:
                return
            if "not found" in error.description:
                lane.live_message[live.slot] = await self._send_plain(lane, live, text)
                _tell_shown(live, lane.live_message[live.slot])
                return
            self._undelivered(lane.chat_id, str(error), text)
            raise GiveUp from error

    async def _send_live_document(self, lane: Lane, live: UpdateLive) -> int:
        """The file a live message refers to ("the full command is in the file above"), or
        the whole of it (``/get``); its caption cut to what Telegram takes. Tried through an
        outage, as a question is: the user asked for it, or must read it to answer."""
        caption = fit(live.document_caption, CAPTION_LIMIT) if live.document_caption else ""
        call = functools.partial(
            self.api.send_document,
            filename=live.document_name or "file.txt",
            content=live.document,
            caption=caption,
            message_thread_id=live.thread_id,
        )
        try:
            return await self._in_chat(lane, call, preview=caption, until_taken=True)
        except TelegramBadRequest as error:
            self._undelivered(lane.chat_id, str(error), live.document_caption)
            raise GiveUp from error

    async def _send_plain(self, lane: Lane, live: UpdateLive, text: str) -> int:
        """A live message's first showing. One with buttons is a question or a control the
        user must get (an approval, the Cancel of a run): it is tried through an outage as a
        durable reply is (for `actors.telegram_sender.UNTIL_TAKEN_SECONDS`)."""
        try:
            return await self._in_chat(
                lane,
                lambda chat_id: self.api.send_message(
                    chat_id,
                    text,
                    keyboard=live.keyboard,
                    message_thread_id=live.thread_id,
                    reply_to_message_id=live.reply_to_message_id,
                    disable_notification=live.silent,
                ),
                preview=text,
                until_taken=bool(live.keyboard),
            )
        except TelegramBadRequest as error:
            self._undelivered(lane.chat_id, str(error), text)
            raise GiveUp from error

    async def _deliver_close(self, lane: Lane, close: CloseLive) -> None:
        """A live message's last word: its final text without buttons, or its deletion.
        Tried through an outage as a question is: lost, it would leave a question's buttons
        or a run's "⏳ Working…" with its Cancel in the chat for good."""
        if close.keep_text:
            await self._change_buttons(lane, close)
            return
        message_id = lane.live_message.pop(close.slot, None) or close.message_id
        final_text = fit(sanitize_text(close.final_text)) if close.final_text else None
        try:
            if message_id is None:
                if final_text:
                    await self._in_chat(
                        lane,
                        lambda chat_id: self.api.send_message(chat_id, final_text),
                        preview=final_text,
                        until_taken=True,
                    )
            elif close.delete or not final_text:
                await self._in_chat(
                    lane,
                    lambda chat_id: self.api.delete_message(chat_id, message_id),
                    preview="",
                    until_taken=True,
                )
            else:
                await self._in_chat(
                    lane,
                    lambda chat_id: self.api.edit_message_text(chat_id, message_id, final_text),
                    preview=final_text,
                    until_taken=True,
                )
        except TelegramBadRequest as error:
            if "not modified" in error.description or "not found" in error.description:
                return
            self._undelivered(lane.chat_id, str(error), final_text or "")


def _tell_shown(live: UpdateLive, message_id: int) -> None:
    """Tell the live message's owner its id, if it asked (never blocking)."""
    if live.shown_to is not None:
        with contextlib.suppress(
            trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError
        ):
            live.shown_to.send_nowait(message_id)


def rewrite_html(html: str, text_from: str, text_to: str) -> str | None:
    """`html` (a reply's part, as sent) with the rendering of the markdown `text_from` in
    it replaced by that of `text_to` (its last occurrence); None when it is not there (the
    reply was split inside it, or its markdown left it inside a code block), or when the
    result would not fit in a message."""
    if not text_from.strip():
        return None
    before, found, after = html.rpartition(render_markdown(sanitize_text(text_from.strip())))
    if not found:
        return None
    rewritten = before + render_markdown(sanitize_text(text_to.strip())) + after
    return rewritten if utf16_length(visible_text(rewritten)) <= MESSAGE_LIMIT else None


def fit(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Plain text cut to one message, or one caption (`limit`, in Telegram's UTF-16 units):
    at half the limit in characters, which no character can take past it (live messages
    and captions are short by design)."""
    if len(text) <= limit // 2:
        return text or "…"
    return text[: limit // 2 - 1] + "…"
