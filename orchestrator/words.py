"""Counted nouns for what people read: the chat's texts and the console's lines.

"1 problem(s)" reads as a machine talking; every count the bot shows is spelled out instead.
"""

from __future__ import annotations

__all__ = ["plural"]


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 message``, ``2 messages`` (`words` for an irregular plural)."""
    return f"{count} {word if count == 1 else (words or word + 's')}"
