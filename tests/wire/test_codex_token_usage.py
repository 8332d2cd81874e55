"""A Codex call reports its own token usage, not its thread's running total (both backends).

After each model response Codex adds that response's usage (``last``) to the thread's running
total and sends both: once per response on 0.153.4 and 0.171.0, also with rate-limit headers
(measured against the mock model). The figures below follow that rule: a thread whose earlier
turn used 11 in / 7 out, then a turn with two responses; a notification sent again with the
same total (Codex has paths that resend the figures) must add nothing. Pure functions: no I/O,
no clock.
"""

from __future__ import annotations

from typing import Any

import msgspec

from orchestrator.codex_runs import TokenCount
from orchestrator.wire.codex_app_server_turn import TurnTranslator
from orchestrator.wire.codex_mcp import EVENT, TurnEvents
from orchestrator.workflow_types import ContextFill, TokenUsage

EARLIER = TokenUsage(input_tokens=11, cached_input_tokens=0, output_tokens=7, total_tokens=18)
"""The thread's total after its earlier turn (one response)."""

FIRST = TokenUsage(input_tokens=40, cached_input_tokens=8, output_tokens=5, total_tokens=45)
SECOND = TokenUsage(
    input_tokens=60,
    cached_input_tokens=32,
    output_tokens=9,
    reasoning_output_tokens=3,
    total_tokens=69,
)
"""The two responses of this turn."""

OWN = FIRST + SECOND
"""What this turn used: 100 in (40 cached), 14 out, 114 in all."""


def _camel(usage: TokenUsage) -> dict[str, int]:
    return {
        "totalTokens": usage.total_tokens,
        "inputTokens": usage.input_tokens,
        "cachedInputTokens": usage.cached_input_tokens,
        "cacheWriteInputTokens": 0,
        "outputTokens": usage.output_tokens,
        "reasoningOutputTokens": usage.reasoning_output_tokens,
    }


def app_server_usage(total: TokenUsage, last: TokenUsage) -> bytes:
    """A ``thread/tokenUsage/updated`` params, shaped as measured (example 07)."""
    token_usage = {"total": _camel(total), "last": _camel(last), "modelContextWindow": 258400}
    return msgspec.json.encode({"threadId": "t", "turnId": "u", "tokenUsage": token_usage})


def feed_usage(translator: TurnTranslator, *reports: tuple[TokenUsage, TokenUsage]) -> list[Any]:
    out: list[Any] = []
    for total, last in reports:
        out += translator.feed("thread/tokenUsage/updated", app_server_usage(total, last))
    return out


def mcp_token_count(total: TokenUsage | None, last: TokenUsage | None) -> bytes:
    """A ``codex/event`` ``token_count`` params as Codex 0.153.4 sends them (``info`` None:
    a ``token_count`` without figures, only rate limits)."""
    info = None
    if total is not None:
        info = {
            "total_token_usage": total,
            "last_token_usage": last,
            "model_context_window": 258400,
        }
    msg = {"type": "token_count", "info": info, "rate_limits": {"primary": None}}
    return msgspec.json.encode({"msg": msg, "_meta": {"requestId": 2}})


def translate_counts(
    events: TurnEvents, *reports: tuple[TokenUsage | None, TokenUsage]
) -> list[Any]:
    return [events.translate(EVENT.decode(mcp_token_count(*report)).msg) for report in reports]


# app-server


def test_a_turn_on_a_thread_with_an_earlier_total_reports_its_own_responses() -> None:
    translator = TurnTranslator(worker_id=1)
    progress = feed_usage(translator, (EARLIER + FIRST, FIRST), (EARLIER + FIRST + SECOND, SECOND))
    assert progress == [TokenCount(usage=FIRST), TokenCount(usage=OWN)]
    assert translator.usage == OWN  # not the thread's 111 in / 21 out


def test_a_resent_usage_notification_adds_nothing() -> None:
    translator = TurnTranslator(worker_id=1)
    report = (EARLIER + FIRST, FIRST)
    progress = feed_usage(
        translator, report, report, (EARLIER + OWN, SECOND), (EARLIER + OWN, SECOND)
    )
    assert progress == [TokenCount(usage=FIRST), TokenCount(usage=OWN)]
    assert translator.usage == OWN


def test_a_resent_total_with_a_new_estimate_adds_nothing() -> None:
    """Codex re-estimates the context (after a compaction) into ``last`` without a response:
    the total does not move, so nothing was spent."""
    translator = TurnTranslator(worker_id=1)
    estimate = TokenUsage(total_tokens=5000)
    progress = feed_usage(translator, (EARLIER + FIRST, FIRST), (EARLIER + FIRST, estimate))
    assert progress == [TokenCount(usage=FIRST)]
    assert translator.usage == FIRST


def test_calls_on_one_thread_add_up_to_what_the_thread_used() -> None:
    """Three turns of 2, 4 and 5 responses of 11 in / 7 out: 11 calls, 121 in and 77 out
    (adding each turn's running total instead gave 22 + 66 + 121 = 209 in)."""
    response = TokenUsage(input_tokens=11, output_tokens=7, total_tokens=18)
    thread = TokenUsage()
    usages: list[TokenUsage] = []
    for responses in (2, 4, 5):
        translator = TurnTranslator(worker_id=0)
        for _ in range(responses):
            thread += response
            feed_usage(translator, (thread, response), (thread, response))
        usages.append(translator.usage)
    assert [usage.input_tokens for usage in usages] == [22, 44, 55]
    assert sum(usages, TokenUsage()) == TokenUsage(
        input_tokens=121, output_tokens=77, total_tokens=198
    )


# MCP (codex/event token_count)


def test_an_mcp_call_on_a_thread_with_an_earlier_total_reports_its_own_responses() -> None:
    events = TurnEvents(worker_id=2)
    progress = translate_counts(
        events, (EARLIER + FIRST, FIRST), (EARLIER + FIRST + SECOND, SECOND)
    )
    assert progress == [TokenCount(usage=FIRST), TokenCount(usage=OWN)]
    assert events.usage == OWN
    assert events.thread_total == EARLIER + OWN


def test_a_resent_or_empty_token_count_adds_nothing() -> None:
    events = TurnEvents(worker_id=2)
    progress = translate_counts(
        events,
        (None, TokenUsage()),  # rate limits only: no figures
        (FIRST, FIRST),
        (FIRST, FIRST),
        (OWN, SECOND),
        (OWN, SECOND),
    )
    assert progress == [None, TokenCount(usage=FIRST), None, TokenCount(usage=OWN), None]
    assert events.usage == OWN


# how full the context is (both backends: the last response, or a compaction's re-estimate)


def test_the_context_fill_is_the_last_response_or_the_estimate_after_a_compaction() -> None:
    translator = TurnTranslator(worker_id=1, thread_id="t")
    feed_usage(translator, (EARLIER + FIRST, FIRST), (EARLIER + OWN, SECOND))
    assert translator.context == ContextFill(thread_id="t", tokens=69, window=258400)
    feed_usage(translator, (EARLIER + OWN, TokenUsage(total_tokens=5000)))  # compacted
    assert translator.context == ContextFill(thread_id="t", tokens=5000, window=258400)
    assert translator.context.share == "1%"
    assert ContextFill(thread_id="t", tokens=18, window=258400).share == "under 1%"  # not 0
    events = TurnEvents(worker_id=0)
    translate_counts(events, (None, TokenUsage()), (EARLIER + FIRST, FIRST))
    assert events.context == (45, 258400)
    translate_counts(events, (EARLIER + FIRST, TokenUsage(total_tokens=5000)))
    assert events.context == (5000, 258400)
