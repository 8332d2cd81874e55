"""How a call to Telegram that keeps failing is reported: at once, then once a minute.

The bot retries Telegram for as long as an outage lasts (getMe at start, the poller's
getUpdates, the sender's replies), every few seconds so that it answers again within seconds
once Telegram is back. One
log line per attempt would then fill the log of a long outage with hundreds of copies of the
same line, so an `Outage` logs the first failure at once (with the delay before the next
try), later ones at most every `OUTAGE_LOG_INTERVAL` seconds (how long it has lasted, how many
attempts, the last error), and the end of the outage once.

An outage ends for all waiting calls at once: the poller's `Outage` tells its end (the first
getUpdates that goes through after failures) to the `Recovery` it shares with the sender,
which wakes every retry that `Recovery.sleep` holds. Without it, a reply backing off towards
``telegram.retry_backoff_max`` (60 s) waited out its pause although Telegram answered again.
The sender's own successes do not tell it: a call that fails for a reason of its own (one
message Telegram keeps refusing with a 5xx) would then be retried after every other call.
"""

from __future__ import annotations

import logging
from typing import Final, final

import trio

from orchestrator.words import plural

__all__ = ["OUTAGE_LOG_INTERVAL", "Outage", "Recovery"]

OUTAGE_LOG_INTERVAL: Final = 60.0
"""Seconds between two log lines about the same outage."""


@final
class Recovery:
    """Where the end of an outage is told (by the poller), and retries wait for it (the
    sender's); one per bot."""

    def __init__(self) -> None:
        self._ended = trio.Event()

    def ended(self) -> None:
        """Telegram answers again: wake every retry waiting in `sleep`."""
        self._ended.set()
        self._ended = trio.Event()

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` before a retry, or less: until an outage ends (`ended`)."""
        with trio.move_on_after(seconds):
            await self._ended.wait()


@final
class Outage:
    """The failures in a row of one call (`call`, e.g. ``getUpdates``), for its log lines;
    `trouble` begins the first line (e.g. "Telegram is not reachable")."""

    def __init__(
        self, logger: logging.Logger, call: str, trouble: str, recovery: Recovery | None = None
    ) -> None:
        self._logger = logger
        self.call = call
        self.trouble = trouble
        self._recovery = recovery
        """Told when the call works again after failures."""
        self.attempts = 0
        """Failed attempts in a row (the backoff's attempt number)."""
        self._began = 0.0
        self._last_logged = 0.0

    def failed(self, error: object, retry_in: float, *, level: int = logging.WARNING) -> None:
        """Count a failed attempt, and log it if it is the first, or the first for a while."""
        now = trio.current_time()
        self.attempts += 1
        if self.attempts == 1:
            self._began = self._last_logged = now
            self._logger.log(level, "%s (%s); retrying in %.1f s", self.trouble, error, retry_in)
            return
        if now - self._last_logged < OUTAGE_LOG_INTERVAL:
            return
        self._last_logged = now
        self._logger.log(
            level,
            "%s still failing after %s over %.0f s (last: %s); retrying in %.1f s",
            self.call,
            plural(self.attempts, "attempt"),
            now - self._began,
            error,
            retry_in,
        )

    def succeeded(self) -> None:
        """The call worked: log the end of an outage, once, and tell the `Recovery`."""
        if self.attempts:
            self._logger.warning(
                "%s works again after %s over %.0f s",
                self.call,
                plural(self.attempts, "failed attempt"),
                trio.current_time() - self._began,
            )
            if self._recovery is not None:
                self._recovery.ended()
        self.attempts = 0
