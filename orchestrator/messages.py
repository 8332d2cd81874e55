"""The in-process messages actors exchange, one tagged union per inbox.

Data flows one way (docs/architecture.md, "Data flow"): poller → router → chat → worker pool
→ chat → sender, and every actor → tracer. Each inbox has a frozen, tagged msgspec union here;
actors dispatch on it with ``match`` and end with ``assert_never``.

Envelopes that carry a reply channel are plain frozen Structs that are never encoded:
msgspec would encode a channel as ``{}``. Log their payloads.

Inboxes and their unions:

- router: `RouterMsg` from the poller (`InboundMessage`, `InboundCallback`,
  `BotMembershipChanged`).
- sender: `SenderMsg` (`SendReply`, `UpdateLive`, `CloseLive`, `SendChatAction`,
  `AnswerCallback`, `ChatReactivated`, `DiskRefused`).
- worker pool: in `orchestrator.codex_runs` (a `CodexJob`, its `CodexProgress` events and
  its `JobOutcome`; approvals as `ApprovalRequest`).
- tracer: `TraceRecord`.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import msgspec
import trio

__all__ = [
    "AnswerCallback",
    "Attachment",
    "BotMembershipChanged",
    "Button",
    "ChatReactivated",
    "ChatType",
    "CloseLive",
    "ContentKind",
    "DiskRefused",
    "InboundCallback",
    "InboundMessage",
    "Keyboard",
    "RepliedTo",
    "RouterMsg",
    "SendChatAction",
    "SendReply",
    "SenderMsg",
    "SessionKey",
    "TraceEvent",
    "TraceRecord",
]


class SessionKey(msgspec.Struct, frozen=True):
    """Whose conversation this is: one chat actor and one session file per key.

    `thread_id` is the forum topic (``message_thread_id`` of a topic message), else None.
    """

    chat_id: int
    user_id: int
    thread_id: int | None = None

    def file_stem(self) -> str:
        """``{chatId}-{userId}``, plus ``-t{threadId}`` for a forum topic."""
        stem = f"{self.chat_id}-{self.user_id}"
        return stem if self.thread_id is None else f"{stem}-t{self.thread_id}"


# --------------------------------------------------------------------------- router inbox

ChatType: TypeAlias = Literal["private", "group", "supergroup", "channel"]

ContentKind: TypeAlias = Literal[
    "text",
    "animation",
    "audio",
    "checklist",
    "contact",
    "dice",
    "document",
    "game",
    "giveaway",
    "giveaway_winners",
    "invoice",
    "location",
    "paid_media",
    "photo",
    "poll",
    "sticker",
    "story",
    "venue",
    "video",
    "video_note",
    "voice",
    "other",
]
"""What a message carries: ``text``, one of the Bot API's content fields (named as the field
is), or ``other`` for content Telegram added after this list (service messages never reach the
router: the wire drops them)."""


class Attachment(msgspec.Struct, frozen=True, kw_only=True):
    """The file a photo, document or voice note carries, as Telegram describes it: enough to
    download it (``getFile`` with `file_id`) and to name it. `file_size` is 0 when Telegram
    did not say; `file_name` and `mime_type` are the sender's (a photo has neither)."""

    file_id: str
    file_size: int = 0
    file_name: str = ""
    mime_type: str = ""


class RepliedTo(msgspec.Struct, frozen=True, kw_only=True):
    """The message a user's message replies to: its text (or the part the user quoted), or
    for a message without text what it carries (`kind`: a photo, a poll; `text` is empty),
    and who wrote it: the bot itself, the user, someone else (`author`, in words), or a
    message of another chat (`author`: where it comes from, when Telegram says)."""

    text: str
    kind: ContentKind = "text"
    by: Literal["bot", "self", "other", "external"]
    author: str = ""


class _RouterBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """Base of the router's inbox messages.

    `handled` is set by whoever finished with the update: the router for what it answers
    itself (refusals, ignored updates, a shed message), the chat once the message is in its
    session file (or answered). The poller records the update as handled only then, so a
    SIGKILL in between leaves it unconfirmed at Telegram (`actors.telegram_poller`).
    """

    handled: trio.Event | None = None


class InboundMessage(_RouterBase, frozen=True, kw_only=True, tag="message"):
    """A decoded message or edited message from Telegram, as the poller hands it over.

    `text` is the message text or the media caption; None when there is neither (a sticker,
    a photo without caption). `content_kind` says what the message carries: only ``text`` is
    run; anything else, captioned or not, is answered with why it is not used.

    `command` is set when the text starts with a ``bot_command`` entity addressed to us:
    lower-case, without ``/`` and ``@OurBot``; `command_args` is the rest of the text,
    stripped. `user_id` is None for anonymous admins and channel posts.
    """

    update_id: int
    chat_id: int
    chat_type: ChatType
    message_id: int
    user_id: int | None
    user_is_bot: bool = False
    thread_id: int | None = None
    forum: bool = False
    """The chat has topics (then no `thread_id` means its General topic)."""
    text: str | None = None
    command: str | None = None
    command_args: str = ""
    edited: bool = False
    content_kind: ContentKind = "text"
    date: int = 0
    late: int = 0
    """Seconds the message waited at Telegram, when it was sent while the bot could not
    fetch updates (down, or cut off) and waited longer than ``sessions.stale_after``; 0:
    it came in time. A late prompt is offered with a button, not run (`actors.chat_late`)."""
    quoted_from: str | None = None
    """Set when the user did not write the text: where it comes from, in words ("forwarded
    from Bob (@bob)", "sent through the bot @gif"); such text is never a command."""
    attachment: Attachment | None = None
    """The file of a ``photo`` (its largest size), ``document``, ``voice`` or ``audio``."""
    replied_to: RepliedTo | None = None
    """The message this one replies to, when it has text (Codex gets it with the prompt)."""
    media_group_id: str | None = None
    """The album this message belongs to: Telegram sends an album's photos as one message
    each, with the same id (and the caption, if any, on one of them)."""
    addressed: bool = True
    """In a group: the message is for the bot (it mentions the bot, replies to one of its
    messages, or is a command to it); always True in a private chat
    (``telegram.group_requests``)."""


class InboundCallback(_RouterBase, frozen=True, kw_only=True, tag="callback"):
    """An inline-button press (``callback_query``). Must always get an `AnswerCallback`."""

    update_id: int
    callback_query_id: str
    chat_id: int
    chat_type: ChatType
    user_id: int
    message_id: int | None
    data: str
    thread_id: int | None = None
    forum: bool = False
    message_text: str = ""
    """The text of the message the button is on, as shown (no formatting; "" for a caption
    or a message Telegram no longer gives): what a stale question is closed with."""
    keyboard: tuple[str, ...] = ()
    """The callback data of the buttons that message shows now. A press may carry data it
    does not show (a button of an earlier keyboard of the message, or a client that sends
    what it likes): `data` is then not among them."""
    owner_id: int | None = None
    owner_name: str = ""
    """In a group, the user whose message the button's message answers (the bot quotes the
    message it answers there), and their name: every button is its owner's alone."""


class BotMembershipChanged(_RouterBase, frozen=True, kw_only=True, tag="membership"):
    """``my_chat_member``: the bot was blocked, unblocked, added or removed in a chat."""

    update_id: int
    chat_id: int
    status: str


RouterMsg: TypeAlias = InboundMessage | InboundCallback | BotMembershipChanged


# --------------------------------------------------------------------------- sender inbox


class Button(msgspec.Struct, frozen=True):
    """One inline keyboard button; `callback_data` is at most 64 bytes (Telegram's limit)."""

    text: str
    callback_data: str


Keyboard: TypeAlias = tuple[tuple[Button, ...], ...]
"""Rows of inline buttons; ``()`` for none."""


class _SenderBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """Base of the sender's inbox messages."""


class SendReply(_SenderBase, frozen=True, kw_only=True, tag="reply"):
    """A message that must arrive: a final result, a command answer, a notice.

    Never dropped, never coalesced. `markdown` is Codex-style markdown that the sender renders
    to Telegram HTML and splits into chunks (or sends as a ``.md`` document when too long);
    with `plain` it is sent as escaped text instead.
    """

    chat_id: int
    markdown: str
    thread_id: int | None = None
    reply_to_message_id: int | None = None
    keyboard: Keyboard = ()
    plain: bool = False
    document_name: str = "reply.md"
    silent: bool = False
    """Send without a notification."""
    stranger: bool = False
    """A refusal to someone not allowed: lowest priority, capped, may be dropped (the one
    exception to "never dropped"), never kept in the outbox."""
    outbox_entry: int | None = None
    """Its outbox entry when the producer wrote it there before handing it over
    (`actors.chat_output`); None: the sender writes it as it arrives."""
    keyboard_slot: str = ""
    """A name under which the sender remembers the message that carries `keyboard` (the
    last part, or the document), so that a `CloseLive` with `keep_text` can change its
    buttons later without knowing its id. Best effort: remembered in memory, for the last
    `actors.telegram_deliveries.KEYBOARDS_REMEMBERED` of them."""


class UpdateLive(_SenderBase, frozen=True, kw_only=True, tag="live"):
    """Create or edit the live message `slot` of a chat (progress, an approval prompt).

    The first one for a slot sends a message; later ones edit it. Pending updates of the same
    slot coalesce: only the newest text is sent. `text` is plain text (the sender escapes it).
    """

    chat_id: int
    slot: str
    text: str
    thread_id: int | None = None
    keyboard: Keyboard = ()
    silent: bool = False
    """Send the message (its first showing) without a notification; edits never notify."""
    shown_to: trio.MemorySendChannel[int] | None = None
    """Told the message id (``send_nowait``, never blocking) each time the sender sends the
    message anew, so the owner can find it again after a restart (never encoded)."""
    document: bytes = b""
    """Sent as a file (`document_name`, `document_caption`) before the slot's first message;
    if it cannot be delivered, the message (and its buttons) is not sent either."""
    document_name: str = ""
    document_caption: str = ""
    reply_to_message_id: int | None = None
    """The user's message its first showing quotes (in a group: whose request it is about)."""


class CloseLive(_SenderBase, frozen=True, kw_only=True, tag="close_live"):
    """Close the live message `slot`: edit it to `final_text` without buttons, or delete it.

    Delivered like a `SendReply` (never dropped); pending updates of the slot are discarded.
    With `keep_text`, only the buttons change (to `keyboard`) of the reply sent with
    `SendReply.keyboard_slot` `slot`, or of `message_id`: a button that no longer does
    anything goes, and the reply's text and formatting stay (but for `text_from`).
    """

    chat_id: int
    slot: str
    final_text: str | None = None
    delete: bool = False
    message_id: int | None = None
    """The message to close when the sender does not know `slot` (it was shown before a
    restart)."""
    keep_text: bool = False
    keyboard: Keyboard = ()
    """With `keep_text`: the buttons the message keeps."""
    text_from: str = ""
    text_to: str = ""
    """With `keep_text`: a part of the reply's markdown (`text_from`, a paragraph or more
    of its last part) that now reads `text_to`, rendered as the reply was; the rest of
    the text stays. Best effort: a reply sent as a document, or whose HTML Telegram
    refused, changes only its buttons."""


class SendChatAction(_SenderBase, frozen=True, kw_only=True, tag="chat_action"):
    """Best-effort ``sendChatAction`` (typing); dropped when the chat is rate limited."""

    chat_id: int
    thread_id: int | None = None
    action: str = "typing"


class AnswerCallback(_SenderBase, frozen=True, kw_only=True, tag="answer_callback"):
    """``answerCallbackQuery``: stops the button's spinner; `text` shows as a toast."""

    callback_query_id: str
    text: str = ""
    show_alert: bool = False
    stranger: bool = False
    """The answer to a stranger's button press: lowest priority, capped, may be dropped."""


class ChatReactivated(_SenderBase, frozen=True, kw_only=True, tag="reactivated"):
    """The user unblocked the bot (or wrote again): sending to `chat_id` may resume."""

    chat_id: int


class DiskRefused(_SenderBase, frozen=True, kw_only=True, tag="disk_refused"):
    """A chat could not save its session: the disk is full or read-only. The sender tells
    the chat, at most once an hour, with the notice it gives when a reply's outbox entry
    cannot be written: one cause, one notice, whichever write met it first."""

    chat_id: int
    thread_id: int | None = None


SenderMsg: TypeAlias = (
    SendReply
    | UpdateLive
    | CloseLive
    | SendChatAction
    | AnswerCallback
    | ChatReactivated
    | DiskRefused
)


# --------------------------------------------------------------------------- tracer


TraceEvent: TypeAlias = Literal[
    "update",
    "refusal",
    "command",
    "queued",
    "run_start",
    "role",
    "run_end",
    "cancel",
    "approval",
    "session_reset",
    "session_corrupt",
    "delivery",
    "chat_inactive",
    "worker",
    "shutdown",
]
"""What a trace line is about; who writes each and when is in docs/traces.md."""


class TraceRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One line of ``traces/{yyyy-mm-dd}.jsonl`` (the tracer adds ``ts`` and ``v``).

    Schema: docs/traces.md. Fields that do not apply are left at their default and so left
    out of the line. Message bodies appear only in `preview`, cut to the configured length;
    the bot token never appears. `malformed` marks input that could not be read: an update
    that does not decode, a selector or reviewer answer without a valid verdict.
    """

    event: TraceEvent
    chat_id: int | None = None
    user_id: int | None = None
    thread_id: int | None = None
    update_id: int | None = None
    command: str | None = None
    mode: str | None = None
    profile: str | None = None
    role: str | None = None
    round: int | None = None
    worker: int | None = None
    codex_thread: str | None = None
    duration_ms: float | None = None
    input_tokens: int | None = None
    cached_input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    outcome: str | None = None
    detail: str | None = None
    preview: str | None = None
    malformed: bool = False
