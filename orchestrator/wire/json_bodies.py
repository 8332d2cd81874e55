"""Bot API bodies decoded whatever a broken proxy, a hostile ``api_base_url`` or a client
with broken UTF-16 puts in them: `decode_json` never lets one bad body stop the poller.

Every Bot API body is decoded with it (`orchestrator.wire.telegram`, the HTTP edge): a body
nested too deep for msgspec's decoder must not crash the poller into a restart loop, and a
body msgspec refuses for one lone surrogate or byte that is not UTF-8 must not be retried
for ever.
"""

from __future__ import annotations

import re
from typing import Final, TypeVar

import msgspec

__all__ = ["MAX_JSON_DEPTH", "decode_json", "mend_text", "prune_json"]

T = TypeVar("T")

MAX_JSON_DEPTH: Final = 64
"""Nesting kept when a body is too deep to decode: Bot API objects nest about ten levels (an
update, its message, the message it replies to, their entities), far below this."""

_JSON_TOKEN: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
"""A JSON string (skipped whole, brackets inside it are text) or one bracket."""


def decode_json(decoder: msgspec.json.Decoder[T], data: bytes | msgspec.Raw) -> T:
    """``decoder.decode(data)``, for bodies of any nesting depth.

    msgspec's decoder recurses once per level of nesting and raises `RecursionError` near the
    interpreter's recursion limit (about a thousand levels, measured). Telegram never sends
    that; a broken proxy or a hostile ``api_base_url`` can. Such a body is decoded again with
    every value deeper than `MAX_JSON_DEPTH` replaced by ``null`` (`prune_json`): the envelope
    and the update ids survive, an update whose own fields were cut fails to decode like any
    malformed update and is skipped, and one with a deep field we do not read is served.

    A body that holds a lone UTF-16 surrogate (``"\\ud800"``, which a client with broken
    UTF-16 can put in a message) or bytes that are not UTF-8 is refused whole by msgspec. It
    is decoded again with each such piece replaced by U+FFFD (`mend_text`): otherwise one bad
    message would make every getUpdates fail, and the poller retry it for ever.

    Raises:
        msgspec.DecodeError: `data` is not valid JSON of the decoder's type.
    """
    try:
        return decoder.decode(data)
    except RecursionError:
        return decode_json(decoder, prune_json(bytes(data), MAX_JSON_DEPTH))
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        raw = bytes(data)
        mended = mend_text(raw)
        if mended == raw:  # nothing to mend: it is malformed
            raise msgspec.DecodeError(str(error)) from None
        return decode_json(decoder, mended)


def mend_text(data: bytes) -> bytes:
    """`data` with bytes that are not UTF-8, and every lone surrogate escape, made U+FFFD.

    Surrogate pairs are kept. Escapes are read left to right, so an escaped backslash before
    ``u`` (``"\\\\ud800"``, the six characters ``\\ud800``) is left alone.
    """
    text = data.decode("utf-8", "replace").encode()
    return _ESCAPE.sub(_mend_escape, text)


_ESCAPE: Final = re.compile(
    rb"\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|.)"
)
_LONE_SURROGATE: Final = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _mend_escape(escape: re.Match[bytes]) -> bytes:
    text = escape.group()
    return rb"\ufffd" if _LONE_SURROGATE.fullmatch(text) else text


def prune_json(data: bytes, max_depth: int) -> bytes:
    """`data` with every array or object nested deeper than `max_depth` replaced by ``null``.

    One iterative pass over the brackets outside strings (no recursion, whatever the depth).
    Invalid JSON stays invalid: the decoder reports it.
    """
    kept: list[bytes] = []
    depth = 0
    copied_to = 0
    cut_at: int | None = None
    for token in _JSON_TOKEN.finditer(data):
        bracket = token.group()
        if bracket[:1] == b'"':
            continue
        if bracket in (b"[", b"{"):
            depth += 1
            if depth == max_depth + 1:
                kept.append(data[copied_to : token.start()])
                cut_at = token.start()
        else:
            if depth == max_depth + 1 and cut_at is not None:
                kept.append(b"null")
                copied_to = token.end()
                cut_at = None
            depth -= 1
    if cut_at is None:
        kept.append(data[copied_to:])
    return b"".join(kept)
