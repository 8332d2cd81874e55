"""The shell wrapper comes off a reported command only for a real shell: a program that
merely ends in "sh" runs itself, and an approval must show it (or the user approves
``ls -la`` and the agent's ``./setup.sh`` runs)."""

from __future__ import annotations

import shlex

import msgspec
import pytest

from actors.approval_view import approval_view
from orchestrator.wire import codex_app_server, codex_mcp


@pytest.mark.parametrize(
    "argv",
    [
        ["/bin/bash", "-lc", "ls -la"],
        ["bash", "-c", "ls -la"],
        ["/usr/bin/zsh", "-lc", "ls -la"],
        ["sh", "-c", "ls -la"],
    ],
)
def test_a_real_shells_wrapper_comes_off(argv: list[str]) -> None:
    assert codex_mcp.command_text(argv) == "ls -la"
    assert codex_app_server.command_text(shlex.join(argv)) == "ls -la"


@pytest.mark.parametrize(
    "argv",
    [
        ["./setup.sh", "-c", "ls -la"],
        ["/w/.git/hooks/fresh", "-c", "git status"],
        ["publish", "-lc", "ls"],
        ["ssh", "-c", "aes128-ctr"],
        ["/tmp/bash", "-c", "ls"],
    ],
)
def test_a_program_that_only_ends_in_sh_is_shown_whole(argv: list[str]) -> None:
    assert codex_mcp.command_text(argv) == shlex.join(argv)
    assert codex_app_server.command_text(shlex.join(argv)) == shlex.join(argv)


def test_the_approval_shows_the_program_that_runs() -> None:
    params = codex_mcp.ELICITATION.decode(
        msgspec.json.encode(
            {
                "message": "Allow?",
                "codex_elicitation": "exec-approval",
                "codex_command": ["./setup.sh", "-c", "ls -la"],
                "codex_cwd": "/w",
            }
        )
    )
    shown = approval_view(codex_mcp.approval_ask(params, worker_id=0), "/w").text
    assert "$ ./setup.sh -c 'ls -la'" in shown
