"""Transitional: the old home of `TokenUsage`, kept only for importers owned by other branches.

The workflow types now live in `orchestrator.workflow_types` and the answer decoders in
`orchestrator.role_answers`. ``orchestrator/messages.py``, ``orchestrator/session_store.py``
and ``orchestrator/edges/codex_mcp.py`` still import `TokenUsage` from here; once they import it
from `orchestrator.workflow_types`, delete this module.
"""

from __future__ import annotations

from orchestrator.workflow_types import TokenUsage

__all__ = ["TokenUsage"]
