"""A decoded Bot API update in the router's words: `to_router_message`.

The types and their decoding are in `orchestrator.wire.telegram`; this module owns the one
translation of an `Update` into the router's `RouterMsg`: commands and mentions of the bot
(resolved with `orchestrator.wire.bot_commands`), whether a group message is addressed to the
bot, and where a message comes from and what it replies to, in words (`quoted_from`,
`replied_to`). It is separate because it decides meaning (who asked what), where the types
only say what Telegram sent. Pure: no I/O, no clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from orchestrator.messages import (
    BotMembershipChanged,
    InboundCallback,
    InboundMessage,
    RepliedTo,
    RouterMsg,
)
from orchestrator.wire.bot_commands import mentions, parse_command, without_mention
from orchestrator.wire.telegram import _carried, attachment_of, content_kind

if TYPE_CHECKING:
    from orchestrator.wire.telegram import Message, MessageOrigin, Update, User

__all__ = ["quoted_from", "replied_to", "to_router_message"]


def _person(user: User) -> str:
    name = user.first_name or "someone"
    return f"{name} (@{user.username})" if user.username else name


def quoted_from(message: Message) -> str | None:
    """Where a message the user did not write comes from (forwarded, or sent through an
    inline bot), in words; None for the user's own message."""
    origin = message.forward_origin
    if origin is not None:
        source = _origin(origin)
        return f"forwarded {source}" if source else "forwarded"
    if message.via_bot is not None:
        bot = message.via_bot
        return f"sent through the bot @{bot.username}" if bot.username else "sent through a bot"
    return None


def _origin(origin: MessageOrigin) -> str:
    """Where a message of elsewhere comes from, in words ("from Bob (@bob)", "from the
    channel News"); empty when Telegram hides it."""
    if origin.sender_user is not None:
        return f"from {_person(origin.sender_user)}"
    if origin.sender_user_name:
        return f"from {origin.sender_user_name}"
    chat = origin.sender_chat or origin.chat
    if chat is not None and chat.title:
        kind = "channel" if chat.type == "channel" else "chat"
        return f"from the {kind} {chat.title}"
    return ""


def replied_to(message: Message, bot_username: str) -> RepliedTo | None:
    """What `message` replies to: the part the user quoted, else the whole text or caption;
    for a message without text, what it is (a photo, a poll), which Codex cannot see. A
    reply to a message of another chat (``external_reply``) has only the quoted part. None
    for a plain message of a forum topic, which Telegram marks as a reply to the topic's
    first message (a service message, without text)."""
    quoted = message.quote.text if message.quote is not None else ""
    replied = message.reply_to_message
    if replied is None:
        external = message.external_reply
        if external is None or not quoted:
            return None
        origin = _origin(external.origin) if external.origin is not None else ""
        return RepliedTo(text=quoted, by="external", author=origin)
    text = quoted or replied.text or replied.caption or ""
    kind = "text" if text else _carried(replied)
    if kind is None:
        return None
    sender = replied.from_
    by: Literal["bot", "self", "other"] = "other"
    author = ""
    if replied.forward_origin is not None:  # whoever forwarded it, someone else wrote it
        source = _origin(replied.forward_origin).removeprefix("from ") or "someone"
        author = f"{source}, forwarded"
    elif replied.sender_chat is not None:
        chat = replied.sender_chat
        what = "channel" if chat.type == "channel" else "chat"
        author = f"the {what} {chat.title}" if chat.title else f"a {what}"
    elif sender is None:
        author = "someone"
    elif sender.is_bot and _same_name(sender.username, bot_username):
        by = "bot"
    elif message.from_ is not None and sender.id == message.from_.id:
        by = "self"
    else:
        author = _person(sender)
    return RepliedTo(text=text, kind=kind, by=by, author=author)


def _same_name(username: str | None, bot_username: str) -> bool:
    return bool(username) and (username or "").lower() == bot_username.lower()


def to_router_message(update: Update, bot_username: str) -> RouterMsg | None:
    """The router's view of `update`, or None when it is not for us (another bot's command,
    a service message, a callback without a message, an update kind we do not handle)."""
    message = update.message or update.edited_message
    if message is not None:
        kind = content_kind(message)
        if kind is None:
            return None  # a service message: nothing to answer
        text = message.text if message.text is not None else message.caption
        entities = message.entities if message.text is not None else message.caption_entities
        command: str | None = None
        arguments = ""
        mentioned = False
        quoted = quoted_from(message)
        if text is not None and quoted is not None:
            pass  # not the user's words: never a command, and kept as written
        elif text is not None:
            parsed = parse_command(text, entities, bot_username)
            if parsed == "other_bot":
                return None
            if parsed is not None:
                command, arguments = parsed
            else:
                mentioned = mentions(text, entities, bot_username)
                text = without_mention(text, entities, bot_username)
        replying = replied_to(message, bot_username) if command is None else None
        group = message.chat.type in ("group", "supergroup")
        addressed = (
            not group
            or command is not None
            or mentioned
            or (replying is not None and replying.by == "bot")
        )
        sender = message.from_
        anonymous = sender is None or message.sender_chat is not None
        return InboundMessage(
            update_id=update.update_id,
            chat_id=message.chat.id,
            chat_type=message.chat.type,
            message_id=message.message_id,
            user_id=None if anonymous or sender is None else sender.id,
            user_is_bot=bool(sender and sender.is_bot),
            thread_id=message.message_thread_id if message.is_topic_message else None,
            forum=message.chat.is_forum,
            text=text,
            command=command,
            command_args=arguments,
            edited=update.message is None,
            content_kind=kind,
            date=message.date,
            quoted_from=quoted,
            replied_to=replying,
            attachment=attachment_of(message, kind),
            media_group_id=message.media_group_id,
            addressed=addressed,
        )
    query = update.callback_query
    if query is not None:
        if query.message is None:
            return None
        origin = query.message
        replied = origin.reply_to_message
        owner = replied.from_ if replied is not None and replied.sender_chat is None else None
        if owner is not None and owner.is_bot:
            owner = None
        return InboundCallback(
            update_id=update.update_id,
            callback_query_id=query.id,
            chat_id=origin.chat.id,
            chat_type=origin.chat.type,
            user_id=query.from_.id,
            message_id=origin.message_id,
            data=query.data or "",
            thread_id=origin.message_thread_id if origin.is_topic_message else None,
            forum=origin.chat.is_forum,
            message_text=origin.text or "",
            keyboard=tuple(
                button.callback_data
                for row in (origin.reply_markup.inline_keyboard if origin.reply_markup else ())
                for button in row
                if button.callback_data is not None
            ),
            owner_id=owner.id if owner is not None else None,
            owner_name=(owner.first_name or "") if owner is not None else "",
        )
    member = update.my_chat_member
    if member is not None:
        return BotMembershipChanged(
            update_id=update.update_id,
            chat_id=member.chat.id,
            status=member.new_chat_member.status,
        )
    return None
