"""The threat model is written down where operators read it, and the shipped unit follows it."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_runbook_has_the_threat_model_for_every_actor() -> None:
    text = (REPO / "docs" / "telegram-integration-runbook.md").read_text()
    model = text[text.index("## 7. Threat model") :]
    for who in (
        "an allowed user",
        "a stranger",
        "the agent, sandboxed",
        "the agent, unsandboxed",
        "another local user",
    ):
        assert f"**{who}**" in model, who
    for duty in ("its own user", "token in a file", "outside the bot's folder", "UMask=0077"):
        assert duty in model, duty
    assert "does **not** stop" in model  # the HMAC's limits are stated


def test_the_unit_loads_the_token_as_a_credential_with_a_private_umask() -> None:
    unit = (REPO / "docs" / "codex-orchestrator.service").read_text()
    assert "LoadCredential=telegram_bot_token:" in unit
    assert "UMask=0077" in unit
    assert "\nEnvironmentFile=" not in unit
