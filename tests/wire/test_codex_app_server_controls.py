"""The pure parts of the chat controls' wire: the models a user may pick (the configured one
as the default) and rate limits merged from sparse updates."""

from __future__ import annotations

import msgspec

from orchestrator.ports import RateLimits, RateLimitWindow
from orchestrator.wire.codex_app_server_controls import (
    ConfigReadResponse,
    ModelEntry,
    RateLimitsReadResponse,
    RateLimitsUpdatedNotification,
    model_choices,
    rate_limits_of,
)

MODELS = msgspec.json.decode(
    b"""[
    {"id": "gpt-a", "model": "gpt-a", "displayName": "GPT A", "isDefault": true, "hidden": false,
     "defaultReasoningEffort": "low", "description": "",
     "supportedReasoningEfforts": [{"reasoningEffort": "low", "description": ""},
                                   {"reasoningEffort": "high", "description": ""}]},
    {"id": "gpt-b", "model": "gpt-b", "displayName": "gpt-b", "isDefault": false,
     "hidden": false, "defaultReasoningEffort": "medium", "description": "",
     "supportedReasoningEfforts": []},
    {"id": "secret", "model": "secret", "displayName": "", "isDefault": false, "hidden": true,
     "defaultReasoningEffort": "low", "description": "", "supportedReasoningEfforts": []}
]""",
    type=list[ModelEntry],
)


def test_hidden_models_are_left_out_and_the_catalogue_default_stands_alone() -> None:
    choices = model_choices(MODELS)
    assert [(c.id, c.name, c.is_default, c.efforts) for c in choices] == [
        ("gpt-a", "GPT A", True, ("low", "high")),
        ("gpt-b", "gpt-b", False, ()),
    ]


def test_the_configured_model_is_the_default_with_its_configured_effort() -> None:
    config = msgspec.json.decode(
        b'{"config": {"model": "gpt-b", "model_reasoning_effort": "high"}, "origins": {}}',
        type=ConfigReadResponse,
    ).config
    choices = model_choices(MODELS, config)
    assert [(c.id, c.is_default, c.default_effort) for c in choices] == [
        ("gpt-a", False, "low"),
        ("gpt-b", True, "high"),
    ]
    unknown = msgspec.structs.replace(config, model="not-listed")
    assert [c.is_default for c in model_choices(MODELS, unknown)] == [True, False]


def test_rate_limits_merge_sparse_updates() -> None:
    read = msgspec.json.decode(
        b'{"rateLimits": {"limitId": "codex", "primary": {"usedPercent": 40, '
        b'"windowDurationMins": 300, "resetsAt": 1800000000}, "secondary": {"usedPercent": 5}}}',
        type=RateLimitsReadResponse,
    )
    first = rate_limits_of(read.rate_limits, previous=None)
    assert first == RateLimits(
        name="codex",
        primary=RateLimitWindow(used_percent=40, window_minutes=300, resets_at=1800000000),
        secondary=RateLimitWindow(used_percent=5),
    )
    sparse = msgspec.json.decode(
        b'{"rateLimits": {"limitId": null, "primary": {"usedPercent": 41}, "secondary": null}}',
        type=RateLimitsUpdatedNotification,
    )
    merged = rate_limits_of(sparse.rate_limits, previous=first)
    assert merged.primary == RateLimitWindow(used_percent=41)
    assert merged.secondary == first.secondary  # a null window keeps the one seen before
    assert merged.name == "codex"
