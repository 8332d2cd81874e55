"""Every exception the orchestrator raises on purpose, in one hierarchy.

::

    OrchestratorError
    ├── ConfigError                 bad conf.toml / .env: one line naming file, key and fix (exit 2)
    ├── RestartIntensityExceeded    a supervisor gave up on a child (exit 1)
    ├── TelegramError               the Bot API refused or could not be reached
    │   ├── TelegramTransientError  5xx, HTML or bad JSON, timeouts, connection errors: retry
    │   ├── TelegramRetryAfter      429: wait `retry_after` seconds, then retry
    │   ├── TelegramUnauthorized    401: the token is wrong; fatal
    │   ├── TelegramConflict        409: another getUpdates poller or a webhook is active
    │   ├── TelegramForbidden       403: the user blocked the bot or it left the chat
    │   ├── TelegramChatMigrated    400 with migrate_to_chat_id: the group became a supergroup
    │   ├── TelegramBadRequest      any other 400 (`description` says which: not modified, parse...)
    │   └── TelegramFileTooBig      a file to download is larger than the limit (20 MB for bots)
    ├── CodexError                  a Codex worker could not serve a request
    │   ├── WorkerStartError        the MCP server did not start or lacks the codex tools
    │   └── WorkerUnavailable       the worker serving a call died or was retired mid-call
    └── GitError                    git refused a /branch command (its words, for the user)

Cancellation is never an error here: `trio.Cancelled` passes through untouched.
Messages never contain the bot token; adapters build them from descriptions, not URLs.

A failure reaches its handler wrapped in one exception group per nursery it left;
`sole_failure` takes those off and `describe` names what is inside, so a log or a trace
says what failed, never "Exceptions from Trio nursery (1 sub-exception)".
"""

from __future__ import annotations

from typing import final

__all__ = [
    "CodexError",
    "ConfigError",
    "GitError",
    "OrchestratorError",
    "RestartIntensityExceeded",
    "TelegramBadRequest",
    "TelegramChatMigrated",
    "TelegramConflict",
    "TelegramError",
    "TelegramFileTooBig",
    "TelegramForbidden",
    "TelegramRetryAfter",
    "TelegramTransientError",
    "TelegramUnauthorized",
    "WorkerStartError",
    "WorkerUnavailable",
    "describe",
    "sole_failure",
]


class OrchestratorError(Exception):
    """Base of every deliberate error of codex-orchestrator."""


@final
class ConfigError(OrchestratorError):
    """The configuration cannot be used. `str()` is the one line shown to the user.

    Args:
        file: the file at fault (conf.toml or .env), as shown to the user.
        key: the dotted key path (``telegram.allowed_users``), or "" for the whole file.
        problem: what is wrong.
        fix: what to do about it.
    """

    def __init__(self, file: str, key: str, problem: str, fix: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        self.fix = fix
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}. Fix: {fix}")


@final
class RestartIntensityExceeded(OrchestratorError):
    """A child crashed more than `intensity` times within `period` seconds.

    Raised by the supervisor, chained from the child's last error, so the parent nursery
    cancels its siblings (Erlang's escalation).
    """

    def __init__(self, child: str, crashes: int, period: float) -> None:
        self.child = child
        self.crashes = crashes
        self.period = period
        super().__init__(f"{child} crashed {crashes} times within {period:g} s; giving up")


class TelegramError(OrchestratorError):
    """The Bot API answered ``ok: false`` or could not be reached.

    Its text names the code only when there is an error code to name: a timeout (code 0) or
    a malformed body under HTTP 200 is not "Telegram error 0" or "Telegram error 200".

    Args:
        description: Telegram's description (or ours for transport errors), token-free.
        error_code: the HTTP / Bot API error code, 0 for transport errors.
    """

    def __init__(self, description: str, error_code: int = 0) -> None:
        self.description = description
        self.error_code = error_code
        code = f" {error_code}" if error_code >= 400 else ""
        super().__init__(f"Telegram error{code}: {description}")


@final
class TelegramTransientError(TelegramError):
    """5xx, an HTML or malformed body, a timeout or a connection error: retry with backoff."""


@final
class TelegramRetryAfter(TelegramError):
    """429 Too Many Requests: nothing may be sent to that scope for `retry_after` seconds."""

    def __init__(self, description: str, retry_after: float) -> None:
        super().__init__(description, 429)
        self.retry_after = retry_after


@final
class TelegramUnauthorized(TelegramError):
    """401: the bot token is wrong or revoked. Fatal: retrying cannot help."""


@final
class TelegramConflict(TelegramError):
    """409: another process polls getUpdates with this token, or a webhook is set."""


@final
class TelegramForbidden(TelegramError):
    """403: the user blocked the bot, or the bot was removed from the chat."""


@final
class TelegramChatMigrated(TelegramError):
    """400 with ``parameters.migrate_to_chat_id``: resend to `migrate_to_chat_id`."""

    def __init__(self, description: str, migrate_to_chat_id: int) -> None:
        super().__init__(description, 400)
        self.migrate_to_chat_id = migrate_to_chat_id


@final
class TelegramBadRequest(TelegramError):
    """Any other 400; `description` tells which (message is not modified, can't parse ...)."""


@final
class TelegramFileTooBig(TelegramError):
    """A file to download is larger than `limit` bytes (``getFile`` serves bots at most
    20 MB); `size` is its size when Telegram said (0 otherwise)."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"file is too big ({size} bytes, limit {limit})", 400)


class CodexError(OrchestratorError):
    """A Codex worker could not serve a request."""


@final
class WorkerStartError(CodexError):
    """The MCP server did not start, did not initialize, or lacks ``codex``/``codex-reply``."""


@final
class WorkerUnavailable(CodexError):
    """The worker serving a call died, was cancelled or was retired before answering."""


@final
class GitError(OrchestratorError):
    """Git refused (``/branch``); `str()` is git's own message, short enough for a chat."""


def sole_failure(error: BaseException) -> BaseException:
    """`error` without the exception groups of one it travelled in (a nursery adds one)."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def describe(error: BaseException) -> str:
    """``Type: message`` of the failure inside `error`, for logs and traces (not the chat)."""
    failure = sole_failure(error)
    return f"{type(failure).__name__}: {failure}"
