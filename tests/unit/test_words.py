"""Words for what people read: counted nouns and texts quoted back on one line."""

from __future__ import annotations

from orchestrator.words import has_visible, one_line, plural


def test_one_line_joins_whitespace_and_cuts_with_an_ellipsis() -> None:
    assert one_line("fix\n  the\tlogin ", 60) == "fix the login"
    assert one_line("abcdefghij", 10) == "abcdefghij"
    assert one_line("abcdefghijk", 10) == "abcdefghi…"
    assert one_line(" \n ", 10) == ""


def test_plural_spells_the_count_out() -> None:
    assert plural(1, "file") == "1 file"
    assert plural(3, "file") == "3 files"
    assert plural(2, "process", "processes") == "2 processes"


def test_has_visible_sees_through_what_is_drawn_as_nothing() -> None:
    for blank in ("", " \n\t", "\u200b\u200c\u200d\u2060", "\u3164", "\u115f\u1160", "\u2800"):
        assert not has_visible(blank), repr(blank)
    assert not has_visible("\u202e\u00a0\u3000\ufeff\x07")
    for text in ("a", "👍", "안녕", "\u200b.", "!", "1"):
        assert has_visible(text), repr(text)
