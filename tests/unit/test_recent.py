"""`Recent`: the newest entries up to a bound, the oldest forgotten first."""

from __future__ import annotations

from orchestrator.recent import Recent


def test_the_oldest_entry_goes_first_and_a_remembered_key_keeps_its_place() -> None:
    kept = Recent[str, int](2)
    kept.remember("a", 1)
    kept.remember("b", 2)
    kept.remember("a", 3)  # again: still the oldest
    kept.remember("c", 4)
    assert dict(kept) == {"b": 2, "c": 4}
    assert kept.pop("b") == 2
    assert "b" not in kept
