"""What the workflows write: the prompt each role gets, and plan mode's closing summary.

The roles' standing instructions (``developer-instructions``) are in `orchestrator.prompts`;
this module owns the per-request text around the user's prompt: the selector's and the
reviewer's answer formats (read back by `orchestrator.role_answers`), the plan handed to the
developer, the reviewer's feedback handed back, and the summary the user reads at the end.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from orchestrator.rendering import close_open_fence
from orchestrator.role_answers import has_files_section

if TYPE_CHECKING:
    from orchestrator.workflow_types import Verdict

__all__ = [
    "VERDICT_REMINDER",
    "developer_feedback_prompt",
    "developer_prompt",
    "plan_summary",
    "planner_prompt",
    "reviewer_again_prompt",
    "reviewer_prompt",
    "selector_prompt",
]


def selector_prompt(prompt: str) -> str:
    return (
        "Decide how to handle this request. Answer only with the JSON object "
        '{"route": "single"|"plan", "reason": "..."}.\n\nRequest:\n' + prompt
    )


def planner_prompt(prompt: str) -> str:
    return "Write the numbered plan for this request. Do not edit any file.\n\nRequest:\n" + prompt


def developer_prompt(prompt: str, plan: str | None) -> str:
    """Round 1's prompt; `plan` None when the planner wrote none (`NO_PLAN`)."""
    if plan is None:
        return (
            "Carry out this request. When done, report what you did and "
            'end with the "Files changed:" list.\n\n'
            f"Request:\n{prompt}"
        )
    return (
        "Carry out this request, following the plan below. When done, report what you did and "
        'end with the "Files changed:" list.\n\n'
        f"Request:\n{prompt}\n\nPlan:\n{plan}"
    )


def developer_feedback_prompt(feedback: str, finished_round: int, max_rounds: int) -> str:
    return (
        f"The reviewer asked for changes (review round {finished_round} of {max_rounds}). "
        'Address every point, then report again, ending with the "Files changed:" list '
        "(all files changed for this request so far).\n\n"
        f"Reviewer feedback:\n{feedback}"
    )


VERDICT_REMINDER: Final = (
    "Inspect the working tree yourself (git status, git diff), then answer only with the JSON "
    'object {"verdict": "approved"|"changes", "feedback": "..."}.'
)


def reviewer_prompt(prompt: str, plan: str | None, report: str) -> str:
    """The first review's prompt; `plan` None when the planner wrote none."""
    planned = f"Plan:\n{plan}\n\n" if plan is not None else ""
    return (
        "Review the developer's work on this request.\n\n"
        f"Request:\n{prompt}\n\n{planned}Developer's report:\n{report}\n\n" + VERDICT_REMINDER
    )


def reviewer_again_prompt(report: str, round_number: int) -> str:
    return (
        f"The developer has worked on your feedback. This is review round {round_number}.\n\n"
        f"Developer's report:\n{report}\n\n" + VERDICT_REMINDER
    )


def plan_summary(
    *,
    verdict: Verdict,
    feedback: str,
    rounds: int,
    max_rounds: int,
    files: tuple[str, ...],
    report: str,
    unreadable: str | None = None,
) -> str:
    """The final message of a plan run. `unreadable`: what the last reviewer wrote, when it
    was not a verdict ("" when it wrote nothing)."""
    if verdict == "approved":
        head = f"Plan mode: approved by the reviewer in round {rounds} of {max_rounds}."
        review = f"Reviewer: {close_open_fence(feedback)}" if feedback else ""
    else:
        head = (
            f"Plan mode: not approved after {rounds} review rounds (the limit); stopped there. "
            "Check the changes yourself, or send a follow-up."
        )
        review = f"Last reviewer feedback:\n{close_open_fence(feedback)}"
        if unreadable is not None:
            review = (
                "The last review was not a clear “approved” or “changes”, so it does not count "
                "as an approval."
                + (f" The reviewer wrote:\n{close_open_fence(unreadable)}" if unreadable else "")
            )
    parts = [head]
    if review:
        parts.append(review)
    parts.append(_files_line(files, report))
    parts.append(f"Developer's report (round {rounds}):\n{report}")
    return "\n\n".join(part for part in parts if part)


def _files_line(files: tuple[str, ...], report: str) -> str:
    """The files the rounds changed, less those the last report names itself: it ends with
    its own "Files changed:" section, which the summary quotes whole. A report names a file
    however it writes it (``./a.py``, its absolute path, a name with a space, "renamed from
    a.py"), so a path anywhere in the report counts, not only in its list's own shape."""
    if not has_files_section(report):
        return "Files changed: " + (", ".join(files) if files else "none reported")
    unnamed = [path for path in files if not _names(report, path)]
    return "Changed too, not in the report below: " + ", ".join(unnamed) if unnamed else ""


def _names(report: str, path: str) -> bool:
    """Whether `report` names `path`: as a whole word, or as the end of a longer path; not
    as the start of a longer name (``a.py`` in ``a.py.bak``), a sentence's full stop aside."""
    pattern = rf"(?<![\w.-]){re.escape(path.removeprefix('./'))}(?![\w/-]|\.[\w-])"
    return re.search(pattern, report) is not None
