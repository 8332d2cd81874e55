"""Types and parsers of the workflows: roles, role outcomes, structured answers, results.

This module owns:

- the vocabulary of the workflows (`Role`, `Mode`, `Phase`, `Route`, `Verdict`);
- what one role run returns (`RoleSucceeded` | `RoleFailed`, a tagged union) and the token
  usage it reports (`TokenUsage`);
- the per-role instructions bundle (`RoleInstructions`);
- the structured answers of the selector and the reviewer, with their decoders
  (`decode_selector_answer`, `decode_review_answer`);
- the files-changed extractor for the developer's report (`extract_files_changed`);
- one trace record per role run (`RoleTrace`) and the result of a workflow (`WorkflowResult`).

Decoding the structured answers. A model asked to "answer only JSON" still sometimes wraps the
object in a ```json fence or puts prose around it. The decoders therefore look for JSON objects
in the text, in order, and take the first one that is a valid answer (a fenced ``json`` block is
tried before the rest of the text). Validation is strict: the keys must have the right types
(no coercion) and `route` / `verdict` one of their literal values; unknown extra keys are
tolerated, because they carry no meaning for us and a model may add them.

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
from typing import Final, Literal, TypeAlias, TypeVar

import msgspec

__all__ = [
    "MAX_REVIEW_ROUNDS",
    "READ_ONLY_ROLES",
    "ROLES",
    "Mode",
    "Phase",
    "ReviewVerdict",
    "Role",
    "RoleFailed",
    "RoleInstructions",
    "RoleOutcome",
    "RoleSucceeded",
    "RoleTrace",
    "Route",
    "SelectorDecision",
    "TokenUsage",
    "TraceOutcome",
    "Verdict",
    "WorkflowResult",
    "decode_review_answer",
    "decode_selector_answer",
    "extract_files_changed",
    "merge_files_changed",
]

Role: TypeAlias = Literal["selector", "planner", "developer", "reviewer"]
Mode: TypeAlias = Literal["single", "plan"]
Route: TypeAlias = Literal["single", "plan"]
Verdict: TypeAlias = Literal["approved", "changes"]
Phase: TypeAlias = Literal["selecting", "planning", "developing", "reviewing"]
TraceOutcome: TypeAlias = Literal["succeeded", "failed", "cancelled", "crashed"]

ROLES: Final[tuple[Role, ...]] = ("selector", "planner", "developer", "reviewer")
"""Every role, in the order plan mode runs them."""

READ_ONLY_ROLES: Final[frozenset[Role]] = frozenset({"selector", "planner", "reviewer"})
"""Roles that only read the working tree: run them with sandbox ``read-only`` whatever the
profile says, so a planner or reviewer cannot edit files even if its model tries."""

MAX_REVIEW_ROUNDS: Final = 3
"""Review rounds in plan mode before the workflow stops unapproved (the product's contract)."""

FEEDBACK_LIMIT: Final = 4000
"""Characters of an unreadable reviewer answer passed on as feedback: enough for a real review,
bounded so a runaway answer does not balloon the developer's prompt."""


class TokenUsage(msgspec.Struct, frozen=True, kw_only=True):
    """Token counts as Codex reports them (`token_count` → `total_token_usage`)."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_output_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        """Sum two usages field by field."""
        return TokenUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            reasoning_output_tokens=self.reasoning_output_tokens + other.reasoning_output_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )


class RoleSucceeded(msgspec.Struct, frozen=True, kw_only=True, tag=True, tag_field="kind"):
    """A role's Codex run finished.

    Attributes:
        text: The last agent message (the tool result's content).
        thread_id: The Codex thread the run used or created.
        worker_id: The worker that hosts that thread.
        usage: Tokens the run used.
        files_changed: Paths Codex reported as patched (PatchApplied events), if the runner
            tracks them; merged with what the developer's text says.
    """

    text: str
    thread_id: str
    worker_id: int
    usage: TokenUsage = TokenUsage()
    files_changed: tuple[str, ...] = ()


class RoleFailed(msgspec.Struct, frozen=True, kw_only=True, tag=True, tag_field="kind"):
    """A role's Codex run failed (tool error, worker died, timeout...).

    Attributes:
        failure: A short machine-readable class of failure, as the runner names it.
        message: A human-readable, token-free explanation.
        worker_id: The worker that ran it, if one did.
        thread_id: The thread, if Codex created one before failing.
    """

    failure: str
    message: str
    worker_id: int | None = None
    thread_id: str | None = None


RoleOutcome: TypeAlias = RoleSucceeded | RoleFailed


class RoleInstructions(msgspec.Struct, frozen=True, kw_only=True):
    """The developer-instructions text of each role, loaded once per profile."""

    selector: str
    planner: str
    developer: str
    reviewer: str

    def for_role(self, role: Role) -> str:
        """Return the instructions of `role`."""
        match role:
            case "selector":
                return self.selector
            case "planner":
                return self.planner
            case "developer":
                return self.developer
            case "reviewer":
                return self.reviewer


class SelectorDecision(msgspec.Struct, frozen=True, kw_only=True):
    """What the selector decided for one request.

    Attributes:
        route: ``single`` (one developer run) or ``plan`` (the full workflow).
        reason: The selector's one-line reason, or why its answer was unreadable.
        malformed: True when no valid answer was found and ``plan`` was chosen by default.
    """

    route: Route
    reason: str
    malformed: bool = False


class ReviewVerdict(msgspec.Struct, frozen=True, kw_only=True):
    """The reviewer's verdict on one round.

    Attributes:
        verdict: ``approved`` or ``changes``.
        feedback: What to change (or a short note on approval).
        malformed: True when no valid answer was found; the verdict is then ``changes``.
    """

    verdict: Verdict
    feedback: str
    malformed: bool = False


class RoleTrace(msgspec.Struct, frozen=True, kw_only=True):
    """One trace line per role run, handed to the workflow's trace callback.

    Attributes:
        role: Which role ran.
        round: The review round (1-based) for developer and reviewer runs; None for the
            selector and planner, which run once per request.
        started_at: `trio.current_time()` when the run was requested.
        duration: Seconds on the trio clock until the outcome.
        outcome: succeeded, failed, cancelled (the caller's scope), or crashed (an exception).
        thread_id: The thread used, when known.
        worker_id: The worker used, when known.
        detail: Short, body-free detail: route or verdict with reason, or the failure.
        malformed: The selector's or reviewer's answer was unreadable.
        usage: Tokens the run used.
    """

    role: Role
    round: int | None
    started_at: float
    duration: float
    outcome: TraceOutcome
    thread_id: str | None = None
    worker_id: int | None = None
    detail: str = ""
    malformed: bool = False
    usage: TokenUsage = TokenUsage()


class WorkflowResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a workflow returns to the chat session.

    Attributes:
        text: The final message for the user.
        mode_used: The workflow that actually ran (plan mode may route to single).
        verdict: The last review verdict; None in single mode or when no review happened.
        rounds_used: Developer rounds run (1 in single mode; 0 if it failed before developing).
        files_changed: Files changed, as Codex reported them, in first-seen order.
        developer_thread_id: The developer's thread, to continue with `codex-reply` next time.
        developer_worker_id: The worker that hosts the developer's thread.
        usage: Tokens used by every role run, summed.
        selector: The selector's decision, in plan mode.
        plan: The planner's plan, when one was made.
        failed_phase: The phase that failed, or None on success.
        error: The failure's explanation, or None on success.
    """

    text: str
    mode_used: Mode
    verdict: Verdict | None = None
    rounds_used: int = 0
    files_changed: tuple[str, ...] = ()
    developer_thread_id: str | None = None
    developer_worker_id: int | None = None
    usage: TokenUsage = TokenUsage()
    selector: SelectorDecision | None = None
    plan: str | None = None
    failed_phase: Phase | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when no phase failed."""
        return self.failed_phase is None


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
        return ReviewVerdict(verdict="changes", feedback=feedback, malformed=True)
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


def merge_files_changed(*groups: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Concatenate path lists, keeping the first occurrence of each path."""
    merged: dict[str, None] = {}
    for group in groups:
        for path in group:
            merged.setdefault(path, None)
    return tuple(merged)
