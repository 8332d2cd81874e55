"""Secret redaction: the one definition of what never leaves the process in clear.

Every text the bot writes outside itself passes through `redact`: log records (the
`orchestrator.logging` filter), trace lines (the tracer) and the ``doctor`` table. It removes
the secrets it is given (the bot token) and anything shaped like a Telegram bot token, ours or
not: httpx puts request URLs, and so the token, into its messages, and a Codex error text can
quote an environment.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["REDACTED", "TOKEN_PATTERN", "redact"]

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
