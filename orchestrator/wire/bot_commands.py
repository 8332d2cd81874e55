"""Commands and mentions of the bot in a message's text, read from its entities.

The Bot API counts an entity's offset and length in UTF-16 code units, so the text is cut
in UTF-16, not in Python's code points (an emoji before a command shifts it by two).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from orchestrator.wire.telegram import MessageEntity

__all__ = ["mentions", "parse_command", "without_mention"]

_COMMAND_LIKE: Final = re.compile(r"/([^\s/@]*)(?:@(\w+))?")
"""A message that is one word after a slash ("/", "/статус"): meant as a command, though
Telegram marks only Latin letters, digits and ``_`` as one."""


def _utf16_slice(text: str, offset: int, length: int) -> str:
    encoded = text.encode("utf-16-le")
    return encoded[offset * 2 : (offset + length) * 2].decode("utf-16-le", errors="replace")


def _utf16_after(text: str, offset: int) -> str:
    return text.encode("utf-16-le")[offset * 2 :].decode("utf-16-le", errors="replace")


def parse_command(
    text: str, entities: tuple[MessageEntity, ...], bot_username: str
) -> tuple[str, str] | Literal["other_bot"] | None:
    """The command at the start of `text`, if any, as ``(name, arguments)``.

    A ``bot_command`` entity at offset 0 counts, and so does a whole message of one word
    after a slash (`_COMMAND_LIKE`: an unknown command, not a request). ``/cmd@OurBot``
    matches our username case-insensitively; ``/cmd@OtherBot`` returns ``"other_bot"`` (not
    ours: ignore it).
    """
    for entity in entities:
        if entity.type != "bot_command" or entity.offset != 0:
            continue
        token = _utf16_slice(text, entity.offset, entity.length)
        name, _, addressee = token.lstrip("/").partition("@")
        if _another_bot(addressee, bot_username):
            return "other_bot"
        arguments = _utf16_after(text, entity.offset + entity.length).strip()
        return name.lower(), arguments
    alone = _COMMAND_LIKE.fullmatch(text.strip())
    if alone is None:
        return None
    name, addressee = alone.groups()
    if _another_bot(addressee or "", bot_username):
        return "other_bot"
    return name.lower(), ""  # as a request, Codex would run on the word


def _another_bot(addressee: str, bot_username: str) -> bool:
    """Whether ``/cmd@addressee`` names a bot other than us (no addressee: ours)."""
    return bool(addressee) and addressee.lower() != bot_username.lower()


def mentions(text: str, entities: tuple[MessageEntity, ...], bot_username: str) -> bool:
    """Whether `text` mentions the bot (``@OurBot``, any case)."""
    return bool(_our_mentions(text, entities, bot_username))


def _our_mentions(
    text: str, entities: tuple[MessageEntity, ...], bot_username: str
) -> list[tuple[int, int]]:
    """The spans (UTF-16 offset, length) of the ``@OurBot`` mentions in `text`, in order."""
    ours = f"@{bot_username}".lower()
    return sorted(
        (entity.offset, entity.length)
        for entity in entities
        if entity.type == "mention"
        and _utf16_slice(text, entity.offset, entity.length).lower() == ours
    )


def without_mention(text: str, entities: tuple[MessageEntity, ...], bot_username: str) -> str:
    """`text` without the ``@OurBot`` mentions that address the bot in a group (they are not
    part of the request); other mentions stay."""
    spans = _our_mentions(text, entities, bot_username)
    if not spans:
        return text
    encoded = text.encode("utf-16-le")
    space = " ".encode("utf-16-le")
    for offset, length in reversed(spans):
        before, after = encoded[: offset * 2], encoded[(offset + length) * 2 :]
        if (not before or before.endswith(space)) and after.startswith(space):
            after = after[len(space) :]  # one space goes with the mention
        encoded = before + after
    return encoded.decode("utf-16-le", errors="replace").strip()
