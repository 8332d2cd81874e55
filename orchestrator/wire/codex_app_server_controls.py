"""``codex app-server`` 0.171.0 on the wire: what the chat's controls use beyond a turn.

The chat can add a queued message to the running turn (``turn/steer``), pick a model and a
reasoning effort (``model/list``; the choice goes out with ``turn/start``), read the account's
rate limits (``account/rateLimits/read``, and the ``account/rateLimits/updated`` notification
the server sends after each model response), and stop the commands a turn left running. The
types here are only those; `orchestrator.wire.codex_app_server` registers them with the other
methods (``tests/integration/test_app_server_schema.py`` checks the names against the schema
the pinned binary generates). Decoding is tolerant, as in the rest of the wire.

Measured on Codex 0.171.0: ``turn/steer`` answers ``{"turnId"}`` and appends the input to the
active turn (the model's next request holds it); a wrong ``expectedTurnId`` is refused with
``expected active turn id … but found …``, no active turn with ``no active turn``. A reasoning
effort is a free string advertised per model (``supportedReasoningEfforts``), not an enum.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from orchestrator.ports import ModelChoice, RateLimits, RateLimitWindow

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "ConfigReadParams",
    "ConfigReadResponse",
    "EffortOption",
    "ModelEntry",
    "RateLimitSnapshot",
    "RateLimitsReadParams",
    "RateLimitsReadResponse",
    "RateLimitsUpdatedNotification",
    "SteerInput",
    "TurnSteerParams",
    "TurnSteerResponse",
    "model_choices",
    "rate_limits_of",
]


class _Wire(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Base of what we read: camelCase names, unknown fields ignored."""


class _Params(msgspec.Struct, frozen=True, kw_only=True, rename="camel", omit_defaults=True):
    """Base of what we send: fields left at their default are not sent."""


class SteerInput(_Params, frozen=True, tag_field="type", tag="text"):
    """A text ``UserInput`` (the same shape ``turn/start`` takes)."""

    text: str


class TurnSteerParams(_Params, frozen=True):
    """``turn/steer``: `expected_turn_id` must be the active turn, or the server refuses."""

    thread_id: str
    expected_turn_id: str
    input: list[SteerInput]


class TurnSteerResponse(_Wire, frozen=True):
    turn_id: str = ""


class EffortOption(_Wire, frozen=True):
    reasoning_effort: str = ""
    description: str = ""


class ModelEntry(_Wire, frozen=True):
    """One ``model/list`` entry, as far as the chat's /model and /effort use it."""

    id: str = ""
    model: str = ""
    display_name: str = ""
    is_default: bool = False
    hidden: bool = False
    default_reasoning_effort: str = ""
    supported_reasoning_efforts: list[EffortOption] = []


class RateLimitsReadParams(_Params, frozen=True):
    """``account/rateLimits/read`` (its params may be null; an empty object is the same)."""

    exclude_reset_credit_details: bool | None = None


class _Window(_Wire, frozen=True):
    used_percent: int = 0
    window_duration_mins: int | None = None
    resets_at: int | None = None


class RateLimitSnapshot(_Wire, frozen=True):
    limit_id: str | None = None
    limit_name: str | None = None
    primary: _Window | None = None
    secondary: _Window | None = None


class RateLimitsReadResponse(_Wire, frozen=True):
    rate_limits: RateLimitSnapshot = RateLimitSnapshot()


class RateLimitsUpdatedNotification(_Wire, frozen=True):
    """Sent after each model response, without a thread id; a sparse update (a null window
    does not clear one seen before)."""

    rate_limits: RateLimitSnapshot = RateLimitSnapshot()


class ConfigReadParams(_Params, frozen=True):
    """``config/read``: the effective configuration (which model Codex runs by default)."""

    include_layers: bool | None = None


class _CodexConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The ``Config`` of ``config/read`` (its keys are snake_case, as in config.toml)."""

    model: str | None = None
    model_reasoning_effort: str | None = None


class ConfigReadResponse(_Wire, frozen=True):
    config: _CodexConfig = _CodexConfig()


def model_choices(
    entries: Sequence[ModelEntry], configured: _CodexConfig | None = None
) -> tuple[ModelChoice, ...]:
    """The models a user may pick (hidden ones left out), in the server's order. The model
    of Codex's configuration (`configured`, when it is one of them) is the default, with its
    configured effort: a thread without a model runs that one, not the catalogue's default."""
    model = configured.model if configured else None
    known = model is not None and any(model in (e.id, e.model) for e in entries)
    effort = configured.model_reasoning_effort if configured else None
    return tuple(
        ModelChoice(
            id=entry.id or entry.model,
            name=entry.display_name or entry.id or entry.model,
            is_default=model in (entry.id, entry.model) if known else entry.is_default,
            default_effort=(
                effort
                if known and effort and model in (entry.id, entry.model)
                else entry.default_reasoning_effort
            ),
            efforts=tuple(
                option.reasoning_effort
                for option in entry.supported_reasoning_efforts
                if option.reasoning_effort
            ),
        )
        for entry in entries
        if not entry.hidden and (entry.id or entry.model)
    )


def _window(window: _Window | None) -> RateLimitWindow | None:
    if window is None:
        return None
    return RateLimitWindow(
        used_percent=window.used_percent,
        window_minutes=window.window_duration_mins,
        resets_at=window.resets_at,
    )


def rate_limits_of(snapshot: RateLimitSnapshot, *, previous: RateLimits | None) -> RateLimits:
    """The snapshot as the port says it, merged into `previous` (a sparse update keeps the
    windows it does not carry)."""
    primary = _window(snapshot.primary)
    secondary = _window(snapshot.secondary)
    if previous is not None:
        primary = primary or previous.primary
        secondary = secondary or previous.secondary
    name = snapshot.limit_name or snapshot.limit_id or (previous.name if previous else "")
    return RateLimits(name=name or "", primary=primary, secondary=secondary)
