"""Secret redaction: the one definition of what never leaves the process in clear.

Every text the bot writes outside itself passes through `redact`: log records (the
`orchestrator.logging` filter), trace lines (the tracer), the ``doctor`` table, every message
the sender takes in for a chat (`redact_outbound`, before rendering and splitting, so a token
cannot be cut in two across messages), and every session file (the session store). It removes
the secrets it is given (the bot token) and anything shaped like a Telegram bot token, ours or
not: httpx puts request URLs, and so the token, into its messages, and a Codex error text can
quote an environment.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

import msgspec

from orchestrator.messages import AnswerCallback, CloseLive, SendReply, UpdateLive

if TYPE_CHECKING:
    from collections.abc import Iterable

    from orchestrator.messages import SenderMsg

__all__ = ["REDACTED", "TOKEN_PATTERN", "redact", "redact_bytes", "redact_outbound"]

REDACTED: Final = "[REDACTED]"
"""What a secret is replaced with."""

TOKEN_PATTERN: Final = re.compile(r"(?<!\d)\d{5,}:[A-Za-z0-9_-]{30,}(?![A-Za-z0-9_-])")
"""Anything shaped like a bot token (``<bot id>:<35 characters>``), whether or not it is ours,
also where it is glued to a word, as in a ``/bot<token>/getMe`` URL path."""


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every non-empty secret and every token-shaped string replaced by `REDACTED`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return TOKEN_PATTERN.sub(REDACTED, text)


_TOKEN_BYTES: Final = re.compile(TOKEN_PATTERN.pattern.encode())


def redact_bytes(data: bytes, secrets: Iterable[str] = ()) -> bytes:
    """A file's bytes with `redact` applied: as text when it is UTF-8, else byte for byte (a
    binary file, ``/get`` of an image or a zip, stays intact unless it holds a secret)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        for secret in secrets:
            if secret:
                data = data.replace(secret.encode(), REDACTED.encode())
        return _TOKEN_BYTES.sub(REDACTED.encode(), data)
    return redact(text, secrets).encode()


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
        case CloseLive() if message.final_text:
            return msgspec.structs.replace(message, final_text=redact(message.final_text, secrets))
        case AnswerCallback() if message.text:
            return msgspec.structs.replace(message, text=redact(message.text, secrets))
        case _:
            return message
