"""Words for what people read: the chat's texts and the console's lines.

"1 problem(s)" reads as a machine talking; every count the bot shows is spelled out instead.
A text quoted back (a prompt, a reason, a trace detail) is shown on one line, cut with an
ellipsis.
"""

from __future__ import annotations

__all__ = ["one_line", "plural"]


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 message``, ``2 messages`` (`words` for an irregular plural)."""
    return f"{count} {word if count == 1 else (words or word + 's')}"


def one_line(text: str, limit: int) -> str:
    """`text` with every run of whitespace made one space, cut to `limit` characters (the
    last one an ellipsis when it was cut)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
