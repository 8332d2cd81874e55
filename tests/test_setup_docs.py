"""The setup documents say what the code enforces: the README's steps, .env.example's keys."""

from __future__ import annotations

import re
from pathlib import Path

from dotenv import dotenv_values

REPO = Path(__file__).resolve().parents[1]


def test_env_example_offers_only_what_the_bot_reads() -> None:
    """OPENAI_API_KEY in .env reached no worker, and Codex 0.153.4 ignores it in its
    environment anyway: the login step replaces it."""
    values = dotenv_values(REPO / ".env.example")
    assert list(values) == ["TELEGRAM_BOT_TOKEN"]
    assert "npx -y @openai/codex@0.153.4 login" in (REPO / ".env.example").read_text()


def test_readme_setup_steps() -> None:
    text = (REPO / "README.md").read_text()
    setup = text[text.index("## Setup") : text.index("### Installing as an application")]
    assert "```bash\nuv run codex-orchestrator start\nuv run pytest\n```" in setup
    assert setup.index("uv run codex-orchestrator doctor") < setup.index(
        "uv run codex-orchestrator start"
    )
    assert "npx -y @openai/codex@0.153.4 login" in setup
    assert "@userinfobot" in setup
    assert re.search(r"must not contain the config file, the `.env` file", setup)


def test_every_table_in_the_docs_has_its_header() -> None:
    """A row after a blank line starts a table only under a header and its ``| --- |`` line;
    a paragraph put in the middle of the README's command table once turned its last rows
    into plain text."""
    broken = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        lines = path.read_text(encoding="utf-8").splitlines()
        fenced = False
        for number, line in enumerate(lines):
            fenced ^= line.startswith("```")
            if fenced or not line.startswith("|") or lines[number - 1].startswith("|"):
                continue
            following = lines[number + 1] if number + 1 < len(lines) else ""
            if not re.match(r"\|\s*:?-{3,}", following):
                broken.append(f"{path.name}:{number + 1}: {line[:60]}")
    assert broken == []
