"""Application actors: they import `orchestrator` only."""
