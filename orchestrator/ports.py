"""The ports: the only ways actors reach Telegram, Codex and the tracer.

Each port is a `Protocol`; the real adapters live in `orchestrator.edges`, tests pass fakes.
Nothing concrete lives here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol, TypeAlias

import msgspec

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import trio

    from orchestrator.messages import (
        ApprovalRequest,
        CodexJob,
        CodexProgress,
        JobOutcome,
        Keyboard,
        TraceRecord,
    )

__all__ = [
    "BotIdentity",
    "CodexPool",
    "ParseMode",
    "PoolStatistics",
    "TelegramApi",
    "TraceEmit",
    "WorkerStatus",
]

ParseMode: TypeAlias = Literal["HTML"] | None


class BotIdentity(msgspec.Struct, frozen=True, kw_only=True):
    """What ``getMe`` says about us; `username` decides which ``/cmd@Name`` is ours."""

    id: int
    username: str
    first_name: str = ""


class TelegramApi(Protocol):
    """The Bot API methods the bot uses. Every method raises `orchestrator.errors.TelegramError`
    subclasses on failure; none of them ever puts the token in an error or a log line.
    """

    async def get_me(self) -> BotIdentity:
        """``getMe``."""
        ...

    async def get_updates(
        self,
        *,
        offset: int | None,
        poll_seconds: int,
        limit: int,
        allowed_updates: Sequence[str],
    ) -> list[msgspec.Raw]:
        """``getUpdates`` long poll; each update is returned undecoded, so the poller can skip
        one that does not decode without losing the rest. The adapter's read timeout is
        `poll_seconds` plus a margin."""
        ...

    async def send_message(
        self,
        chat_id: int,
        text: str,
        *,
        parse_mode: ParseMode = None,
        keyboard: Keyboard = (),
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
        disable_notification: bool = False,
    ) -> int:
        """``sendMessage`` (link previews off); returns the new message id.
        `disable_notification`: the message arrives without a sound (progress)."""
        ...

    async def edit_message_text(
        self,
        chat_id: int,
        message_id: int,
        text: str,
        *,
        parse_mode: ParseMode = None,
        keyboard: Keyboard = (),
    ) -> None:
        """``editMessageText``; an empty `keyboard` removes the buttons."""
        ...

    async def delete_message(self, chat_id: int, message_id: int) -> None:
        """``deleteMessage``."""
        ...

    async def send_chat_action(
        self, chat_id: int, action: str, *, message_thread_id: int | None = None
    ) -> None:
        """``sendChatAction``."""
        ...

    async def send_document(
        self,
        chat_id: int,
        filename: str,
        content: bytes,
        *,
        caption: str = "",
        parse_mode: ParseMode = None,
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
    ) -> int:
        """``sendDocument`` as multipart upload; returns the new message id."""
        ...

    async def answer_callback_query(
        self, callback_query_id: str, *, text: str = "", show_alert: bool = False
    ) -> None:
        """``answerCallbackQuery``."""
        ...

    async def set_my_commands(self, commands: Sequence[tuple[str, str]]) -> None:
        """``setMyCommands`` with (command, description) pairs."""
        ...


class WorkerStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One worker as `/status` and `doctor` show it."""

    worker_id: int
    state: Literal["starting", "idle", "busy", "draining", "dead"]
    threads: int = 0
    rss_mb: float = 0.0
    pid: int | None = None
    conversation: str | None = None


class PoolStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of the worker pool."""

    workers: tuple[WorkerStatus, ...] = ()
    waiting: int = 0
    runs_started: int = 0
    runs_failed: int = 0
    restarts: int = 0


class CodexPool(Protocol):
    """The worker pool as a chat actor uses it (a handle: send-channel clones only)."""

    async def run(
        self,
        job: CodexJob,
        *,
        progress: trio.MemorySendChannel[CodexProgress],
        approvals: trio.MemorySendChannel[ApprovalRequest],
    ) -> JobOutcome:
        """Run `job` and return its outcome.

        Cancelling the caller cancels the run: the worker that served it is killed with its
        whole process tree and replaced; other conversations are untouched.
        """
        ...

    def statistics(self) -> PoolStatistics:
        """The current state of the pool."""
        ...


TraceEmit: TypeAlias = "Callable[[TraceRecord], None]"
"""Hands one record to the tracer without blocking (drops and counts when it is behind)."""
