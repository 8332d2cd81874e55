"""Placeholder, replaced by the CLI work."""
def main() -> None:
    print("codex-orchestrator 0.1.0")
