"""Bot API decoding: tolerant of what Telegram adds, and of bodies nested past the decoder."""

from __future__ import annotations

import msgspec
import pytest

from orchestrator.wire.telegram import (
    MAX_JSON_DEPTH,
    decode_json,
    decode_update,
    decode_update_id,
    prune_json,
)

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
