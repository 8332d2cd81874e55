"""What Codex says, in the words of the person in the chat: its errors, and its compactions.

A Codex compaction of a thread (both backends say so in their own ways) becomes the warning
`CONTEXT_COMPACTED`, in the bot's words (/new, not "a new thread").

A turn that fails at the model provider comes back as Codex's text (``codex_error``), the
same on both backends (measured on Codex 0.153.4 and 0.171.0 against the mock model). Most of
it is already in plain words ("Quota exceeded. Check your plan and billing details.", "You've
hit your usage limit … try again at 3:15 PM"), and is shown as it is. This module owns the
few that are not, or that change what the user should do next:

- the context window is full: retrying in the same Codex session fails again, so the
  session is not kept (`CodexError.thread_fit`): the next request starts a fresh one with the
  conversation's summary, which is what Codex itself advises ("Start a new thread");
- 401: the login expired or was revoked, which no retry fixes: say how to log in again;
- 429 after Codex's retries: the provider's rate limit, in words;
- a stream that ended before the answer was complete (an idle timeout, the provider's
  ``response.failed``): said as such, with the provider's reason;
- a refusal whose text is the provider's JSON body: its message, not the JSON;
- and no provider URL (``…, url: https://…/responses``) in any of them.
"""

from __future__ import annotations

import json
import re
from typing import Final, NamedTuple

from orchestrator.words import sentence

__all__ = ["CONTEXT_COMPACTED", "CodexError", "read_codex_error"]

CONTEXT_COMPACTED: Final = (
    "Codex summarised the earlier conversation to fit the model's window, so details from "
    "early on may be lost; /new starts a fresh session"
)
"""The warning a turn shows when Codex compacted its thread (measured on 0.153.4 and 0.171.0
with ``model_auto_compact_token_limit``)."""


class CodexError(NamedTuple):
    """A failure Codex reported, read: `words` say what happened and what to do, in a
    sentence or two; `thread_fit` is False when the Codex session cannot go on (retrying it
    would fail the same way)."""

    words: str
    thread_fit: bool = True


CONTEXT_FULL: Final = CodexError(
    "The conversation has grown too long for the model to read at once (its context window "
    "is full).",
    thread_fit=False,
)

LOGIN_REFUSED: Final = CodexError(
    "The model provider refused Codex's login (401 Unauthorized): it has expired or was "
    "revoked. Log in to Codex again on the bot's machine; `codex-orchestrator doctor` shows "
    "the command."
)

RATE_LIMITED: Final = CodexError(
    "The model provider is limiting how often Codex may ask (429 Too Many Requests), and "
    "Codex's own retries did not get through. Wait a minute before sending it again."
)

_URL: Final = re.compile(r",?\s*url:\s*\S+", re.IGNORECASE)


def read_codex_error(message: str) -> CodexError:
    """What Codex's error `message` means for the user (see the module's docstring)."""
    lowered = message.lower()
    if "context window" in lowered or "context_length_exceeded" in lowered:
        return CONTEXT_FULL
    if "401 unauthorized" in lowered:
        return LOGIN_REFUSED
    if "429 too many requests" in lowered or "last status: 429" in lowered:
        return RATE_LIMITED
    text = _URL.sub("", message).strip()
    head, _, reason = text.partition(":")
    if head.strip().lower() == "stream disconnected before completion":
        why = f": {reason.strip()}" if reason.strip() else ""
        return CodexError(f"The model provider's stream ended before the answer was complete{why}.")
    provider = _provider_message(text)
    if provider is not None:
        return CodexError(f"The model provider refused the request: {sentence(provider)}")
    return CodexError(f"Codex reported an error: {sentence(text)}")


def _provider_message(text: str) -> str | None:
    """The ``error.message`` of a provider's JSON body that Codex passed on as its text."""
    if not text.startswith("{"):
        return None
    try:
        body = json.loads(text)
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    found = error.get("message") if isinstance(error, dict) else None
    return found if isinstance(found, str) and found.strip() else None
