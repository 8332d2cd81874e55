"""The app-server edge's thread helpers that need no process (the rest runs through
`CodexAppServer` in test_codex_app_server.py)."""

from __future__ import annotations

from orchestrator.edges.codex_app_server_threads import background_note, instructions_preamble
from orchestrator.wire.codex_app_server import BackgroundTerminal


def test_background_note_names_three_commands_and_counts_the_rest() -> None:
    running = [BackgroundTerminal(command=f"sleep {n}") for n in range(5)]
    note = background_note(running)
    assert "`sleep 0`, `sleep 1`, `sleep 2` and 2 more" in note
    assert "The Stop button or /cancel stops them; so do /new, a switch of profile" in note
    one = background_note(running[:1])
    assert "Still running in the background: `sleep 0`. The Stop button or /cancel stops it;" in one


def test_instructions_go_ahead_of_the_prompt() -> None:
    text = instructions_preamble("Be brief.", "Fix the bug")
    assert text.startswith("<developer_instructions>\n")
    assert "Be brief.\n</developer_instructions>\n\nFix the bug" in text
