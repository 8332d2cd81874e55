"""Bot API decoding: tolerant of what Telegram adds, and of bodies nested past the decoder;
every kind of message decodes and says what it is."""

from __future__ import annotations

import json
from typing import get_args

import msgspec
import pytest

from orchestrator.messages import (
    Attachment,
    ContentKind,
    InboundCallback,
    InboundMessage,
    RepliedTo,
)
from orchestrator.wire.json_bodies import MAX_JSON_DEPTH, decode_json, mend_text, prune_json
from orchestrator.wire.telegram import (
    CONTENT_FIELDS,
    SERVICE_FIELDS,
    Message,
    content_kind,
    decode_update,
    decode_update_id,
)
from orchestrator.wire.telegram_to_router import to_router_message

DEEP = 100_000
"""Far past the roughly thousand levels at which msgspec's decoder raises RecursionError."""


def nested(depth: int, inner: bytes = b"") -> bytes:
    return b"[" * depth + inner + b"]" * depth


def test_the_decoder_alone_gives_up_on_deep_nesting() -> None:
    """Why `decode_json` exists: this used to escape from the poller as a crash."""
    with pytest.raises(RecursionError):
        msgspec.json.decode(nested(DEEP))


def test_prune_replaces_what_is_deeper_than_the_limit_and_keeps_strings() -> None:
    body = b'{"a":[[[1]]],"s":"[[[{","b":{"c":{}},"d":[1,[2]]}'
    assert prune_json(body, 2) == b'{"a":[null],"s":"[[[{","b":{"c":null},"d":[1,null]}'
    assert prune_json(body, 10) == body


def test_prune_leaves_invalid_json_invalid() -> None:
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(prune_json(b'{"a":' + b"[" * 100, 2))


def test_decode_json_survives_any_depth() -> None:
    decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])
    envelope = decode_json(decoder, b'{"ok":true,"result":' + nested(DEEP) + b"}")
    assert msgspec.json.decode(envelope["ok"]) is True
    assert bytes(envelope["result"]).count(b"[") == MAX_JSON_DEPTH - 1


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (rb'{"t":"a\ud800b"}', "a\ufffdb"),
        (rb'{"t":"\udc00 \ud83d"}', "\ufffd \ufffd"),
        (rb'{"t":"\ud83d\ude00"}', "\U0001f600"),
        (rb'{"t":"\\ud800"}', "\\ud800"),
        (rb'{"t":"\\\ud800"}', "\\\ufffd"),
        (b'{"t":"\xed\xa0\x80!"}', "\ufffd\ufffd\ufffd!"),
    ],
)
def test_text_msgspec_refuses_is_mended(body: bytes, text: str) -> None:
    """A lone surrogate escape or a byte that is not UTF-8 spoils only itself: a pair and an
    escaped backslash before ``u`` stay as they are."""
    assert decode_json(msgspec.json.Decoder(dict[str, str]), body) == {"t": text}


def test_json_that_is_broken_otherwise_still_fails_as_a_decode_error() -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_json(msgspec.json.Decoder(dict[str, str]), b'{"t":"\\ud800')
    assert mend_text(b'{"t":1}') == b'{"t":1}'


def test_a_deep_update_keeps_its_id_and_fails_to_decode_like_any_malformed_one() -> None:
    raw = b'{"update_id":5,"message":{"message_id":' + nested(DEEP) + b"}}"
    assert decode_update_id(raw) == 5
    with pytest.raises(msgspec.DecodeError):
        decode_update(raw)


def test_a_deep_field_we_do_not_read_does_not_spoil_the_update() -> None:
    raw = (
        b'{"update_id":6,"message":{"message_id":1,"chat":{"id":7},"text":"hi","future":'
        + nested(DEEP, b'{"x":1}')
        + b"}}"
    )
    update = decode_update(raw)
    assert update.message is not None
    assert update.message.text == "hi"


# ---------------------------------------------------------------- every kind of message

PHOTO_SIZE = {"file_id": "AgAD", "file_unique_id": "AQAD", "width": 90, "height": 67}
ALICE_FROM = {"id": 42, "is_bot": False, "first_name": "Alice", "username": "alice"}

CONTENT: dict[str, dict[str, object]] = {
    "photo": {"photo": [PHOTO_SIZE, {**PHOTO_SIZE, "width": 1280, "file_size": 91_000}]},
    "document": {
        "document": {
            "file_name": "trace.log",
            "mime_type": "text/plain",
            "file_id": "BQAC",
            "file_unique_id": "AgAD",
            "file_size": 1234,
            "thumbnail": PHOTO_SIZE,
        }
    },
    "audio": {"audio": {"duration": 187, "performer": "X", "title": "Y", "file_id": "CQ"}},
    "voice": {
        "voice": {
            "duration": 4,
            "mime_type": "audio/ogg",
            "file_id": "AwAC",
            "file_unique_id": "AgAD",
            "file_size": 17_000,
        }
    },
    "video": {"video": {"duration": 9, "width": 720, "height": 1280, "file_id": "BAAC"}},
    "video_note": {"video_note": {"duration": 6, "length": 384, "file_id": "DQAC"}},
    "animation": {  # a GIF comes with `document` too
        "animation": {"file_name": "a.mp4", "duration": 2, "file_id": "CgAC"},
        "document": {"file_name": "a.mp4", "file_id": "CgAC"},
    },
    "sticker": {
        "sticker": {
            "width": 512,
            "height": 512,
            "emoji": "👍",
            "set_name": "Set",
            "is_animated": False,
            "is_video": False,
            "type": "regular",
            "file_id": "CAAC",
        }
    },
    "contact": {"contact": {"phone_number": "+10000000", "first_name": "Bob", "user_id": 7}},
    "location": {"location": {"latitude": 52.52, "longitude": 13.405}},
    "venue": {  # a venue comes with `location` too
        "venue": {
            "location": {"latitude": 52.52, "longitude": 13.405},
            "title": "Cafe",
            "address": "Main St 1",
        },
        "location": {"latitude": 52.52, "longitude": 13.405},
    },
    "poll": {
        "poll": {
            "id": "5",
            "question": "Ship it?",
            "options": [{"text": "yes", "voter_count": 0}, {"text": "no", "voter_count": 0}],
            "total_voter_count": 0,
            "is_closed": False,
            "is_anonymous": True,
            "type": "regular",
            "allows_multiple_answers": False,
        }
    },
    "dice": {"dice": {"emoji": "🎲", "value": 4}},
    "game": {"game": {"title": "G", "description": "d", "photo": [PHOTO_SIZE]}},
    "story": {"story": {"chat": {"id": 9, "type": "private"}, "id": 3}},
    "invoice": {
        "invoice": {
            "title": "T",
            "description": "D",
            "start_parameter": "s",
            "currency": "XTR",
            "total_amount": 1,
        }
    },
    "giveaway": {
        "giveaway": {
            "chats": [{"id": -100, "type": "channel"}],
            "winners_selection_date": 1,
            "winner_count": 1,
        }
    },
    "giveaway_winners": {
        "giveaway_winners": {
            "chat": {"id": -100, "type": "channel"},
            "giveaway_message_id": 1,
            "winners_selection_date": 1,
            "winner_count": 1,
            "winners": [ALICE_FROM],
        }
    },
    "paid_media": {
        "paid_media": {"star_count": 5, "paid_media": [{"type": "preview", "width": 1}]}
    },
    "checklist": {"checklist": {"title": "Todo", "tasks": [{"id": 1, "text": "a"}]}},
}

SERVICE: dict[str, dict[str, object]] = {
    "new_chat_members": {"new_chat_members": [ALICE_FROM], "new_chat_member": ALICE_FROM},
    "left_chat_member": {"left_chat_member": ALICE_FROM},
    "pinned_message": {
        "pinned_message": {"message_id": 5, "date": 1, "chat": {"id": -100, "type": "supergroup"}}
    },
    "forum_topic_created": {
        "forum_topic_created": {"name": "Bugs", "icon_color": 7322096},
        "message_thread_id": 77,
        "is_topic_message": True,
    },
    "forum_topic_closed": {"forum_topic_closed": {}},
    "new_chat_title": {"new_chat_title": "Team"},
    "group_chat_created": {"group_chat_created": True},
    "migrate_to_chat_id": {"migrate_to_chat_id": -1001234567890},
    "message_auto_delete_timer_changed": {
        "message_auto_delete_timer_changed": {"message_auto_delete_time": 86400}
    },
    "video_chat_started": {"video_chat_started": {}},
    "write_access_allowed": {"write_access_allowed": {"from_request": True}},
    "boost_added": {"boost_added": {"boost_count": 1}},
}


def message_update(fields: dict[str, object], *, edited: bool = False) -> bytes:
    message = {
        "message_id": 11,
        "date": 1_760_000_000,
        "chat": {"id": -100500, "type": "supergroup", "title": "Team"},
        "from": ALICE_FROM,
        **fields,
    }
    return json.dumps({"update_id": 9, "edited_message" if edited else "message": message}).encode()


@pytest.mark.parametrize("kind", sorted(CONTENT))
def test_every_kind_of_content_decodes_and_says_what_it_is(kind: str) -> None:
    routed = to_router_message(decode_update(message_update(CONTENT[kind])), "OurBot")
    assert isinstance(routed, InboundMessage)
    assert (routed.content_kind, routed.text, routed.user_id) == (kind, None, 42)


def test_the_kinds_are_the_wire_fields() -> None:
    assert set(CONTENT) == set(CONTENT_FIELDS) == set(get_args(ContentKind)) - {"text", "other"}
    assert set(SERVICE) <= set(SERVICE_FIELDS)
    assert set(CONTENT_FIELDS) | set(SERVICE_FIELDS) <= set(Message.__struct_fields__)


def test_a_document_no_longer_fails_the_update() -> None:
    """The issue: ``Expected `null`, got `object` - at `$.message.document``."""
    update = decode_update(message_update(CONTENT["document"]))
    assert update.message is not None
    assert content_kind(update.message) == "document"


def test_a_captioned_photo_keeps_its_caption_as_text_and_says_it_is_a_photo() -> None:
    fields = {
        **CONTENT["photo"],
        "caption": "/new fix what is shown",
        "caption_entities": [{"type": "bot_command", "offset": 0, "length": 4}],
    }
    routed = to_router_message(decode_update(message_update(fields)), "OurBot")
    assert isinstance(routed, InboundMessage)
    assert (routed.content_kind, routed.text) == ("photo", "/new fix what is shown")


def test_a_photo_of_an_album_names_its_album() -> None:
    fields = {**CONTENT["photo"], "media_group_id": "13762390981239"}
    routed = to_router_message(decode_update(message_update(fields)), "OurBot")
    assert isinstance(routed, InboundMessage)
    assert routed.media_group_id == "13762390981239"
    alone = to_router_message(decode_update(message_update(CONTENT["photo"])), "OurBot")
    assert isinstance(alone, InboundMessage)
    assert alone.media_group_id is None


def test_an_edited_photo_is_an_edit() -> None:
    routed = to_router_message(
        decode_update(message_update({**CONTENT["photo"], "caption": "x"}, edited=True)), "OurBot"
    )
    assert isinstance(routed, InboundMessage)
    assert routed.edited
    assert routed.content_kind == "photo"


@pytest.mark.parametrize("kind", sorted(SERVICE))
def test_service_messages_decode_and_are_dropped(kind: str) -> None:
    update = decode_update(message_update(SERVICE[kind]))
    assert update.message is not None
    assert content_kind(update.message) is None
    assert to_router_message(update, "OurBot") is None


def test_text_is_text_and_an_unknown_kind_is_other() -> None:
    text = to_router_message(decode_update(message_update({"text": "hello"})), "OurBot")
    assert isinstance(text, InboundMessage)
    assert (text.content_kind, text.text) == ("text", "hello")
    future = to_router_message(
        decode_update(message_update({"hologram": {"file_id": "x"}})), "OurBot"
    )
    assert isinstance(future, InboundMessage)
    assert (future.content_kind, future.text) == ("other", None)


def test_a_photo_carries_its_largest_size_and_a_document_its_name() -> None:
    photo: dict[str, object] = {
        "photo": [
            {"file_id": "small", "file_unique_id": "a", "width": 90, "height": 67, "file_size": 9},
            {
                "file_id": "big",
                "file_unique_id": "b",
                "width": 1280,
                "height": 960,
                "file_size": 99,
            },
            {"file_id": "mid", "file_unique_id": "c", "width": 320, "height": 240},
        ]
    }
    routed = to_router_message(decode_update(message_update(photo)), "OurBot")
    assert isinstance(routed, InboundMessage)
    assert routed.attachment == Attachment(file_id="big", file_size=99)
    document: dict[str, object] = {
        "document": {
            "file_id": "doc",
            "file_unique_id": "d",
            "file_name": "report.pdf",
            "mime_type": "application/pdf",
            "file_size": 1234,
        }
    }
    routed = to_router_message(decode_update(message_update(document)), "OurBot")
    assert isinstance(routed, InboundMessage)
    assert routed.attachment == Attachment(
        file_id="doc", file_size=1234, file_name="report.pdf", mime_type="application/pdf"
    )


def test_content_without_a_file_or_a_malformed_one_carries_no_attachment() -> None:
    sticker = to_router_message(decode_update(message_update(CONTENT["sticker"])), "OurBot")
    assert isinstance(sticker, InboundMessage)
    assert sticker.attachment is None
    odd = to_router_message(decode_update(message_update({"photo": {"no": "list"}})), "OurBot")
    assert isinstance(odd, InboundMessage)
    assert (odd.content_kind, odd.attachment) == ("photo", None)


OUR_BOT = {"id": 4242, "is_bot": True, "first_name": "Ours", "username": "ourbot"}
BOB_FROM = {"id": 77, "is_bot": False, "first_name": "Bob"}


def replying(replied: dict[str, object], **fields: object) -> RepliedTo | None:
    message = {"message_id": 3, "date": 1, "chat": {"id": -100500, "type": "supergroup"}}
    update = message_update({"text": "and this?", "reply_to_message": message | replied, **fields})
    routed = to_router_message(decode_update(update), "OurBot")
    assert isinstance(routed, InboundMessage)
    return routed.replied_to


@pytest.mark.parametrize(
    ("replied", "fields", "expected"),
    [
        ({"from": OUR_BOT, "text": "the answer"}, {}, RepliedTo(text="the answer", by="bot")),
        (
            {"from": BOB_FROM, "caption": "a photo's words"},
            {},
            RepliedTo(text="a photo's words", by="other", author="Bob"),
        ),
        ({"from": ALICE_FROM, "text": "mine"}, {}, RepliedTo(text="mine", by="self")),
        (  # the user's own forward of Bob's words: Bob's
            {
                "from": ALICE_FROM,
                "forward_origin": {"type": "user", "date": 1, "sender_user": BOB_FROM},
                "text": "rm -rf / please",
            },
            {},
            RepliedTo(text="rm -rf / please", by="other", author="Bob, forwarded"),
        ),
        (
            {"from": BOB_FROM, "text": "a long message"},
            {"quote": {"text": "long", "position": 2}},
            RepliedTo(text="long", by="other", author="Bob"),
        ),
        (
            {"sender_chat": {"id": -1, "type": "channel", "title": "News"}, "text": "posted"},
            {},
            RepliedTo(text="posted", by="other", author="the channel News"),
        ),
        (  # an anonymous admin of a group
            {"sender_chat": {"id": -2, "type": "supergroup", "title": "Dev"}, "text": "hi"},
            {},
            RepliedTo(text="hi", by="other", author="the chat Dev"),
        ),
        ({"text": "no sender"}, {}, RepliedTo(text="no sender", by="other", author="someone")),
        (  # nothing to quote: Codex is told what it cannot see
            {"from": BOB_FROM, "photo": [{"file_id": "p"}]},
            {},
            RepliedTo(text="", kind="photo", by="other", author="Bob"),
        ),
        (
            {"from": OUR_BOT, "document": {"file_id": "d"}, "caption": "report"},
            {},
            RepliedTo(text="report", by="bot"),
        ),
        ({"from": ALICE_FROM, "poll": {"id": "1"}}, {}, RepliedTo(text="", kind="poll", by="self")),
        # A topic's plain message "replies" to the topic's first (service) message.
        (
            {"message_id": 50, "forum_topic_created": {"name": "t"}},
            {"message_thread_id": 50, "is_topic_message": True},
            None,
        ),
        # A supergroup without topics gives a reply the thread id of the message it answers.
        (
            {"message_id": 50, "from": BOB_FROM, "text": "the build fails"},
            {"message_thread_id": 50},
            RepliedTo(text="the build fails", by="other", author="Bob"),
        ),
    ],
)
def test_a_reply_carries_the_text_it_replies_to(
    replied: dict[str, object], fields: dict[str, object], expected: RepliedTo | None
) -> None:
    assert replying(replied, **fields) == expected


def test_a_reply_to_another_chats_message_carries_the_part_quoted() -> None:
    origin = {"type": "channel", "date": 1, "chat": {"id": -5, "type": "channel", "title": "CI"}}
    fields: dict[str, object] = {"text": "fix this", "external_reply": {"origin": origin}}
    update = message_update({**fields, "quote": {"text": "TypeError: x", "position": 0}})
    routed = to_router_message(decode_update(update), "OurBot")
    assert isinstance(routed, InboundMessage)
    assert routed.replied_to == RepliedTo(
        text="TypeError: x", by="external", author="from the channel CI"
    )
    unquoted = to_router_message(decode_update(message_update(fields)), "OurBot")
    assert isinstance(unquoted, InboundMessage)
    assert unquoted.replied_to is None  # nothing of it to pass on


def test_a_command_sent_as_a_reply_carries_nothing() -> None:
    update = message_update(
        {
            "text": "/status",
            "entities": [{"type": "bot_command", "offset": 0, "length": 7}],
            "reply_to_message": {"message_id": 3, "chat": {"id": 1}, "text": "x"},
        }
    )
    routed = to_router_message(decode_update(update), "OurBot")
    assert isinstance(routed, InboundMessage)
    assert (routed.command, routed.replied_to) == ("status", None)


@pytest.mark.parametrize(
    ("fields", "thread_id"),
    [
        ({"message_thread_id": 77, "is_topic_message": True}, 77),
        ({}, None),  # the forum's General topic
    ],
)
def test_a_forum_message_says_its_chat_has_topics(
    fields: dict[str, object], thread_id: int | None
) -> None:
    chat = {"id": -100, "type": "supergroup", "is_forum": True}
    update = message_update({"text": "hi", "from": ALICE_FROM, "chat": chat, **fields})
    routed = to_router_message(decode_update(update), "OurBot")
    assert isinstance(routed, InboundMessage)
    assert (routed.thread_id, routed.forum) == (thread_id, True)
    plain = to_router_message(decode_update(message_update({"text": "hi"})), "OurBot")
    assert isinstance(plain, InboundMessage)
    assert plain.forum is False


@pytest.mark.parametrize(
    ("text", "command", "kept"),
    [
        ("/статус", "статус", None),  # no bot_command entity: Telegram marks Latin names only
        ("/", "", None),
        ("  /Статус  ", "статус", None),
        ("/статус@OurBot", "статус", None),
        ("/etc/passwd", None, "/etc/passwd"),  # a path is a request
        ("/статус please", None, "/статус please"),
    ],
)
def test_a_lone_slash_word_is_a_command_even_without_its_entity(
    text: str, command: str | None, kept: str | None
) -> None:
    routed = to_router_message(decode_update(message_update({"text": text})), "OurBot")
    assert isinstance(routed, InboundMessage)
    assert (routed.command, routed.command_args) == (command, "")
    if kept is not None:
        assert routed.text == kept


def test_a_lone_slash_word_for_another_bot_is_not_ours() -> None:
    update = message_update({"text": "/статус@OtherBot"})
    assert to_router_message(decode_update(update), "OurBot") is None


def test_a_press_carries_the_text_of_its_message() -> None:
    """What a stale question is closed with: the message's text as Telegram gives it."""
    origin = {
        "message_id": 12,
        "date": 1,
        "chat": {"id": 42, "type": "private"},
        "text": "Codex asks to run:\n$ make deploy",
    }
    query = {"id": "q", "from": ALICE_FROM, "chat_instance": "1", "data": "ap:x:a"}
    raw = json.dumps({"update_id": 3, "callback_query": {**query, "message": origin}}).encode()
    routed = to_router_message(decode_update(raw), "OurBot")
    assert isinstance(routed, InboundCallback)
    assert (routed.message_id, routed.message_text) == (12, "Codex asks to run:\n$ make deploy")
    del origin["text"]  # a document's caption, or an inaccessible message
    raw = json.dumps({"update_id": 4, "callback_query": {**query, "message": origin}}).encode()
    bare = to_router_message(decode_update(raw), "OurBot")
    assert isinstance(bare, InboundCallback)
    assert bare.message_text == ""
    assert bare.keyboard == ()


def test_a_press_carries_the_buttons_its_message_shows() -> None:
    """What a press may carry: a URL button has no data, and a row may be empty."""
    markup = {
        "inline_keyboard": [
            [{"text": "✅", "callback_data": "ap:x:a"}, {"text": "⛔", "callback_data": "ap:x:d"}],
            [{"text": "docs", "url": "https://example.com"}],
            [],
        ]
    }
    origin = {"message_id": 12, "date": 1, "chat": {"id": 42, "type": "private"}, "text": "?"}
    query = {"id": "q", "from": ALICE_FROM, "chat_instance": "1", "data": "ap:x:a"}
    message = {**origin, "reply_markup": markup}
    raw = json.dumps({"update_id": 3, "callback_query": {**query, "message": message}}).encode()
    routed = to_router_message(decode_update(raw), "OurBot")
    assert isinstance(routed, InboundCallback)
    assert routed.keyboard == ("ap:x:a", "ap:x:d")


@pytest.mark.parametrize(
    ("fields", "addressed"),
    [
        ({"text": "lunch at noon?"}, False),  # the members' talk
        (
            {"text": "@OurBot fix it", "entities": [{"type": "mention", "offset": 0, "length": 7}]},
            True,
        ),
        (
            {"text": "@bob fix it", "entities": [{"type": "mention", "offset": 0, "length": 4}]},
            False,
        ),
        (
            {"text": "/status", "entities": [{"type": "bot_command", "offset": 0, "length": 7}]},
            True,
        ),
        (
            {
                "text": "and this?",
                "reply_to_message": {
                    "message_id": 3,
                    "chat": {"id": 1},
                    "from": OUR_BOT,
                    "text": "done",
                },
            },
            True,
        ),
        (
            {
                "text": "and this?",
                "reply_to_message": {
                    "message_id": 3,
                    "chat": {"id": 1},
                    "from": BOB_FROM,
                    "text": "hi",
                },
            },
            False,
        ),
        (  # a photo whose caption mentions the bot
            {
                "photo": [{"file_id": "p", "file_unique_id": "u", "width": 1, "height": 1}],
                "caption": "@ourbot look",
                "caption_entities": [{"type": "mention", "offset": 0, "length": 7}],
            },
            True,
        ),
        (  # someone else's words, forwarded: not a mention of the bot by this user
            {
                "text": "@OurBot fix it",
                "entities": [{"type": "mention", "offset": 0, "length": 7}],
                "forward_origin": {"type": "hidden_user", "date": 1, "sender_user_name": "X"},
            },
            False,
        ),
    ],
)
def test_a_group_message_says_whether_it_is_for_the_bot(
    fields: dict[str, object], addressed: bool
) -> None:
    routed = to_router_message(decode_update(message_update(fields)), "OurBot")
    assert isinstance(routed, InboundMessage)
    assert routed.addressed is addressed
    private = json.loads(message_update(fields))
    private["message"]["chat"] = {"id": 42, "type": "private"}
    alone = to_router_message(decode_update(json.dumps(private).encode()), "OurBot")
    assert isinstance(alone, InboundMessage)
    assert alone.addressed  # a private chat is all for the bot
