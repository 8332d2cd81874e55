"""What the doctor says about Telegram's answer to ``getMe``: why it failed and what to do,
and whether the bot's groups would run every word of their allowed members.

Kept apart from `cli.doctor`, which turns these words into its table's rows: they depend only
on the error or the bot's identity and the config, so they read (and test) on their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.errors import (
    TelegramError,
    TelegramRetryAfter,
    TelegramTransientError,
    TelegramUnauthorized,
)

if TYPE_CHECKING:
    from orchestrator.ports import BotIdentity

__all__ = ["group_warning", "telegram_failure"]


def telegram_failure(
    error: TelegramError, url: str, token_source: str, timeout: float
) -> tuple[str, str]:
    """The detail and the fix for a failed ``getMe`` to `url`: which of unreachable, rejected
    token (from `token_source`), wrong URL or a failing server it was."""
    code = error.error_code
    description = error.description
    network_fix = (
        f"check the network, a proxy (HTTPS_PROXY) or firewall, and telegram.api_base_url ({url})"
    )
    if isinstance(error, TelegramUnauthorized):
        detail = "Telegram rejected the token (401 Unauthorized)"
        fix = f"copy the token again from @BotFather (/mybots → API Token) into {token_source}"
    elif isinstance(error, TelegramRetryAfter):
        detail = f"Telegram asks to wait {error.retry_after:g} s (429 Too Many Requests)"
        fix = "run doctor again after that; is another copy of the bot running?"
    elif isinstance(error, TelegramTransientError) and code >= 500:
        detail = f"{url} answered {code} ({description})"
        fix = "the Bot API server is failing: try again later, or check telegram.api_base_url"
    elif isinstance(error, TelegramTransientError) and "timed out" in description:
        detail = f"no answer from {url} within {timeout:g} s ({description})"
        fix = network_fix
    elif isinstance(error, TelegramTransientError):
        detail = f"cannot reach {url} ({description})"
        fix = network_fix
    elif code == 404:
        detail = f"{url} answered 404 Not Found to getMe"
        fix = f"check telegram.api_base_url ({url}) and that the token is the one @BotFather gave"
    else:
        detail = f"Telegram refused getMe: {code} {description}"
        fix = f"check the token and telegram.api_base_url ({url})"
    return detail, fix


def group_warning(me: BotIdentity, group_requests: str) -> tuple[str, str] | None:
    """The detail and the fix when the bot reads every message of its groups (privacy mode
    off) while ``telegram.group_requests`` runs all of them; None otherwise."""
    if not me.can_read_all_group_messages or group_requests != "all":
        return None
    return (
        f"@{me.username} reads every message of its groups (privacy mode off): every message "
        "of an allowed user there runs on Codex",
        'set telegram.group_requests = "addressed" to run only mentions of the bot, replies to '
        "it and commands (or turn privacy mode on with /setprivacy in @BotFather, then add the "
        "bot to the group again)",
    )
