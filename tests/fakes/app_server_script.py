"""Scripting the fake ``codex app-server`` (`tests/fakes/codex_app_server.py`) from tests."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SERVER = Path(__file__).with_name("codex_app_server.py")


@dataclass
class FakeAppServer:
    """A script for the fake app-server and the argv/env that start it."""

    folder: Path
    rules: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def record_path(self) -> Path:
        return self.folder / "app-server-record.jsonl"

    @property
    def pids_path(self) -> Path:
        return self.folder / "app-server-pids.txt"

    @property
    def script_path(self) -> Path:
        return self.folder / "app-server-script.json"

    def rule(self, match: str, **action: Any) -> FakeAppServer:
        self.rules.append({"match": match, **action})
        self.write()
        return self

    def write(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        script = {
            "rules": self.rules,
            "record": str(self.record_path),
            "pids": str(self.pids_path),
            **self.options,
        }
        self.script_path.write_text(json.dumps(script))

    def argv(self) -> tuple[str, ...]:
        self.write()
        return (sys.executable, str(SERVER))

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        self.write()
        return {**(base or dict(os.environ)), "FAKE_APP_SERVER_SCRIPT": str(self.script_path)}

    def recorded(self) -> list[dict[str, Any]]:
        if not self.record_path.exists():
            return []
        return [json.loads(line) for line in self.record_path.read_text().splitlines()]

    def received(self, method: str) -> list[dict[str, Any]]:
        """The messages of `method` the fake received, in order."""
        return [
            entry["received"]
            for entry in self.recorded()
            if entry.get("received", {}).get("method") == method
        ]

    def decisions(self) -> list[Any]:
        return [entry["decision"] for entry in self.recorded() if "decision" in entry]
