"""Process-wide logging: stdout, ISO-8601 timestamps, and no secret ever written.

Every line starts with an ISO-8601 UTC timestamp (a feature of the original product), then
the level and the logger name. A `RedactingFilter` on the handler scrubs the bot token — and
anything shaped like a Telegram token (`orchestrator.redaction`) — from the message, its
arguments and the formatted traceback: httpx logs request URLs, and the URL holds the token.
httpx and httpcore are also turned down to WARNING, so their per-request lines never appear.
"""

from __future__ import annotations

import datetime
import logging
import math
import sys
from typing import TYPE_CHECKING, Final, final

import trio

from orchestrator.redaction import redact

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import TextIO

__all__ = ["IsoFormatter", "RedactingFilter", "SaidOnce", "ThrottledWarning", "configure_logging"]

QUIET_LOGGERS: Final = ("httpx", "httpcore", "hpack", "mcp")
"""Libraries whose INFO lines are noise or carry URLs."""

LINE_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@final
class RedactingFilter(logging.Filter):
    """Rewrites each record so that its message and traceback contain no secret.

    The record's message is formatted here (args merged) and the exception text rendered
    and scrubbed, so handlers downstream only ever see clean text.
    """

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = tuple(secret for secret in secrets if secret)

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub `record` in place; never drops it."""
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = None
        if record.exc_info:
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info), self.secrets)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True


@final
class IsoFormatter(logging.Formatter):
    """Formats ``asctime`` as ISO 8601 in UTC with milliseconds: ``2026-11-25T02:10:00.123Z``."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """The record's creation time in ISO 8601 (UTC)."""
        moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def configure_logging(
    level: str, *, secrets: Sequence[str] = (), stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record to `stream` (stdout) with timestamps and secrets scrubbed.

    Replaces the root logger's handlers, so calling it again (tests) does not duplicate lines.

    Returns:
        The installed handler.
    """
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(IsoFormatter(LINE_FORMAT))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler


@final
class ThrottledWarning:
    """One kind of repeated warning: written at once, then at most once per `interval`
    seconds, saying how many were held back. A worker that prints garbage on every line must
    not write a WARNING per line. Time comes from trio: call it inside a run."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self._logger = logger
        self._interval = interval
        self._next = -math.inf
        self._held = 0

    def warning(self, message: str, *args: object) -> None:
        now = trio.current_time()
        if now < self._next:
            self._held += 1
            return
        if self._held:
            message += " (%d more like it were not logged in the last %g s)"
            args = (*args, self._held, self._interval)
        self._held = 0
        self._next = now + self._interval
        self._logger.warning(message, *args)


@final
class SaidOnce:
    """Texts logged already: each at its own level the first time, at DEBUG after (what
    Codex says again at every worker's start, a failure its retries meet again). At most
    `kept` are remembered, so that weeks of distinct texts cannot grow the set; once full it
    starts over, and a text may come once more at its level."""

    def __init__(self, kept: int) -> None:
        self._kept = kept
        self._said: set[str] = set()

    def level(self, text: str, first: int) -> int:
        """`first` for a `text` not logged before, else DEBUG."""
        if text in self._said:
            return logging.DEBUG
        if len(self._said) >= self._kept:
            self._said.clear()
        self._said.add(text)
        return first
