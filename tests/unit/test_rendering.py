"""Rendering and splitting: valid HTML chunks under Telegram's limit that lose nothing."""

from __future__ import annotations

import html.parser
import random
import re
from typing import TYPE_CHECKING

import pytest

from orchestrator import rendering
from orchestrator.rendering import (
    EMPTY_PLACEHOLDER,
    FENCE_CHECK_LIMIT,
    MESSAGE_LIMIT,
    RenderedReply,
    close_open_fence,
    escape_html,
    graphemes,
    render_limit,
    render_markdown,
    render_plain,
    render_reply,
    sanitize_text,
    split_html,
    utf16_length,
    visible_text,
)

if TYPE_CHECKING:
    from collections.abc import Callable

ALLOWED_TAGS = {"b", "i", "s", "u", "code", "pre", "a", "blockquote"}


class _Checker(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in ALLOWED_TAGS, tag
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack, f"unopened </{tag}>"
        assert self.stack.pop() == tag


def assert_well_formed(fragment: str) -> None:
    checker = _Checker()
    checker.feed(fragment)
    checker.close()
    assert checker.stack == [], fragment[-200:]
    # No raw special characters outside tags and entities.
    without_tags = re.sub(r"<[^>]*>", "", fragment)
    assert "<" not in without_tags
    assert ">" not in without_tags
    assert not re.search(r"&(?!(?:amp|lt|gt|quot|#\d+);)", without_tags)


def normalized(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def long_markdown() -> str:
    family = "👨‍👩‍👧‍👦"
    flag = "🇺🇦"
    parts: list[str] = []
    n = 0
    while sum(len(part) for part in parts) < 10_000:
        n += 1
        parts.append(
            f"Paragraph {n}: a < b && c > d, emoji {family} {flag} é (e\u0301) "
            f"and **bold {n}**.\n\n"
        )
        if n % 7 == 0:
            parts.append(f"```python\nif x < {n} and y > 2:\n    print('&amp; {family}')\n```\n\n")
    return "".join(parts)


def test_ten_thousand_characters_split_into_valid_chunks_that_reassemble() -> None:
    markdown = long_markdown()
    assert len(markdown) >= 10_000
    whole = render_markdown(markdown)
    chunks = split_html(whole)
    assert len(chunks) >= 3
    for chunk in chunks:
        assert utf16_length(visible_text(chunk)) <= MESSAGE_LIMIT
        assert_well_formed(chunk)
    assert normalized("".join(visible_text(c) + " " for c in chunks)) == normalized(
        visible_text(whole)
    )
    assert "👨‍👩‍👧‍👦" in visible_text(chunks[0])


def test_no_cut_inside_graphemes_entities_or_tags() -> None:
    family = "👨‍👩‍👧‍👦"
    text = escape_html(("x" * 7 + family + "&<>é\u0301🇺🇦") * 300)
    chunks = split_html(text, limit=97)
    for chunk in chunks:
        assert utf16_length(visible_text(chunk)) <= 97
        assert_well_formed(chunk)
        visible = visible_text(chunk)
        assert not visible.startswith(("\u200d", "\u0301", "\ufe0f"))
        assert not visible.endswith("\u200d")
        # Every flag is a complete pair and every family complete.
        assert visible.count("🇺") == visible.count("🇦")
        assert visible.count("👨") == visible.count("👦")
    assert "".join(visible_text(c) for c in chunks) == visible_text(text)


def test_long_code_block_continues_in_the_next_chunk() -> None:
    code = "\n".join(f"line {n} < {n + 1}" for n in range(800))
    chunks = split_html(render_markdown(f"```\n{code}\n```"))
    assert len(chunks) >= 2
    for chunk in chunks:
        assert chunk.startswith("<pre><code>")
        assert chunk.endswith("</code></pre>")
        assert_well_formed(chunk)
    assert normalized(" ".join(visible_text(c) for c in chunks)) == normalized(code)


def test_a_single_long_word_is_cut_somewhere() -> None:
    chunks = split_html("a" * 10_000)
    assert [len(c) for c in chunks] == [4096, 4096, 1808]


def test_markdown_features() -> None:
    rendered = render_markdown(
        "# Head\n\n**b** _i_ ~~s~~ `x<y` [l](https://e.com/?a=1&b=2) <script>\n\n"
        "- one\n- two\n\n1. first\n2. second\n\n> quoted\n\n```sh\necho '<hi>'\n```\n"
    )
    assert "<b>Head</b>" in rendered
    assert "<b>b</b> <i>i</i> <s>s</s> <code>x&lt;y</code>" in rendered
    assert '<a href="https://e.com/?a=1&amp;b=2">l</a>' in rendered
    assert "&lt;script&gt;" in rendered
    assert "• one\n• two" in rendered
    assert "1. first\n2. second" in rendered
    assert "<blockquote>quoted</blockquote>" in rendered
    assert "<pre><code class=\"language-sh\">echo '&lt;hi&gt;'</code></pre>" in rendered
    assert_well_formed(rendered)


def test_a_list_right_under_its_line_stays_under_it() -> None:
    """Codex's "Files changed:" then "- a.py", as written: no blank line between; a blank
    line in the answer keeps one."""
    assert render_markdown("Files changed:\n- a.py\n- b.py") == "Files changed:\n• a.py\n• b.py"
    assert render_markdown("Steps:\n1. one\n\nDone.") == "Steps:\n1. one\n\nDone."
    assert render_markdown("Files changed:\n\n- a.py") == "Files changed:\n\n• a.py"
    assert render_markdown("# Files\n- a.py") == "<b>Files</b>\n\n• a.py"


def test_unsafe_links_are_not_links() -> None:
    assert "<a" not in render_markdown("[x](javascript:alert(1)) [y](file:///etc/passwd)")


def test_tables_become_preformatted_text() -> None:
    rendered = render_markdown("| a | b |\n|---|---|\n| 1 | <2> |\n")
    assert rendered.startswith("<pre>")
    assert "&lt;2&gt;" in rendered
    assert_well_formed(rendered)


def test_reply_policy_document_and_placeholder() -> None:
    assert render_reply("  \n ", max_chunks=4).chunks == (EMPTY_PLACEHOLDER,)
    # Markup that shows nothing would be an empty sendMessage, which Telegram refuses.
    assert render_reply("```python", max_chunks=4).chunks == (EMPTY_PLACEHOLDER,)
    assert render_reply("<!-- -->", max_chunks=4).chunks != ("",)
    assert render_plain(" \n", max_chunks=4).chunks == ("(empty)",)
    short = render_reply("hello", max_chunks=4)
    assert short.chunks == ("hello",)
    assert short.document is None
    huge = "word " * 20_000
    reply = render_reply(huge, max_chunks=4)
    assert reply.chunks == ()
    assert reply.document == huge.encode()
    assert utf16_length(visible_text(reply.summary)) <= 1024
    assert "attached" in reply.summary
    assert_well_formed(reply.summary)


@pytest.mark.parametrize("render", [render_reply, render_plain])
def test_a_huge_reply_is_attached_after_rendering_only_its_start(
    render: Callable[..., RenderedReply], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Megabytes of markdown took seconds on the event loop; the work is now bounded."""
    seen: list[int] = []
    for name in ("render_markdown", "split_html", "escape_html"):
        real = getattr(rendering, name)

        def spy(text: str, *args: object, real: Callable[..., object] = real) -> object:
            seen.append(len(text))
            return real(text, *args)

        monkeypatch.setattr(rendering, name, spy)
    huge = "Some **bold** text and `code`, [a link](https://example.com).\n\n" * 70_000
    reply = render(huge, max_chunks=4)
    assert len(huge) > 4_000_000
    assert reply.document == huge.encode()
    assert reply.chunks == ()
    assert reply.summary.startswith(("Some bold text", "Some **bold** text"))
    assert seen
    assert max(seen) <= MESSAGE_LIMIT


def test_up_to_the_render_limit_a_reply_is_rendered_whole() -> None:
    """Under the bound nothing changes: markdown that is mostly link targets still fits."""
    link = "[x](https://example.com/" + "p" * 200 + ") "
    markdown = link * (render_limit(1) // len(link))
    reply = render_reply(markdown, max_chunks=1)
    assert reply.document is None
    assert len(reply.chunks) == 1


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("a\x00b\x07c\td\ne", "abc\td\ne"),
        ("x\r\ny\rz", "x\ny\nz"),
        ("bad \ud800 surrogate", "bad \ufffd surrogate"),
        ("c1 \x85 control", "c1  control"),
    ],
)
def test_sanitize(raw: str, clean: str) -> None:
    assert sanitize_text(raw) == clean


def test_plain_fallback_and_graphemes() -> None:
    assert visible_text("<b>a &lt; b</b> &amp; <i>c</i>") == "a < b & c"
    assert list(graphemes("e\u0301👍🏽🇺🇦x")) == ["e\u0301", "👍🏽", "🇺🇦", "x"]
    assert utf16_length("👍") == 2


@pytest.mark.parametrize(
    "markdown",
    [
        "short answer",
        "  **bold** at the edges  \n\n",
        "a list:\n\n- one\n- two 👩‍👩‍👧 🇩🇪\n\n```py\nx = 1 < 2 & 3\n```\n",
        "> quoted `code` and [a link](https://example.com)",
        "x" * (MESSAGE_LIMIT - 1) + "😀",  # exactly at the limit in UTF-16 units
        "\n\n   \n",
    ],
)
def test_the_one_chunk_shortcut_matches_the_full_walk(markdown: str) -> None:
    from orchestrator.rendering import _split_walk

    fragment = render_markdown(markdown)
    assert split_html(fragment) == _split_walk(fragment, MESSAGE_LIMIT)


def test_utf16_length_counts_astral_characters_twice() -> None:
    assert utf16_length("a😀\u00e9") == 4
    assert utf16_length("\ud800") == 1  # a lone surrogate is one unit


def test_the_plain_text_shortcut_agrees_with_markdown_it() -> None:
    """`render_markdown` skips the parse for plain paragraphs with code spans at most: the
    same HTML as markdown-it's, on every kind of text (random ones included: characters, and
    pieces that open markdown's constructs, on one line or several)."""
    rng = random.Random(7)
    alphabet = "ab Z9.,:;'\"()?/%$@{}^-+=#>*_`~[]!<&\\|\t\u00a0é日😀\n"
    pieces = [
        *("word", "é", "😀", ":", "-", "--", "1.", "1)", "=", "#", "> q", "~", "|", ":-:"),
        *("`x`", "`a b`", "`<&>`", "` x`", "`x `", "``", "`", "`|`", "a_b", "*", "\\"),
        *("&amp;", "<b>", "[l](u)", "!", "http://x.y", " ", "  ", "\n", "\n\n", "\n\n\n"),
        *("\n ", "  \n", "\t"),
    ]
    samples = [
        "FAKE-REPLY: c100000 m0",
        "Done. The tests pass (12 of 12).\n\n🧵 `codex resume 019a-bc`",
        "a  b",
        "é ü 日本 😀",
        "x-y+z=w #1 > 0",
        "x `a``b` y",
        *("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(5000)),
        *(
            "".join(rng.choice(pieces) + rng.choice(("", " ")) for _ in range(rng.randint(1, 8)))
            for _ in range(20000)
        ),
    ]
    shortcuts = 0
    for text in samples:
        if rendering._PLAIN_TEXT.fullmatch(text):
            shortcuts += 1
        assert render_markdown(text) == rendering._render_parsed(text), repr(text)
    assert shortcuts > 500
    assert render_markdown("Done.\n\n🧵 `codex resume 1`") == (
        "Done.\n\n🧵 <code>codex resume 1</code>"
    )


def _after_the_last_code_block(html: str) -> str:
    return html[html.rfind("</pre>") + len("</pre>") :] if "</pre>" in html else html


def test_a_fence_the_answer_leaves_open_is_closed_before_the_bot_adds_to_it() -> None:
    """What the bot adds after Codex's answer (the ``codex resume`` line, a note) must not
    show as code when the answer ends inside a fenced block: `close_open_fence` closes it,
    and changes nothing that needs no closing (random texts of fences, lists, quotes and
    indentation, checked against markdown-it's own reading)."""
    rng = random.Random(11)
    pieces = [
        *("```", "````", "~~~", "```py", "``` x", "~~~~", "``", "` ``` `", "   ```", "    ```"),
        *("- ", "1. ", "> ", "  ", "word", "code()", "#", "|a|", "\n", "\n", "\n", "\n\n"),
    ]
    texts = [
        "Here:\n```python\nprint(1)\n",
        "a\n````\nx\n```\n",
        "- item\n  ```\n  code",
        *("".join(rng.choice(pieces) for _ in range(rng.randint(1, 12))) for _ in range(4000)),
    ]
    closed = 0
    for text in texts:
        fixed = close_open_fence(text)
        after = _after_the_last_code_block(render_markdown(fixed + "\n\nEND-MARK"))
        assert "END-MARK" in after, repr(text)
        if "END-MARK" in _after_the_last_code_block(render_markdown(text + "\n\nEND-MARK")):
            assert fixed == text, repr(text)
        else:
            closed += 1
    assert closed > 200
    assert close_open_fence("Here:\n```python\nprint(1)\n") == "Here:\n```python\nprint(1)\n```"
    long = "word " * (FENCE_CHECK_LIMIT // 5) + "\n```\nopen"  # a document: not parsed
    assert close_open_fence(long) is long
