"""Secret redaction: the one definition of what never leaves the process in clear.

Every text the bot writes outside itself passes through `redact`: log records (the
`orchestrator.logging` filter), trace lines (the tracer), the ``doctor`` table, every message
the sender takes in for a chat (`redact_outbound`, before rendering and splitting, so a token
cannot be cut in two across messages), and every session file (the session store). It removes
the secrets it is given (the bot token) and anything shaped like a Telegram bot token, ours or
not: httpx puts request URLs, and so the token, into its messages, and a Codex error text can
quote an environment. What Codex is given (a prompt, a message added to a running turn) passes
through `redact_secrets`, and a file the user sends (saved where Codex reads it) through
`redact_secrets_bytes`: they remove the bot's own secrets only, since a user may paste this
bot's token by mistake, but may also give Codex another bot's token to work with.

A secret is also found in pieces (`_pieces`). The bot id before a token's colon is public, so
its other half is the whole secret: a command that prints only that half (``cut -d: -f2``),
URL-encodes the colon or folds the token over lines must not get it out either, and neither
must a text cut inside the token before it reached this module (a progress line cut at 200
characters). So any run of `PIECE` characters of a secret is redacted, with the word it sits
in, and so is the bot id followed by its colon and whatever token characters follow.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Final, NamedTuple

import msgspec

from orchestrator.messages import AnswerCallback, CloseLive, SendReply, UpdateLive

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from orchestrator.messages import SenderMsg

__all__ = [
    "REDACTED",
    "TOKEN_PATTERN",
    "redact",
    "redact_bytes",
    "redact_outbound",
    "redact_secrets",
    "redact_secrets_bytes",
]

REDACTED: Final = "[REDACTED]"
"""What a secret is replaced with."""

TOKEN_PATTERN: Final = re.compile(r"(?<!\d)\d{5,}:[A-Za-z0-9_-]{30,}(?![A-Za-z0-9_-])")
"""Anything shaped like a bot token (``<bot id>:<35 characters>``), whether or not it is ours,
also where it is glued to a word, as in a ``/bot<token>/getMe`` URL path."""


PIECE: Final = 10
"""Characters of a secret that, found together anywhere, count as the secret (a 10-character
run of a random 35-character token half does not occur by chance)."""

_RUN: Final = re.compile(rf"[A-Za-z0-9_%-]{{{PIECE},}}")
"""A word of token characters long enough to hold a piece (``%`` for an encoded colon)."""


class _Pieces(NamedTuple):
    runs: frozenset[str]
    """Every run of `PIECE` characters of each secret (of a token: of its half after the
    bot id)."""
    ids: tuple[str, ...]
    """The bot ids of the tokens among the secrets."""
    bot_ids: re.Pattern[str] | None
    """A token's bot id with its colon (or ``%3A``) and the token characters after it."""


@functools.lru_cache(maxsize=8)
def _pieces(secrets: tuple[str, ...]) -> _Pieces:
    """What `_without_pieces` looks for, for `secrets` (see the module docstring)."""
    runs: set[str] = set()
    ids = []
    for secret in secrets:
        bot_id, colon, half = secret.partition(":")
        if colon and bot_id.isdigit():
            ids.append(bot_id)
        else:
            half = secret
        runs |= {half[start : start + PIECE] for start in range(len(half) - PIECE + 1)}
    pattern = rf"(?<!\d)(?:{'|'.join(ids)})(?::|%3[Aa])[A-Za-z0-9_-]*" if ids else None
    return _Pieces(frozenset(runs), tuple(ids), re.compile(pattern) if pattern else None)


def _without_pieces(text: str, pieces: _Pieces) -> str:
    """`text` with each word holding a piece of a secret replaced by `REDACTED`: the words
    are found by one scan, and only those long enough are looked into."""

    def piece_of_a_secret(word: re.Match[str]) -> str:
        found = word.group()
        if any(found[at : at + PIECE] in pieces.runs for at in range(len(found) - PIECE + 1)):
            return REDACTED
        return found

    # The scans below cost tens of microseconds per kilobyte; a text without any piece (all
    # but a few) is let through by substring searches at C speed.
    if pieces.bot_ids is not None and any(bot_id in text for bot_id in pieces.ids):
        text = pieces.bot_ids.sub(REDACTED, text)
    if any(run in text for run in pieces.runs):
        text = _RUN.sub(piece_of_a_secret, text)
    return text


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every non-empty secret, every piece of one (`_pieces`) and every
    token-shaped string replaced by `REDACTED`."""
    return TOKEN_PATTERN.sub(REDACTED, redact_secrets(text, secrets))


def redact_secrets(text: str, secrets: Iterable[str]) -> str:
    """`text` with every non-empty secret and every piece of one replaced by `REDACTED`, and
    nothing else: for what Codex is given, where another bot's token may be the user's work
    and only ours must never arrive (a user who pastes it into a message)."""
    secrets = tuple(secret for secret in secrets if secret)
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    if secrets:
        text = _without_pieces(text, _pieces(secrets))
    return text


def redact_bytes(data: bytes, secrets: Iterable[str] = ()) -> bytes:
    """A file's bytes with `redact` applied: as text when it is UTF-8, else byte for byte
    (read as Latin-1, which maps every byte to one character and back: a binary file,
    ``/get`` of an image or a zip, stays intact unless it holds a secret)."""
    return _on_bytes(data, functools.partial(redact, secrets=tuple(secrets)))


def redact_secrets_bytes(data: bytes, secrets: Iterable[str]) -> bytes:
    """A file's bytes with `redact_secrets` applied, read as `redact_bytes` reads them: for a
    file the user sends, which Codex can read in the working directory."""
    return _on_bytes(data, functools.partial(redact_secrets, secrets=tuple(secrets)))


def _on_bytes(data: bytes, redaction: Callable[[str], str]) -> bytes:
    try:
        return redaction(data.decode("utf-8")).encode()
    except UnicodeDecodeError:
        return redaction(data.decode("latin-1")).encode("latin-1")


def redact_outbound(message: SenderMsg, secrets: Iterable[str] = ()) -> SenderMsg:
    """`message` with `redact` applied to every text it would show in a chat."""
    secrets = tuple(secrets)
    match message:
        case SendReply():
            return msgspec.structs.replace(message, markdown=redact(message.markdown, secrets))
        case UpdateLive():
            document = redact_bytes(message.document, secrets) if message.document else b""
            return msgspec.structs.replace(
                message,
                text=redact(message.text, secrets),
                document=document,
                document_caption=redact(message.document_caption, secrets),
            )
        case CloseLive() if message.final_text or message.text_from:
            return msgspec.structs.replace(
                message,
                final_text=redact(message.final_text, secrets) if message.final_text else None,
                text_from=redact(message.text_from, secrets),
                text_to=redact(message.text_to, secrets),
            )
        case AnswerCallback() if message.text:
            return msgspec.structs.replace(message, text=redact(message.text, secrets))
        case _:
            return message
