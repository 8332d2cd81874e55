"""What one ``codex app-server`` process does for the chat's controls, beside its turns.

This module owns, for `orchestrator.edges.codex_app_server.CodexAppServer` (one
`AppServerControls` per process, its ``controls_api``): the login (``account/read``, for
doctor) and doctor's trial of the agent fence, the models it offers (``model/list``, with
the model of its configuration, ``config/read``, as the default) and each model's default
reasoning effort;
the account's rate limits (``account/rateLimits/read``, which needs a ChatGPT login, else the
last ``account/rateLimits/updated`` notification, merged as the sparse update it is); sending a
steer (``turn/steer`` with the running turn's id as ``expectedTurnId``); and the model and
effort a turn is sent with (the chat's /model and /effort; the per-thread bookkeeping is in
`orchestrator.edges.codex_app_server_threads`). The wire types are in
`orchestrator.wire.codex_app_server_controls`.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import TYPE_CHECKING, Final, final

import msgspec

from orchestrator.edges.jsonrpc_lines import Refused
from orchestrator.errors import WorkerUnavailable
from orchestrator.wire.codex_app_server import (
    AccountReadParams,
    AccountReadResponse,
    ModelListParams,
    ModelListResponse,
)
from orchestrator.wire.codex_app_server_controls import (
    ConfigReadParams,
    ConfigReadResponse,
    RateLimitsReadParams,
    RateLimitsReadResponse,
    RateLimitsUpdatedNotification,
    SteerInput,
    TurnSteerParams,
    TurnSteerResponse,
    model_choices,
    rate_limits_of,
)

if TYPE_CHECKING:
    from orchestrator.codex_runs import CodexJob
    from orchestrator.edges.codex_app_server_threads import AppServerThreads
    from orchestrator.edges.jsonrpc_lines import LineRpc
    from orchestrator.ports import ModelChoice, RateLimits, SteerResult

__all__ = ["AppServerControls"]

logger: Final = logging.getLogger(__name__)

_MODELS: Final = msgspec.json.Decoder(ModelListResponse)
_ACCOUNT: Final = msgspec.json.Decoder(AccountReadResponse)
_CONFIG: Final = msgspec.json.Decoder(ConfigReadResponse)
_STEERED: Final = msgspec.json.Decoder(TurnSteerResponse)
_LIMITS: Final = msgspec.json.Decoder(RateLimitsReadResponse)
_LIMITS_UPDATED: Final = msgspec.json.Decoder(RateLimitsUpdatedNotification)


@final
class AppServerControls:
    """The controls of one app-server process (see the module docstring)."""

    def __init__(self, rpc: LineRpc, threads: AppServerThreads, worker_id: int) -> None:
        self._rpc = rpc
        self._threads = threads
        self._worker_id = worker_id
        self._rate_limits: RateLimits | None = None
        """As the last read or ``account/rateLimits/updated`` said them."""
        self._default_efforts: dict[str, str] = {}
        """Model → its default reasoning effort (``model/list``), once needed."""

    def rate_limits_updated(self, params: bytes) -> None:
        """An ``account/rateLimits/updated`` notification (no thread id; after each response)."""
        with suppress(msgspec.DecodeError):
            snapshot = _LIMITS_UPDATED.decode(params).rate_limits
            self._rate_limits = rate_limits_of(snapshot, previous=self._rate_limits)

    async def read_account(self) -> AccountReadResponse:
        """``account/read``: the login Codex uses (doctor). Raises `Refused`,
        `WorkerUnavailable` or `msgspec.DecodeError`."""
        return _ACCOUNT.decode(await self._rpc.result("account/read", AccountReadParams()))

    async def try_fence(self, cwd: str) -> str | None:
        """The agent fence tried in `cwd` (doctor): `AppServerThreads.try_fence`."""
        return await self._threads.try_fence(cwd)

    async def list_models(self) -> list[str]:
        """``model/list``: the model ids this Codex offers (doctor)."""
        raw = await self._rpc.result("model/list", ModelListParams(limit=100))
        return [model.id or model.model for model in _MODELS.decode(raw).data]

    async def models(self) -> tuple[ModelChoice, ...]:
        """The models on offer (``()`` when refused), the configured one as the default."""
        configured = None
        with suppress(Refused, msgspec.DecodeError):
            raw = await self._rpc.result("config/read", ConfigReadParams())
            configured = _CONFIG.decode(raw).config
        with suppress(Refused, msgspec.DecodeError):
            raw = await self._rpc.result("model/list", ModelListParams(limit=100))
            choices = model_choices(_MODELS.decode(raw).data, configured)
            self._default_efforts.update(
                {choice.id: choice.default_effort for choice in choices if choice.default_effort}
            )
            return choices
        return ()

    async def rate_limits(self) -> RateLimits | None:
        """The account's rate limits; None when no window is reported."""
        with suppress(Refused, msgspec.DecodeError):
            raw = await self._rpc.result("account/rateLimits/read", RateLimitsReadParams())
            snapshot = _LIMITS.decode(raw).rate_limits
            self._rate_limits = rate_limits_of(snapshot, previous=self._rate_limits)
        limits = self._rate_limits
        if limits is None or (limits.primary is None and limits.secondary is None):
            return None
        return limits

    async def steer(self, thread_id: str, turn_id: str, text: str) -> SteerResult:
        """``turn/steer`` onto `turn_id`: "ended" when the server refuses (the turn is over,
        or another one runs)."""
        params = TurnSteerParams(
            thread_id=thread_id, expected_turn_id=turn_id, input=[SteerInput(text=text)]
        )
        try:
            steered = _STEERED.decode(await self._rpc.result("turn/steer", params))
        except (Refused, msgspec.DecodeError, WorkerUnavailable) as error:
            logger.info("worker %d: steer refused (%s)", self._worker_id, error)
            return "ended"
        return "added" if steered.turn_id == turn_id else "ended"

    async def turn_settings(self, thread_id: str, job: CodexJob) -> tuple[str | None, str | None]:
        """The model and effort to send with the turn of `job` on `thread_id` (None: keep the
        thread's); the models' default efforts are fetched once an effort is in play."""
        if (job.effort or self._threads.overridden(thread_id)) and not self._default_efforts:
            await self.models()
        return self._threads.turn_settings(thread_id, job, self._default_efforts)
