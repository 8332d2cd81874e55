"""Inbound Bot API types: only the fields we use, tolerant of fields Telegram adds later.

Decoded at the edge (the poller), one update at a time, so a single update that does not
decode is skipped without holding back the others. Every kind of message decodes: content
other than text (a photo, a file, a voice note, a sticker, a poll...) is recognised by its
field (`content_kind`, kept raw: only its presence is read), and service messages (members
joined, a pin, a forum topic opened) are dropped here without an answer.

`orchestrator.wire.telegram_to_router` turns a decoded update into the router's `RouterMsg`,
resolving commands and mentions of the bot with `orchestrator.wire.bot_commands`.

Every Bot API body is decoded with `orchestrator.wire.json_bodies.decode_json`, which no
body makes crash or fail for ever.
"""

from __future__ import annotations

from typing import Final

import msgspec

from orchestrator.messages import Attachment, ChatType, ContentKind
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
