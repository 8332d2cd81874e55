"""Inbound Bot API types: only the fields we use, tolerant of fields Telegram adds later.

Decoded at the edge (the poller), one update at a time, so a single update that does not
decode is skipped without holding back the others. Every kind of message decodes: content
other than text (a photo, a file, a voice note, a sticker, a poll...) is recognised by its
field (`content_kind`, kept raw: only its presence is read), and service messages (members
joined, a pin, a forum topic opened) are dropped here without an answer.

`to_router_message` turns a decoded update into the router's `RouterMsg`, resolving commands
and mentions of the bot with `orchestrator.wire.bot_commands`.

Every Bot API body is decoded with `orchestrator.wire.json_bodies.decode_json`, which no
body makes crash or fail for ever.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from orchestrator.messages import (
    Attachment,
    BotMembershipChanged,
    ChatType,
    ContentKind,
    InboundCallback,
    InboundMessage,
    RepliedTo,
    RouterMsg,
)
from orchestrator.wire.bot_commands import mentions, parse_command, without_mention
from orchestrator.wire.json_bodies import decode_json

__all__ = [
    "CONTENT_FIELDS",
    "SERVICE_FIELDS",
    "CallbackQuery",
    "Chat",
    "ChatMemberUpdated",
    "Message",
    "MessageEntity",
    "MessageOrigin",
    "Update",
    "UpdateId",
    "User",
    "attachment_of",
    "content_kind",
    "decode_update",
    "decode_update_id",
    "parse_command",
    "quoted_from",
    "replied_to",
    "to_router_message",
    "without_mention",
]


CONTENT_FIELDS: Final[tuple[ContentKind, ...]] = (
    "animation",  # before document: a GIF carries both
    "paid_media",
    "photo",
    "video",
    "video_note",
    "voice",
    "audio",
    "document",
    "sticker",
    "story",
    "checklist",
    "venue",  # before location: a venue carries both
    "location",
    "contact",
    "poll",
    "dice",
    "game",
    "invoice",
    "giveaway",
    "giveaway_winners",
)
"""``Message`` fields that carry content other than text (Bot API 9), in the order they are
recognised; each is named as its `ContentKind`."""

SERVICE_FIELDS: Final = (
    "new_chat_members",
    "left_chat_member",
    "new_chat_title",
    "new_chat_photo",
    "delete_chat_photo",
    "group_chat_created",
    "supergroup_chat_created",
    "channel_chat_created",
    "message_auto_delete_timer_changed",
    "migrate_to_chat_id",
    "migrate_from_chat_id",
    "pinned_message",
    "successful_payment",
    "refunded_payment",
    "users_shared",
    "chat_shared",
    "gift",
    "unique_gift",
    "connected_website",
    "write_access_allowed",
    "passport_data",
    "proximity_alert_triggered",
    "boost_added",
    "chat_background_set",
    "checklist_tasks_done",
    "checklist_tasks_added",
    "direct_message_price_changed",
    "forum_topic_created",
    "forum_topic_edited",
    "forum_topic_closed",
    "forum_topic_reopened",
    "general_forum_topic_hidden",
    "general_forum_topic_unhidden",
    "giveaway_created",
    "giveaway_completed",
    "paid_message_price_changed",
    "suggested_post_approved",
    "suggested_post_approval_failed",
    "suggested_post_declined",
    "suggested_post_paid",
    "suggested_post_refunded",
    "video_chat_scheduled",
    "video_chat_started",
    "video_chat_ended",
    "video_chat_participants_invited",
    "web_app_data",
)
"""``Message`` fields of service messages (Bot API 9): members joined or left, a pin, a forum
topic opened, a payment... Such a message is dropped silently (`to_router_message` gives None)."""

_ABSENT: Final = msgspec.Raw()
"""The value of a raw field the message does not have."""


class User(msgspec.Struct, frozen=True):
    """``User``: the id decides access; the names only say who a forwarded message is from."""

    id: int
    is_bot: bool = False
    first_name: str = ""
    username: str | None = None


class Chat(msgspec.Struct, frozen=True):
    """``Chat``."""

    id: int
    type: ChatType = "private"
    title: str | None = None
    is_forum: bool = False
    """A supergroup with topics: a message without ``message_thread_id`` is in its General
    topic."""


class MessageEntity(msgspec.Struct, frozen=True):
    """``MessageEntity``; `offset` and `length` count UTF-16 code units."""

    type: str
    offset: int
    length: int


class MessageOrigin(msgspec.Struct, frozen=True):
    """``MessageOrigin`` of a forwarded message (``user``, ``hidden_user``, ``chat``,
    ``channel``), the fields that say who wrote it."""

    type: str
    sender_user: User | None = None
    sender_user_name: str | None = None
    sender_chat: Chat | None = None
    chat: Chat | None = None


class _Content(msgspec.Struct, frozen=True, kw_only=True):
    """What a message carries other than text (`CONTENT_FIELDS`): of a message, and of the
    message it replies to."""

    # Only its presence is read, so each is kept raw, whatever shape Telegram gives it
    # (msgspec cannot decode ``Raw | None``: an object there failed the whole update,
    # "Expected `null`, got `object`").
    animation: msgspec.Raw = _ABSENT
    audio: msgspec.Raw = _ABSENT
    checklist: msgspec.Raw = _ABSENT
    contact: msgspec.Raw = _ABSENT
    dice: msgspec.Raw = _ABSENT
    document: msgspec.Raw = _ABSENT
    game: msgspec.Raw = _ABSENT
    giveaway: msgspec.Raw = _ABSENT
    giveaway_winners: msgspec.Raw = _ABSENT
    invoice: msgspec.Raw = _ABSENT
    location: msgspec.Raw = _ABSENT
    paid_media: msgspec.Raw = _ABSENT
    photo: msgspec.Raw = _ABSENT
    poll: msgspec.Raw = _ABSENT
    sticker: msgspec.Raw = _ABSENT
    story: msgspec.Raw = _ABSENT
    venue: msgspec.Raw = _ABSENT
    video: msgspec.Raw = _ABSENT
    video_note: msgspec.Raw = _ABSENT
    voice: msgspec.Raw = _ABSENT


class RepliedMessage(_Content, frozen=True):
    """``reply_to_message``: the fields that say what a reply answers, and who wrote it."""

    message_id: int
    from_: User | None = msgspec.field(default=None, name="from")
    sender_chat: Chat | None = None
    forward_origin: MessageOrigin | None = None
    text: str | None = None
    caption: str | None = None


class ExternalReply(msgspec.Struct, frozen=True):
    """``ExternalReplyInfo``: a reply to a message of another chat; only where it is from."""

    origin: MessageOrigin | None = None


class InlineButton(msgspec.Struct, frozen=True):
    """``InlineKeyboardButton``: only its ``callback_data`` (a URL button has none)."""

    callback_data: str | None = None


class InlineKeyboard(msgspec.Struct, frozen=True):
    """``InlineKeyboardMarkup`` of a message: the buttons it shows now."""

    inline_keyboard: tuple[tuple[InlineButton, ...], ...] = ()


class TextQuote(msgspec.Struct, frozen=True):
    """``TextQuote``: the part of the replied message the user chose to quote."""

    text: str = ""


class Message(_Content, frozen=True):
    """``Message``: the fields that decide routing, commands and content."""

    message_id: int
    chat: Chat
    date: int = 0
    from_: User | None = msgspec.field(default=None, name="from")
    sender_chat: Chat | None = None
    message_thread_id: int | None = None
    is_topic_message: bool = False
    text: str | None = None
    caption: str | None = None
    entities: tuple[MessageEntity, ...] = ()
    caption_entities: tuple[MessageEntity, ...] = ()
    forward_origin: MessageOrigin | None = None
    via_bot: User | None = None
    media_group_id: str | None = None
    reply_to_message: RepliedMessage | None = None
    external_reply: ExternalReply | None = None
    quote: TextQuote | None = None
    reply_markup: InlineKeyboard | None = None
    """The buttons of a message of the bot's (a callback's message): what a press may carry."""
    # Service messages (`SERVICE_FIELDS`): something happened in the chat; nobody asked for
    # anything, so they are dropped without an answer.
    new_chat_members: msgspec.Raw = _ABSENT
    left_chat_member: msgspec.Raw = _ABSENT
    new_chat_title: msgspec.Raw = _ABSENT
    new_chat_photo: msgspec.Raw = _ABSENT
    delete_chat_photo: msgspec.Raw = _ABSENT
    group_chat_created: msgspec.Raw = _ABSENT
    supergroup_chat_created: msgspec.Raw = _ABSENT
    channel_chat_created: msgspec.Raw = _ABSENT
    message_auto_delete_timer_changed: msgspec.Raw = _ABSENT
    migrate_to_chat_id: msgspec.Raw = _ABSENT
    migrate_from_chat_id: msgspec.Raw = _ABSENT
    pinned_message: msgspec.Raw = _ABSENT
    successful_payment: msgspec.Raw = _ABSENT
    refunded_payment: msgspec.Raw = _ABSENT
    users_shared: msgspec.Raw = _ABSENT
    chat_shared: msgspec.Raw = _ABSENT
    gift: msgspec.Raw = _ABSENT
    unique_gift: msgspec.Raw = _ABSENT
    connected_website: msgspec.Raw = _ABSENT
    write_access_allowed: msgspec.Raw = _ABSENT
    passport_data: msgspec.Raw = _ABSENT
    proximity_alert_triggered: msgspec.Raw = _ABSENT
    boost_added: msgspec.Raw = _ABSENT
    chat_background_set: msgspec.Raw = _ABSENT
    checklist_tasks_done: msgspec.Raw = _ABSENT
    checklist_tasks_added: msgspec.Raw = _ABSENT
    direct_message_price_changed: msgspec.Raw = _ABSENT
    forum_topic_created: msgspec.Raw = _ABSENT
    forum_topic_edited: msgspec.Raw = _ABSENT
    forum_topic_closed: msgspec.Raw = _ABSENT
    forum_topic_reopened: msgspec.Raw = _ABSENT
    general_forum_topic_hidden: msgspec.Raw = _ABSENT
    general_forum_topic_unhidden: msgspec.Raw = _ABSENT
    giveaway_created: msgspec.Raw = _ABSENT
    giveaway_completed: msgspec.Raw = _ABSENT
    paid_message_price_changed: msgspec.Raw = _ABSENT
    suggested_post_approved: msgspec.Raw = _ABSENT
    suggested_post_approval_failed: msgspec.Raw = _ABSENT
    suggested_post_declined: msgspec.Raw = _ABSENT
    suggested_post_paid: msgspec.Raw = _ABSENT
    suggested_post_refunded: msgspec.Raw = _ABSENT
    video_chat_scheduled: msgspec.Raw = _ABSENT
    video_chat_started: msgspec.Raw = _ABSENT
    video_chat_ended: msgspec.Raw = _ABSENT
    video_chat_participants_invited: msgspec.Raw = _ABSENT
    web_app_data: msgspec.Raw = _ABSENT


class _FileInfo(msgspec.Struct, frozen=True):
    """``PhotoSize``, ``Document``, ``Voice``, ``Audio``: the fields that fetch and name it."""

    file_id: str
    file_size: int = 0
    file_name: str = ""
    mime_type: str = ""
    width: int = 0
    height: int = 0


_FILE: Final = msgspec.json.Decoder(_FileInfo)
_PHOTO: Final = msgspec.json.Decoder(list[_FileInfo])


def attachment_of(message: Message, kind: ContentKind) -> Attachment | None:
    """The file `message` carries as `kind` (``photo``: its largest size; ``document``,
    ``voice``, ``audio``), or None for other kinds and a field that does not decode."""
    try:
        if kind == "photo":
            sizes = decode_json(_PHOTO, message.photo)
            if not sizes:
                return None
            info = max(sizes, key=lambda size: (size.width * size.height, size.file_size))
        elif kind in ("document", "voice", "audio"):
            info = decode_json(_FILE, getattr(message, kind))
        else:
            return None
    except msgspec.DecodeError:
        return None
    return Attachment(
        file_id=info.file_id,
        file_size=info.file_size,
        file_name=info.file_name,
        mime_type=info.mime_type,
    )


class CallbackQuery(msgspec.Struct, frozen=True):
    """``CallbackQuery`` from an inline button."""

    id: str
    from_: User = msgspec.field(name="from")
    message: Message | None = None
    data: str | None = None


class ChatMemberStatus(msgspec.Struct, frozen=True):
    """``ChatMember`` reduced to its status."""

    status: str


class ChatMemberUpdated(msgspec.Struct, frozen=True):
    """``my_chat_member``: our own membership in a chat changed."""

    chat: Chat
    new_chat_member: ChatMemberStatus


class Update(msgspec.Struct, frozen=True):
    """``Update`` with the four kinds we subscribe to."""

    update_id: int
    message: Message | None = None
    edited_message: Message | None = None
    callback_query: CallbackQuery | None = None
    my_chat_member: ChatMemberUpdated | None = None


class UpdateId(msgspec.Struct, frozen=True):
    """Just the id: read first, so even an undecodable update can be confirmed and traced."""

    update_id: int


_UPDATE: Final = msgspec.json.Decoder(Update)
_UPDATE_ID: Final = msgspec.json.Decoder(UpdateId)


def decode_update(raw: bytes | msgspec.Raw) -> Update:
    """Decode one update.

    Raises:
        msgspec.DecodeError: it does not match the Bot API's shape.
    """
    return decode_json(_UPDATE, raw)


def decode_update_id(raw: bytes | msgspec.Raw) -> int | None:
    """The update's id, or None when not even that can be read."""
    try:
        return decode_json(_UPDATE_ID, raw).update_id
    except msgspec.DecodeError:
        return None


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


def content_kind(message: Message) -> ContentKind | None:
    """What `message` carries: its first field of `CONTENT_FIELDS`, else ``text``; None for a
    service message (`SERVICE_FIELDS`); ``other`` for a message with none of these (content
    Telegram added after this list: it is answered, not dropped)."""
    kind = _carried(message)
    if kind is not None:
        return kind
    if message.text is not None:
        return "text"
    if any(_present(getattr(message, name)) for name in SERVICE_FIELDS):
        return None
    return "other"


def _carried(message: _Content) -> ContentKind | None:
    """The first of `CONTENT_FIELDS` that `message` carries, if any."""
    return next((kind for kind in CONTENT_FIELDS if _present(getattr(message, kind))), None)


def _present(value: msgspec.Raw) -> bool:
    return len(value) > 0 and not (len(value) == 4 and bytes(value) == b"null")


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
