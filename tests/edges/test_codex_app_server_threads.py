"""The app-server edge's thread helpers that need no process (the rest runs through
`CodexAppServer` in test_codex_app_server.py)."""

from __future__ import annotations

from orchestrator.edges.codex_app_server_threads import instructions_preamble


def test_instructions_go_ahead_of_the_prompt() -> None:
    text = instructions_preamble("Be brief.", "Fix the bug")
    assert text.startswith("<developer_instructions>\n")
    assert "Be brief.\n</developer_instructions>\n\nFix the bug" in text
