"""One row of ``codex-orchestrator doctor``'s table, shared by the doctor's check modules."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["CheckResult", "Status"]

Status = Literal["ok", "warn", "FAIL", "skip"]


class CheckResult(msgspec.Struct, frozen=True, kw_only=True):
    """One row of the doctor's table."""

    check: str
    status: Status
    detail: str = ""
    fix: str = ""
