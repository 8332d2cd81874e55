"""Codex's error messages read for the user: the texts are Codex's own, as measured on 0.153.4
(MCP) and 0.171.0 (app-server) against the mock model."""

from __future__ import annotations

import pytest

from orchestrator.codex_words import (
    CONTEXT_FULL,
    LOGIN_REFUSED,
    RATE_LIMITED,
    CodexError,
    read_codex_error,
)


@pytest.mark.parametrize(
    ("message", "read"),
    [
        (
            "Codex ran out of room in the model's context window. Start a new thread or clear "
            "earlier history before retrying.",
            CONTEXT_FULL,
        ),
        (
            "Unexpected status 401 Unauthorized: mock 401, url: http://127.0.0.1:32843/v1/responses",
            LOGIN_REFUSED,
        ),
        ("unexpected status 401 Unauthorized: Missing bearer authentication", LOGIN_REFUSED),
        ("Exceeded retry limit, last status: 429 Too Many Requests", RATE_LIMITED),
        ("exceeded retry limit, last status: 429", RATE_LIMITED),
        (
            '{"error": {"message": "Invalid value for input: string too long"}}',
            CodexError(
                "The model provider refused the request: Invalid value for input: string too long."
            ),
        ),
        (
            "Quota exceeded. Check your plan and billing details.",
            CodexError(
                "Codex reported an error: Quota exceeded. Check your plan and billing details."
            ),
        ),
        (
            "unexpected status 503 Service Unavailable: down, url: https://api.example.com/v1/r",
            CodexError("Codex reported an error: Unexpected status 503 Service Unavailable: down."),
        ),
        (
            '{"not": "an error body"}',
            CodexError('Codex reported an error: {"not": "an error body"}.'),
        ),
        (
            "stream disconnected before completion: idle timeout waiting for SSE",
            CodexError(
                "The model provider's stream ended before the answer was complete: idle "
                "timeout waiting for SSE."
            ),
        ),
    ],
    ids=[
        "context-window",
        "401-app-server",
        "401-mcp",
        "429-app-server",
        "429-mcp",
        "provider-json",
        "plain-already",
        "url-dropped",
        "other-json",
        "stream-ended",
    ],
)
def test_codex_errors_read_for_the_user(message: str, read: CodexError) -> None:
    assert read_codex_error(message) == read


def test_only_a_full_context_window_ends_the_session() -> None:
    assert not CONTEXT_FULL.thread_fit
    assert LOGIN_REFUSED.thread_fit
    assert RATE_LIMITED.thread_fit
    assert "codex-orchestrator doctor" in LOGIN_REFUSED.words
