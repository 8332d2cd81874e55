"""Reading what the roles answered: the selector's route, the reviewer's verdict, the files
the developer says it changed.

A model asked to "answer only JSON" still sometimes wraps the object in a ```json fence or puts
prose around it. The decoders therefore look for JSON objects in the text, in order, and take the
first one that is a valid answer (a fenced ``json`` block is tried before the rest of the text).
Validation is strict: the keys must have the right types (no coercion) and `route` / `verdict`
one of their literal values; unknown extra keys are tolerated, because they carry no meaning for
us and a model may add them.

What happens when no valid answer is found:

- **selector** → route ``plan``, flagged ``malformed=True`` so the caller traces it. Plan mode is
  the careful choice: it costs more time, never less review.
- **reviewer** → verdict ``changes``, flagged ``malformed=True``, with the reviewer's own text
  (trimmed) as the feedback. A review that cannot be read is never taken as an approval; the
  developer gets one more round with whatever the reviewer wrote, and the round limit
  (`MAX_REVIEW_ROUNDS`) still bounds the workflow. If it happens in the last round, the workflow
  stops unapproved and says so.
"""

from __future__ import annotations

import json
import re
from typing import Final, TypeVar

import msgspec

from orchestrator.workflow_types import ReviewVerdict, Route, SelectorDecision, Verdict

__all__ = [
    "FEEDBACK_LIMIT",
    "decode_review_answer",
    "decode_selector_answer",
    "extract_files_changed",
    "has_files_section",
    "merge_files_changed",
]

FEEDBACK_LIMIT: Final = 4000
"""Characters of an unreadable reviewer answer passed on as feedback: enough for a real review,
bounded so a runaway answer does not balloon the developer's prompt."""


class _SelectorAnswer(msgspec.Struct, frozen=True):
    route: Route
    reason: str = ""


class _ReviewAnswer(msgspec.Struct, frozen=True):
    verdict: Verdict
    feedback: str = ""


_Answer = TypeVar("_Answer", _SelectorAnswer, _ReviewAnswer)

_SELECTOR_DECODER: Final = msgspec.json.Decoder(_SelectorAnswer, strict=True)
_REVIEW_DECODER: Final = msgspec.json.Decoder(_ReviewAnswer, strict=True)
_JSON_SCANNER: Final = json.JSONDecoder()
_FENCED_JSON: Final = re.compile(r"```(?:json|JSON)?[ \t]*\n(.*?)```", re.DOTALL)


def _json_object_spans(text: str) -> list[str]:
    """Return every top-level JSON object in `text`, fenced blocks first, in order."""
    candidates: list[str] = []
    sources = [match.group(1) for match in _FENCED_JSON.finditer(text)]
    sources.append(text)
    for source in sources:
        index = source.find("{")
        while index != -1:
            try:
                _, end = _JSON_SCANNER.raw_decode(source, index)
            except json.JSONDecodeError:
                index = source.find("{", index + 1)
                continue
            candidates.append(source[index:end])
            index = source.find("{", end)
    return candidates


def _first_valid(text: str, decoder: msgspec.json.Decoder[_Answer]) -> _Answer | None:
    for candidate in _json_object_spans(text):
        try:
            return decoder.decode(candidate)
        except msgspec.ValidationError:
            continue
    return None


def _excerpt(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def decode_selector_answer(text: str) -> SelectorDecision:
    """Read the selector's answer ``{"route": "single"|"plan", "reason": "..."}``.

    Args:
        text: The selector's last message, possibly fenced or with prose around the JSON.

    Returns:
        The decision; ``plan`` with ``malformed=True`` when no valid answer is in `text`.
    """
    answer = _first_valid(text, _SELECTOR_DECODER)
    if answer is None:
        why = "empty answer" if not text.strip() else f"unreadable answer: {_excerpt(text, 200)}"
        return SelectorDecision(route="plan", reason=f"selector {why}", malformed=True)
    return SelectorDecision(route=answer.route, reason=answer.reason.strip())


def decode_review_answer(text: str) -> ReviewVerdict:
    """Read the reviewer's answer ``{"verdict": "approved"|"changes", "feedback": "..."}``.

    Args:
        text: The reviewer's last message, possibly fenced or with prose around the JSON.

    Returns:
        The verdict; when no valid answer is in `text`, ``changes`` with ``malformed=True`` and
        the reviewer's own text as feedback (never an approval: see the module docstring).
    """
    answer = _first_valid(text, _REVIEW_DECODER)
    if answer is None:
        raw = _excerpt(text, FEEDBACK_LIMIT)
        feedback = (
            "The reviewer's answer could not be read as a verdict. Its text was:\n" + raw
            if raw
            else "The reviewer gave no answer. Re-check your changes against the plan and "
            "the request, run the tests, and fix anything missing."
        )
        return ReviewVerdict(verdict="changes", feedback=feedback, malformed=True, wrote=raw)
    return ReviewVerdict(verdict=answer.verdict, feedback=answer.feedback.strip())


_FILES_HEADING: Final = re.compile(
    r"^[ \t>#*_]*(?:files?[ \t]+(?:changed|modified|touched|edited)|changed[ \t]+files?)"
    r"[ \t*_]*(?::[ \t*_]*(?P<inline>.*))?$",
    re.IGNORECASE,
)
_LIST_ITEM: Final = re.compile(r"^[ \t]*(?:[-*+•]|\d+[.)])[ \t]+(?P<item>.+)$")
_NOTHING: Final = frozenset({"none", "n/a", "nothing", "no files", "-", "(none)"})


def _clean_path(item: str) -> str | None:
    """Reduce one listed item to a path: drop backticks, bold and a trailing description."""
    item = item.strip().strip("*_").strip()
    if item.startswith("`"):
        closing = item.find("`", 1)
        quoted = item[1:closing].strip() if closing > 0 else ""
        return quoted or None
    for separator in (" \u2014 ", " \u2013 ", " - ", ": ", " (", "\t"):
        head, found, _ = item.partition(separator)
        if found:
            item = head
    item = item.strip().strip("`*_,;").strip()
    if not item or item.lower() in _NOTHING or " " in item:
        return None
    return item


def extract_files_changed(text: str) -> tuple[str, ...]:
    """Find the files the developer says it changed.

    The developer's instructions ask it to end with a ``Files changed:`` heading followed by a
    list (``- path``, ``* `path` — why``, ``1. path``), or the paths inline after the heading,
    separated by commas. Headings may be markdown (``## Files changed``, ``**Files changed:**``).
    Every such section in `text` is read; ``none`` yields nothing.

    Args:
        text: The developer's report.

    Returns:
        The paths, deduplicated, in first-seen order.
    """
    found: list[str] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        heading = _FILES_HEADING.match(lines[index])
        index += 1
        if heading is None:
            continue
        inline = (heading.group("inline") or "").strip()
        if inline:
            for part in inline.split(","):
                path = _clean_path(part)
                if path is not None:
                    found.append(path)
            continue
        seen_item = False
        while index < len(lines):
            line = lines[index]
            item = _LIST_ITEM.match(line)
            if item is not None:
                seen_item = True
                path = _clean_path(item.group("item"))
                if path is not None:
                    found.append(path)
            elif line.strip() or seen_item:
                break
            index += 1
    return merge_files_changed(found)


def has_files_section(text: str) -> bool:
    """Whether `text` has a ``Files changed`` heading (`extract_files_changed` reads it)."""
    return any(_FILES_HEADING.match(line) for line in text.splitlines())


def merge_files_changed(*groups: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Concatenate path lists, keeping the first occurrence of each path."""
    merged: dict[str, None] = {}
    for group in groups:
        for path in group:
            merged.setdefault(path, None)
    return tuple(merged)
