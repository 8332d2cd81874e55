"""Words for what people read: the chat's texts and the console's lines.

"1 problem(s)" reads as a machine talking; every count the bot shows is spelled out instead.
A text quoted back (a prompt, a reason, a trace detail) is shown on one line, cut with an
ellipsis; what a user typed is echoed in typographic quotes (`quoted`), never as Python's
``repr`` ('it\'s', '\u202eevil').
"""

from __future__ import annotations

import unicodedata
from typing import Final

__all__ = [
    "DRAWN_AS_NOTHING",
    "echo",
    "git_quoted",
    "has_visible",
    "one_line",
    "plural",
    "quoted",
    "sentence",
]


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 message``, ``2 messages`` (`words` for an irregular plural)."""
    return f"{count} {word if count == 1 else (words or word + 's')}"


def sentence(text: str) -> str:
    """`text` as a sentence: capitalised, ending in one full stop ("" stays "")."""
    text = text.strip().rstrip(".")
    return (text[:1].upper() + text[1:] + ".") if text else ""


def one_line(text: str, limit: int) -> str:
    """`text` with every run of whitespace made one space, cut to `limit` characters (the
    last one an ellipsis when it was cut)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_BIDI_CONTROLS: Final = dict.fromkeys(
    map(ord, "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
)
"""Characters that turn the direction of the text after them: an echo must not let them
reverse the bot's own words around it."""


def echo(text: str, limit: int) -> str:
    """What a user typed, to show inside a sentence of the bot's: on one line, cut to
    `limit`, without direction controls."""
    return one_line(text.translate(_BIDI_CONTROLS), limit)


def quoted(text: str, limit: int = 60) -> str:
    """What a user typed (a name, an argument), echoed back as `echo` does, in “typographic
    quotes”."""
    return f"“{echo(text, limit)}”"


_BLANK_GLYPHS: Final = frozenset("\u115f\u1160\u3164\uffa0\u2800")
"""Letters and symbols drawn as nothing (the Hangul fillers, the blank Braille pattern):
what people type to send an "empty" message."""

DRAWN_AS_NOTHING: Final = _BLANK_GLYPHS | frozenset(
    "\u034f\u17b4\u17b5"  # the combining grapheme joiner, Khmer's inherent vowels
    + "".join(map(chr, range(0x180B, 0x1810)))  # Mongolian variation selectors
    + "".join(map(chr, range(0xFE00, 0xFE10)))  # variation selectors
    + "".join(map(chr, range(0xE0100, 0xE01F0)))  # variation selectors supplement
)
"""Characters drawn as nothing that are letters or marks, not format characters: where an
approval must show them (``te<U+034F>st.sh`` is not ``test.sh``)."""

_UNSEEN_CATEGORIES: Final = frozenset({"Cc", "Cf", "Co", "Cn", "Cs", "Zs", "Zl", "Zp"})
"""Control, format (zero-width, direction marks), private, unassigned and space characters."""


def has_visible(text: str) -> bool:
    """Whether `text` shows anything: a character that is neither white space nor one of
    the characters drawn as nothing (zero-width and direction marks, fillers)."""
    return any(
        not ch.isspace()
        and ch not in _BLANK_GLYPHS
        and unicodedata.category(ch) not in _UNSEEN_CATEGORIES
        for ch in text
    )


_ESCAPES: Final = {
    "\a": "\\a",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\v": "\\v",
    "\f": "\\f",
    "\r": "\\r",
    '"': '\\"',
    "\\": "\\\\",
}


def git_quoted(name: str) -> str:
    """`name` as git writes a path (``core.quotepath=off``: in a patch's header, in
    ``--numstat``): in double quotes with C escapes when it holds a quote, a backslash or a
    control character, else as it is. One style for every name the bot shows from git."""
    if not any(ch in _ESCAPES or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        return name
    escaped = "".join(
        _ESCAPES.get(ch) or (f"\\{ord(ch):03o}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch)
        for ch in name
    )
    return f'"{escaped}"'
