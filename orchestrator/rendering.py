"""Codex's markdown → Telegram HTML, split into messages Telegram accepts.

This module owns what a reply looks like in the chat:

- `render_markdown` parses with markdown-it-py (CommonMark plus tables and strikethrough) and
  emits only tags Telegram's HTML parse mode accepts: ``b i s code pre a blockquote``.
  Code blocks become ``<pre><code class="language-x">``; lists, headings, rules and tables
  become text; raw HTML in the markdown is shown, escaped, never interpreted.
- `split_html` cuts the HTML into chunks of at most `MESSAGE_LIMIT` UTF-16 units of visible
  text (how Telegram counts, after entity parsing), preferring paragraph, then line, then
  word boundaries, and never cutting inside a tag, an entity, a surrogate pair or a grapheme
  cluster. Tags open at a cut are closed at the end of the chunk and reopened at the start of
  the next one, so every chunk is valid HTML on its own.
- `render_reply` adds the policy: sanitise, render, split; too many chunks → one ``.md``
  document with a short summary; empty output → a placeholder. `render_plain` is the same
  for text sent without markup. Both bound their work (`RENDER_LIMIT_FACTOR`): they run on
  the event loop.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import TYPE_CHECKING, Final

import msgspec
from markdown_it import MarkdownIt

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "CAPTION_LIMIT",
    "EMPTY_PLACEHOLDER",
    "FENCE_CHECK_LIMIT",
    "MESSAGE_LIMIT",
    "RENDER_LIMIT_FACTOR",
    "RenderedReply",
    "close_open_fence",
    "escape_html",
    "render_limit",
    "render_markdown",
    "render_plain",
    "render_reply",
    "sanitize_text",
    "split_html",
    "utf16_length",
    "visible_text",
]

MESSAGE_LIMIT: Final = 4096
"""Telegram's limit on a message's text, in UTF-16 units after entity parsing."""

CAPTION_LIMIT: Final = 1024
"""Telegram's limit on a document's caption, in the same units."""

SUMMARY_CHARS: Final = 600
"""Visible characters of a long reply shown as the caption of its ``.md`` document."""

EMPTY_PLACEHOLDER: Final = "<i>(no output)</i>"

RENDER_LIMIT_FACTOR: Final = 2
"""A reply longer than ``max_chunks * MESSAGE_LIMIT * RENDER_LIMIT_FACTOR`` characters goes
to a document without being rendered. Rendering and splitting are pure Python on the event
loop, about 2.4 s per megabyte of markdown (measured): a huge reply stalled every chat that
long. Markdown that long cannot fit in `max_chunks` messages unless more than half of it is
markup (link targets, syntax), so the result is the same as rendering it first; the cost is
bounded by the operator's ``telegram.max_chunks`` (32 K characters, a few ms, by default)."""

_MARKDOWN: Final = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
_SAFE_LINK: Final = re.compile(r"^(https?://|tg://)", re.IGNORECASE)
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATE: Final = re.compile(r"[\ud800-\udfff]")
_ATOM: Final = re.compile(r"<[^>]*>|&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);|[^<&]+|[<&]")
_TAG_NAME: Final = re.compile(r"^</?\s*([a-zA-Z-]+)")
_CODE_SPAN: Final = re.compile(r"`[^`\s|](?:[^`\n|]*[^`\s|])?`(?!`)")
"""A code span CommonMark reads as we do: one backtick each side, no backtick, newline or
pipe inside, no space at either end of its content (which CommonMark would strip), and not
followed by another backtick (```a``b``` is one span to CommonMark)."""
_PLAIN_LINE: Final = (
    r"[^\s\d\-+=#>*_`~\[\]!<&\\|]"  # no block marker first
    r"(?:(?![\n\r\t\f\v])[^`*_~\[\]!<>&\\|]|" + _CODE_SPAN.pattern + r")*"  # text, code spans
    r"(?<=\S)"  # no whitespace at the end
)
_PLAIN_TEXT: Final = re.compile(_PLAIN_LINE + r"(?:\n\n?" + _PLAIN_LINE + r")*")
"""Paragraphs of lines that CommonMark leaves as they are but for their code spans: each
line starts with no block marker (list, heading, quote, rule, fence, indented code, HTML,
reference, setext underline), holds none of the characters that open another inline
construct (emphasis, links, HTML, entities, escapes, tables) outside its code spans, and has
no whitespace at either end; lines are joined by one newline (a soft break) or a blank line
(a new paragraph), which the rendering keeps as they are."""


class RenderedReply(msgspec.Struct, frozen=True, kw_only=True):
    """A reply ready to send: either `chunks` of HTML, or a `document` with a `summary`."""

    chunks: tuple[str, ...] = ()
    document: bytes | None = None
    summary: str = ""


def escape_html(text: str) -> str:
    """Escape ``& < >`` for Telegram HTML text (quotes stay: they are only special in
    attributes, which `_attribute` escapes)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attribute(text: str) -> str:
    return escape_html(text).replace('"', "&quot;")


def sanitize_text(text: str) -> str:
    """Drop control characters (except tab and newline) and replace lone surrogates."""
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return _SURROGATE.sub("\ufffd", text)


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, the unit Telegram counts in."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def visible_text(fragment: str) -> str:
    """The text a user sees for an HTML fragment: tags removed, entities decoded.

    Also the plain text the sender resends when Telegram refuses our HTML ("can't parse
    entities").
    """
    return html.unescape(re.sub(r"<[^>]*>", "", fragment))


# --------------------------------------------------------------------------- rendering


def render_markdown(markdown: str) -> str:
    """Render Codex's markdown as Telegram HTML (see the module docstring)."""
    if _PLAIN_TEXT.fullmatch(markdown):
        # Plain paragraphs with code spans at most, as a short answer with its `codex resume`
        # line is: markdown-it would return them as they are, the spans in <code> (its parse
        # alone took 0.2 ms of every such reply, bench/overhead.py);
        # tests/unit/test_rendering.py checks the two agree.
        return _CODE_SPAN.sub(_code, markdown) if "`" in markdown else markdown
    return _render_parsed(markdown)


def close_open_fence(markdown: str) -> str:
    """`markdown` with the fenced code block it leaves open at its end closed, so that what
    the bot adds after an answer (the files changed, the time taken, the ``codex resume``
    line, a note) does not show as code: CommonMark runs an unclosed fence to the end of the
    document. A fence inside a list or a quote is closed by the blank line before the
    addition, and is left alone. A text longer than `FENCE_CHECK_LIMIT` is left as it is: the
    parse would cost the event loop a quarter of a second at 200 KB, and such an answer goes
    out as a document, unrendered, anyway."""
    if len(markdown) > FENCE_CHECK_LIMIT or ("```" not in markdown and "~~~" not in markdown):
        return markdown
    blocks = [token for token in _MARKDOWN.parse(markdown) if token.level == 0 and token.block]
    last = blocks[-1] if blocks else None
    if last is None or last.type != "fence" or last.map is None:
        return markdown
    start, end = last.map
    closing = _CLOSING_FENCE.fullmatch(markdown.split("\n")[end - 1]) if end - 1 > start else None
    if closing and closing[1][0] == last.markup[0] and len(closing[1]) >= len(last.markup):
        return markdown
    return f"{markdown.rstrip()}\n{last.markup}"


FENCE_CHECK_LIMIT: Final = 4 * MESSAGE_LIMIT * RENDER_LIMIT_FACTOR
"""Characters of an answer `close_open_fence` reads at most: the length beyond which a reply
of the default `telegram.max_chunks` (4) is sent as a document without being rendered."""

_CLOSING_FENCE: Final = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*")
"""A line that may close a fence (CommonMark: the opening's character, at least as many)."""


def _code(span: re.Match[str]) -> str:
    return f"<code>{escape_html(span.group()[1:-1])}</code>"


def _render_parsed(markdown: str) -> str:
    tokens = _MARKDOWN.parse(markdown)
    out: list[str] = []
    lists: list[list[int]] = []  # per open list: [next number] or [] for bullets
    index = 0
    while index < len(tokens):
        token = tokens[index]
        kind = token.type
        if kind == "paragraph_close" or kind == "heading_close":
            if kind == "heading_close":
                out.append("</b>")
            tight = _in_tight_list(token, lists) or _list_follows_at_once(tokens, index)
            out.append("\n" if tight else "\n\n")
        elif kind == "heading_open":
            out.append("<b>")
        elif kind == "inline":
            out.append(_render_inline(token.children or []))
        elif kind in ("bullet_list_open", "ordered_list_open"):
            start = int(token.attrGet("start") or 1) if kind == "ordered_list_open" else 0
            lists.append([start] if kind == "ordered_list_open" else [])
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
            if not lists:
                out.append("\n")
        elif kind == "list_item_open":
            indent = "   " * (len(lists) - 1)
            current = lists[-1] if lists else []
            if current:
                out.append(f"{indent}{current[0]}. ")
                current[0] += 1
            else:
                out.append(f"{indent}• ")
        elif kind == "blockquote_open":
            out.append("<blockquote>")
        elif kind == "blockquote_close":
            _trim_trailing_newlines(out)
            out.append("</blockquote>\n\n")
        elif kind in ("fence", "code_block"):
            language = (token.info or "").strip().split(" ")[0]
            attribute = f' class="language-{_attribute(language)}"' if language else ""
            code = escape_html(token.content.rstrip("\n"))
            out.append(f"<pre><code{attribute}>{code}</code></pre>\n\n")
        elif kind == "hr":
            out.append("──────────\n\n")
        elif kind == "html_block":
            out.append(escape_html(token.content.rstrip("\n")) + "\n\n")
        elif kind == "table_open":
            table_rows: list[list[str]] = []
            index = _collect_table(tokens, index, table_rows)
            out.append(_render_table(table_rows))
            continue
        index += 1
    _trim_trailing_newlines(out)
    return "".join(out)


def _in_tight_list(token: object, lists: list[list[int]]) -> bool:
    return bool(lists) and bool(getattr(token, "hidden", False))


def _list_follows_at_once(tokens: list, index: int) -> bool:  # type: ignore[type-arg]
    """Whether the paragraph closed at `index` is followed by a list on its very next line
    ("Files changed:" then "- a.py"): the list stays under it, as written, with no blank
    line between (a blank line in the source keeps one)."""
    following = tokens[index + 1] if index + 1 < len(tokens) else None
    if following is None or following.type not in ("bullet_list_open", "ordered_list_open"):
        return False
    opening = tokens[index - 2] if index >= 2 else None  # paragraph_open, inline, close
    return (
        opening is not None
        and opening.type == "paragraph_open"
        and opening.map is not None
        and following.map is not None
        and opening.map[1] == following.map[0]
    )


def _trim_trailing_newlines(out: list[str]) -> None:
    while out and out[-1].endswith("\n"):
        stripped = out[-1].rstrip("\n")
        if stripped:
            out[-1] = stripped
            return
        out.pop()


def _collect_table(tokens: list, index: int, rows: list[list[str]]) -> int:  # type: ignore[type-arg]
    """Read a table's cells as plain text; return the index after ``table_close``."""
    row: list[str] = []
    while index < len(tokens):
        token = tokens[index]
        if token.type == "tr_open":
            row = []
        elif token.type == "tr_close":
            rows.append(row)
        elif token.type == "inline":
            row.append(visible_text(_render_inline(token.children or [])))
        elif token.type == "table_close":
            return index + 1
        index += 1
    return index


def _render_table(rows: list[list[str]]) -> str:
    if not rows:
        return ""
    columns = max(len(row) for row in rows)
    widths = [max(len(row[c]) if c < len(row) else 0 for row in rows) for c in range(columns)]
    lines = []
    for number, row in enumerate(rows):
        cells = [(row[c] if c < len(row) else "").ljust(widths[c]) for c in range(columns)]
        lines.append(" | ".join(cells).rstrip())
        if number == 0:
            lines.append("-+-".join("-" * width for width in widths))
    return f"<pre>{escape_html(chr(10).join(lines))}</pre>\n\n"


def _render_inline(children: list) -> str:  # type: ignore[type-arg]
    out: list[str] = []
    links: list[bool] = []
    for child in children:
        kind = child.type
        if kind == "text":
            out.append(escape_html(child.content))
        elif kind == "code_inline":
            out.append(f"<code>{escape_html(child.content)}</code>")
        elif kind in ("softbreak", "hardbreak"):
            out.append("\n")
        elif kind == "strong_open":
            out.append("<b>")
        elif kind == "strong_close":
            out.append("</b>")
        elif kind == "em_open":
            out.append("<i>")
        elif kind == "em_close":
            out.append("</i>")
        elif kind == "s_open":
            out.append("<s>")
        elif kind == "s_close":
            out.append("</s>")
        elif kind == "link_open":
            href = str(child.attrGet("href") or "")
            safe = bool(_SAFE_LINK.match(href))
            links.append(safe)
            if safe:
                out.append(f'<a href="{_attribute(href)}">')
        elif kind == "link_close":
            if links.pop():
                out.append("</a>")
        elif kind == "image":
            out.append(escape_html(child.content or str(child.attrGet("src") or "")))
        elif kind == "html_inline":
            out.append(escape_html(child.content))
        else:
            out.append(escape_html(child.content or ""))
    return "".join(out)


# --------------------------------------------------------------------------- splitting


def _is_extender(char: str) -> bool:
    """Whether `char` belongs to the grapheme cluster before it."""
    code = ord(char)
    return (
        unicodedata.combining(char) != 0
        or unicodedata.category(char) in ("Mn", "Me", "Mc")
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0x1F3FB <= code <= 0x1F3FF  # skin tones
        or 0xE0020 <= code <= 0xE007F  # tag characters (subdivision flags)
        or code == 0x20E3  # keycap
        or code == 0x200D  # zero-width joiner
    )


def _is_regional(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def graphemes(text: str) -> Iterator[str]:
    """Approximate extended grapheme clusters: base + marks, ZWJ sequences, flag pairs."""
    cluster = ""
    for char in text:
        if not cluster:
            cluster = char
        elif (
            _is_extender(char)
            or cluster.endswith("\u200d")
            or (
                _is_regional(char)
                and _is_regional(cluster[-1])
                and sum(1 for c in cluster if _is_regional(c)) % 2 == 1
            )
        ):
            cluster += char
        else:
            yield cluster
            cluster = char
    if cluster:
        yield cluster


class _Atom(msgspec.Struct, frozen=True):
    """An indivisible piece of HTML: a tag, an entity, or one grapheme cluster."""

    text: str
    width: int  # visible UTF-16 units
    tag: str = ""  # tag name for tags
    closing: bool = False


def _atoms(fragment: str) -> Iterator[_Atom]:
    for match in _ATOM.finditer(fragment):
        piece = match.group(0)
        if piece.startswith("<") and len(piece) > 1:
            name = _TAG_NAME.match(piece)
            yield _Atom(
                piece,
                0,
                tag=(name.group(1).lower() if name else ""),
                closing=piece.startswith("</"),
            )
        elif piece.startswith("&") and len(piece) > 1:
            yield _Atom(piece, utf16_length(html.unescape(piece)))
        else:
            for cluster in graphemes(piece):
                yield _Atom(cluster, utf16_length(cluster))


def split_html(fragment: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split HTML into chunks of at most `limit` visible UTF-16 units (see module docstring).

    Whitespace at a cut is dropped (Telegram trims it anyway); nothing else is lost.
    """
    visible = visible_text(fragment)
    if utf16_length(visible) <= limit:
        # Nearly every reply fits in one message: skip the per-grapheme walk (bench/scale.py
        # found it taking a fifth of the bot's time on short replies).
        return [_strip_edges(fragment) if visible.strip() else ""]
    return _split_walk(fragment, limit)


def _split_walk(fragment: str, limit: int) -> list[str]:
    """`split_html` the long way: atom by atom, remembering the best cut at each level."""
    atoms = list(_atoms(fragment))
    chunks: list[str] = []
    start = 0
    reopen: list[_Atom] = []
    while start < len(atoms):
        stack = list(reopen)
        width = 0
        end = start
        # Best cut so far at each preference level: (atom index, stack copy).
        cuts: dict[int, tuple[int, list[_Atom]]] = {}
        while end < len(atoms):
            atom = atoms[end]
            if atom.width and width + atom.width > limit:
                break
            width += atom.width
            if atom.tag:
                if atom.closing:
                    if stack and stack[-1].tag == atom.tag:
                        stack.pop()
                elif not atom.text.endswith("/>"):
                    stack.append(atom)
            end += 1
            level = _break_level(atom.text)
            if level:
                cuts[level] = (end, list(stack))
        if end >= len(atoms):
            cut, stack_at_cut = end, stack
        else:
            best = max(cuts) if cuts else 0
            cut, stack_at_cut = cuts[best] if best else (end, stack)
            if cut <= start:
                cut, stack_at_cut = max(end, start + 1), stack
        body = "".join(atom.text for atom in reopen) + "".join(
            atom.text for atom in atoms[start:cut]
        )
        closing = "".join(f"</{atom.tag}>" for atom in reversed(stack_at_cut))
        chunk = _strip_edges(body + closing)
        if visible_text(chunk).strip():
            chunks.append(chunk)
        reopen = stack_at_cut
        start = cut
    return chunks or [""]


def _break_level(text: str) -> int:
    """How good a cut right after this atom is: 3 paragraph, 2 line, 1 word, 0 none."""
    if text.endswith("\n\n"):
        return 3
    if text.endswith("\n"):
        return 2
    if text.endswith((" ", "\t")):
        return 1
    return 0


def _strip_edges(chunk: str) -> str:
    """Trim whitespace at the chunk's edges, even when it sits inside the outer tags."""
    head = re.match(r"^((?:<[^>]*>)*)(\s+)", chunk)
    if head:
        chunk = head.group(1) + chunk[head.end() :]
    tail = re.search(r"(\s+)((?:</[^>]*>)*)$", chunk)
    if tail:
        chunk = chunk[: tail.start()] + tail.group(2)
    return chunk


# --------------------------------------------------------------------------- policy


def render_reply(markdown: str, *, max_chunks: int) -> RenderedReply:
    """Render a reply: chunks of HTML, or a ``.md`` document with a summary when too long.

    The work is bounded: markdown longer than `render_limit` goes to the document without
    being rendered (only its start is, for the summary).
    """
    clean = sanitize_text(markdown)
    if not clean.strip():
        return RenderedReply(chunks=(EMPTY_PLACEHOLDER,))
    if len(clean) > render_limit(max_chunks):
        return _as_document(clean, render_markdown(clean[:MESSAGE_LIMIT]))
    chunks = split_html(render_markdown(clean))
    if chunks == [""]:  # markup that shows nothing, such as a code fence with no code
        return RenderedReply(chunks=(EMPTY_PLACEHOLDER,))
    if len(chunks) <= max_chunks:
        return RenderedReply(chunks=tuple(chunks))
    return _as_document(clean, chunks[0])


def render_plain(text: str, *, max_chunks: int) -> RenderedReply:
    """Escaped plain text in chunks; a document when longer than `render_limit`."""
    clean = sanitize_text(text)
    if len(clean) > render_limit(max_chunks):
        return _as_document(clean, escape_html(clean[:MESSAGE_LIMIT]))
    return RenderedReply(
        chunks=tuple(split_html(escape_html(clean) if clean.strip() else "(empty)"))
    )


def render_limit(max_chunks: int) -> int:
    """Characters beyond which a reply is sent as a document without being rendered."""
    return max_chunks * MESSAGE_LIMIT * RENDER_LIMIT_FACTOR


def _as_document(clean: str, first_html: str) -> RenderedReply:
    """The whole reply as a file, captioned with the start of its rendering."""
    preview = visible_text(first_html)[:SUMMARY_CHARS].rstrip()
    summary = (
        f"{escape_html(preview)}…\n\n<i>The full reply ({len(clean):,} characters) is "
        "attached as a file.</i>"
    )
    return RenderedReply(document=clean.encode(), summary=summary)
