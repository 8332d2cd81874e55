"""Scripting the fake Codex MCP server from tests."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SERVER = Path(__file__).with_name("codex_mcp_server.py")


@dataclass
class FakeCodex:
    """A script for `codex_mcp_server.py` and the argv/env that start it."""

    folder: Path
    rules: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def record_path(self) -> Path:
        return self.folder / "codex-record.jsonl"

    @property
    def pids_path(self) -> Path:
        return self.folder / "codex-pids.txt"

    @property
    def script_path(self) -> Path:
        return self.folder / "codex-script.json"

    def rule(self, match: str, **action: Any) -> FakeCodex:
        self.rules.append({"match": match, **action})
        self.write()
        return self

    def write(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.script_path.write_text(
            json.dumps(
                {
                    "rules": self.rules,
                    "record": str(self.record_path),
                    "pids": str(self.pids_path),
                    **self.options,
                }
            )
        )

    def argv(self) -> tuple[str, ...]:
        self.write()
        return (sys.executable, str(SERVER))

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        self.write()
        import os

        return {**(base or dict(os.environ)), "FAKE_CODEX_SCRIPT": str(self.script_path)}

    def recorded(self) -> list[dict[str, Any]]:
        if not self.record_path.exists():
            return []
        return [json.loads(line) for line in self.record_path.read_text().splitlines()]

    def decisions(self) -> list[Any]:
        return [entry["decision"] for entry in self.recorded() if "decision" in entry]
