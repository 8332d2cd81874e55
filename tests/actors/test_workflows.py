"""Single and plan workflows against a scripted fake RoleCaller, in virtual time.

Every test runs under ``autojump_clock`` with a ``trio.fail_after`` ceiling, so a deadlock fails
at once. The fake caller "takes" `LATENCY` seconds of virtual time per role call (Codex latency,
not synchronisation); tests synchronise on the caller's per-call Events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
import trio

from actors import workflow_prompts
from actors.workflows import (
    PHASE_PLAN,
    UNREADABLE_SELECTOR,
    carry_out_plan,
    carry_out_single,
    carry_out_workflow,
)
from orchestrator.prompts import load_instructions
from orchestrator.workflow_types import (
    NO_PLAN,
    UNREADABLE_REVIEW,
    ContextFill,
    Role,
    RoleFailed,
    RoleInstructions,
    RoleOutcome,
    RoleSucceeded,
    RoleTrace,
    TokenUsage,
    WorkflowResult,
)

if TYPE_CHECKING:
    from pathlib import Path

LATENCY = 2.0
CEILING = 600.0

INSTRUCTIONS = RoleInstructions(
    selector="I-selector", planner="I-planner", developer="I-developer", reviewer="I-reviewer"
)
SINGLE = '{"route": "single", "reason": "one-line fix"}'
PLAN = '```json\n{"route": "plan", "reason": "several files"}\n```'
THE_PLAN = "1. Add the flag in cli.py.\n2. Test it in test_cli.py."
APPROVED = '{"verdict": "approved", "feedback": "correct and tested"}'


def changes(n: int) -> str:
    return f'{{"verdict": "changes", "feedback": "fix number {n}"}}'


def report(*files: str) -> str:
    listing = "\n".join(f"- {name}" for name in files) or "- none"
    return f"Did the work.\n\nFiles changed:\n{listing}\n"


@dataclass
class Call:
    role: Role
    prompt: str
    thread_id: str | None
    worker_id: int | None
    instructions: str


@dataclass
class FakeCaller:
    """Scripted RoleCaller: per role, a list of answers (text, a ready outcome, or an error)."""

    script: dict[Role, list[str | RoleOutcome | Exception]]
    calls: list[Call] = field(default_factory=list)
    cancelled: list[Role] = field(default_factory=list)
    started: dict[tuple[Role, int], trio.Event] = field(default_factory=dict)
    counts: dict[Role, int] = field(default_factory=dict)

    def started_event(self, role: Role, nth: int) -> trio.Event:
        return self.started.setdefault((role, nth), trio.Event())

    def calls_of(self, role: Role) -> list[Call]:
        return [call for call in self.calls if call.role == role]

    async def call_role(
        self,
        role: Role,
        prompt: str,
        *,
        thread_id: str | None,
        worker_id: int | None,
        instructions: str,
    ) -> RoleOutcome:
        nth = self.counts.get(role, 0) + 1
        self.counts[role] = nth
        self.calls.append(Call(role, prompt, thread_id, worker_id, instructions))
        self.started_event(role, nth).set()
        try:
            await trio.sleep(LATENCY)
        except trio.Cancelled:
            self.cancelled.append(role)
            raise
        answer = self.script[role][nth - 1]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, RoleSucceeded | RoleFailed):
            return answer
        return RoleSucceeded(
            text=answer,
            thread_id=thread_id or f"{role}-thread-{nth}",
            worker_id=worker_id if worker_id is not None else 7,
            usage=TokenUsage(input_tokens=8, output_tokens=2, total_tokens=10),
        )


@dataclass
class FakeReporter:
    phases: list[tuple[str, str]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    """What Codex's patch events named (the chat's progress keeps them)."""

    async def phase(self, name: str, detail: str) -> None:
        self.phases.append((name, detail))

    def patched(self) -> list[str]:
        return self.files

    def names(self) -> list[str]:
        return [name for name, _ in self.phases]


@dataclass
class Harness:
    caller: FakeCaller
    reporter: FakeReporter = field(default_factory=FakeReporter)
    traces: list[RoleTrace] = field(default_factory=list)

    async def plan(self, prompt: str = "add a --verbose flag", **kwargs: object) -> WorkflowResult:
        with trio.fail_after(CEILING):
            return await carry_out_plan(
                prompt,
                caller=self.caller,
                reporter=self.reporter,
                trace=self.traces.append,
                instructions=kwargs.pop("instructions", INSTRUCTIONS),  # type: ignore[arg-type]
                **kwargs,  # type: ignore[arg-type]
            )

    async def single(self, prompt: str = "fix the typo", **kwargs: object) -> WorkflowResult:
        with trio.fail_after(CEILING):
            return await carry_out_single(
                prompt,
                caller=self.caller,
                reporter=self.reporter,
                trace=self.traces.append,
                instructions=INSTRUCTIONS,
                **kwargs,  # type: ignore[arg-type]
            )

    def trace_keys(self) -> list[tuple[str, int | None, str]]:
        return [(line.role, line.round, line.outcome) for line in self.traces]


# --- single mode ------------------------------------------------------------------------------


async def test_single_mode_continues_the_conversations_developer_thread(autojump_clock):
    harness = Harness(FakeCaller({"developer": [report("a.py")]}))
    result = await harness.single(thread_id="dev-t0", worker_id=3)

    [call] = harness.caller.calls
    assert (call.role, call.prompt, call.thread_id, call.worker_id) == (
        "developer",
        "fix the typo",
        "dev-t0",
        3,
    )
    assert call.instructions == "I-developer"
    assert harness.reporter.names() == ["developing"]
    assert result.mode_used == "single"
    assert result.text == report("a.py")
    assert result.verdict is None
    assert result.rounds_used == 1
    assert result.files_changed == ("a.py",)
    assert (result.developer_thread_id, result.developer_worker_id) == ("dev-t0", 3)
    assert result.usage.total_tokens == 10
    assert result.ok
    assert harness.trace_keys() == [("developer", 1, "succeeded")]
    assert harness.traces[0].duration == pytest.approx(LATENCY)
    assert harness.traces[0].detail == "files changed: a.py"


async def test_single_mode_fresh_thread_reports_the_new_thread(autojump_clock):
    harness = Harness(FakeCaller({"developer": ["answer"]}))
    result = await harness.single()
    assert harness.caller.calls[0].thread_id is None
    assert (result.developer_thread_id, result.developer_worker_id) == ("developer-thread-1", 7)
    assert result.files_changed == ()


async def test_files_reported_by_patch_events_are_merged_with_the_text(autojump_clock):
    outcome = RoleSucceeded(
        text=report("b.py", "a.py"), thread_id="t", worker_id=1, files_changed=("a.py", "c.py")
    )
    harness = Harness(FakeCaller({"developer": [outcome]}))
    result = await harness.single()
    assert result.files_changed == ("a.py", "c.py", "b.py")


# --- plan mode: routes ------------------------------------------------------------------------


async def test_selector_choosing_single_runs_one_developer(autojump_clock):
    harness = Harness(FakeCaller({"selector": [SINGLE], "developer": [report("README.md")]}))
    result = await harness.plan(thread_id="dev-t0", worker_id=2)

    assert [call.role for call in harness.caller.calls] == ["selector", "developer"]
    selector, developer = harness.caller.calls
    assert (selector.thread_id, selector.worker_id) == (None, None)
    assert selector.instructions == "I-selector"
    assert "add a --verbose flag" in selector.prompt
    assert developer.prompt == "add a --verbose flag"
    assert (developer.thread_id, developer.worker_id) == ("dev-t0", 2)
    assert harness.reporter.phases == [
        ("selecting", ""),
        ("developing", "No plan needed: one-line fix"),
    ]
    assert result.mode_used == "single"
    assert result.selector is not None
    assert (result.selector.route, result.selector.malformed) == ("single", False)
    assert result.files_changed == ("README.md",)
    assert result.usage.total_tokens == 20
    assert harness.trace_keys() == [
        ("selector", None, "succeeded"),
        ("developer", 1, "succeeded"),
    ]
    assert harness.traces[0].detail == "route single: one-line fix"


async def test_the_summary_names_files_codex_patched_that_no_report_lists(autojump_clock):
    """A file the developer's patch changed and its report left out still shows: once, in the
    line above the report, never twice."""
    harness = Harness(
        FakeCaller(
            {
                "selector": [PLAN],
                "planner": [THE_PLAN],
                "developer": [report("cli.py")],
                "reviewer": [APPROVED],
            }
        ),
        reporter=FakeReporter(files=["cli.py", "sub/extra.py"]),
    )
    result = await harness.plan()
    assert result.files_changed == ("cli.py", "sub/extra.py")
    assert "\n\nChanged too, not in the report below: sub/extra.py\n\n" in result.text
    assert result.text.count("cli.py") == 1


async def test_a_file_the_report_names_in_its_own_way_is_not_listed_again(autojump_clock):
    """A report may write ``./a``, an absolute path, a name with a space or a rename: each
    counts as named; a file it does not name shows, also one whose name only begins a name
    the report has (``notes.md`` in ``notes.md.bak``)."""
    written = (
        "Done.\n\nFiles changed:\n- ./hello.txt (new)\n- /srv/work/sub/extra.txt\n"
        "- **Docs/Read Me.md**: updated\n- moved.txt (renamed from keep.txt)\n"
        "- notes.md.bak: the old notes, see end.txt.\n"
    )
    patched = [
        *("hello.txt", "sub/extra.txt", "Docs/Read Me.md", "keep.txt", "moved.txt", "a.py"),
        *("notes.md", "notes.md.bak", "end.txt"),
    ]
    harness = Harness(
        FakeCaller(
            {
                "selector": [PLAN],
                "planner": [THE_PLAN],
                "developer": [written],
                "reviewer": [APPROVED],
            }
        ),
        reporter=FakeReporter(files=[*patched, "data.py"]),
    )
    result = await harness.plan()
    assert "\n\nChanged too, not in the report below: a.py, notes.md, data.py\n\n" in result.text


async def test_selector_choosing_plan_and_approval_in_round_one(autojump_clock):
    harness = Harness(
        FakeCaller(
            {
                "selector": [PLAN],
                "planner": [THE_PLAN],
                "developer": [report("cli.py", "test_cli.py")],
                "reviewer": [APPROVED],
            }
        )
    )
    result = await harness.plan(thread_id="dev-t0", worker_id=2)

    caller = harness.caller
    assert [call.role for call in caller.calls] == ["selector", "planner", "developer", "reviewer"]
    _, planner, developer, reviewer = caller.calls
    assert (planner.thread_id, planner.worker_id, planner.instructions) == (None, None, "I-planner")
    assert "add a --verbose flag" in planner.prompt
    assert (developer.thread_id, developer.worker_id) == ("dev-t0", 2)
    assert THE_PLAN in developer.prompt
    assert "add a --verbose flag" in developer.prompt
    assert (reviewer.thread_id, reviewer.worker_id, reviewer.instructions) == (
        None,
        None,
        "I-reviewer",
    )
    assert THE_PLAN in reviewer.prompt
    assert "Files changed:" in reviewer.prompt
    assert "git diff" in reviewer.prompt

    assert harness.reporter.phases == [
        ("selecting", ""),
        ("planning", "several files"),
        (PHASE_PLAN, THE_PLAN),
        ("developing round 1", ""),
        ("reviewing round 1", ""),
    ]
    assert result.mode_used == "plan"
    assert result.verdict == "approved"
    assert result.rounds_used == 1
    assert result.plan == THE_PLAN
    assert result.files_changed == ("cli.py", "test_cli.py")
    assert (result.developer_thread_id, result.developer_worker_id) == ("dev-t0", 2)
    assert result.usage == TokenUsage(input_tokens=32, output_tokens=8, total_tokens=40)
    assert result.ok
    assert "approved by the reviewer in round 1 of 3" in result.text
    assert "Reviewer: correct and tested" in result.text
    assert result.text.endswith(
        "Developer's report (round 1):\nDid the work.\n\nFiles changed:\n- cli.py\n- test_cli.py"
    )
    assert result.text.count("cli.py") == 2  # once in its list, once as test_cli.py
    assert harness.trace_keys() == [
        ("selector", None, "succeeded"),
        ("planner", None, "succeeded"),
        ("developer", 1, "succeeded"),
        ("reviewer", 1, "succeeded"),
    ]
    # Durations and start times come from the trio clock: one LATENCY per call, back to back.
    starts = [line.started_at - harness.traces[0].started_at for line in harness.traces]
    assert starts == pytest.approx([0.0, LATENCY, 2 * LATENCY, 3 * LATENCY])
    assert all(line.duration == pytest.approx(LATENCY) for line in harness.traces)
    assert harness.traces[3].detail == "approved: correct and tested"


async def test_malformed_selector_output_goes_to_plan_and_is_flagged(autojump_clock):
    harness = Harness(
        FakeCaller(
            {
                "selector": ["Probably simple enough, single mode."],
                "planner": [THE_PLAN],
                "developer": [report("a.py")],
                "reviewer": [APPROVED],
            }
        )
    )
    result = await harness.plan()
    assert result.mode_used == "plan"
    assert result.selector is not None
    assert result.selector.route == "plan"
    assert result.selector.malformed is True
    assert harness.traces[0].role == "selector"
    assert harness.traces[0].malformed is True
    assert harness.traces[0].detail.startswith("route plan: selector unreadable answer")
    assert [line.malformed for line in harness.traces[1:]] == [False, False, False]
    assert ("planning", UNREADABLE_SELECTOR) in (harness.reporter.phases)
    assert result.verdict == "approved"


# --- plan mode: review rounds -----------------------------------------------------------------


async def test_three_rounds_of_changes_then_a_stop(autojump_clock):
    harness = Harness(
        FakeCaller(
            {
                "selector": [PLAN],
                "planner": [THE_PLAN],
                "developer": [report("a.py"), report("a.py", "b.py"), report("c.py")],
                "reviewer": [changes(1), changes(2), changes(3)],
            }
        )
    )
    result = await harness.plan(thread_id=None)

    caller = harness.caller
    assert len(caller.calls_of("developer")) == 3
    assert len(caller.calls_of("reviewer")) == 3
    first, second, third = caller.calls_of("developer")
    # The developer continues its own thread across rounds, with the feedback as the prompt.
    assert first.thread_id is None
    assert (second.thread_id, second.worker_id) == ("developer-thread-1", 7)
    assert (third.thread_id, third.worker_id) == ("developer-thread-1", 7)
    assert "fix number 1" in second.prompt
    assert "review round 1 of 3" in second.prompt
    assert "fix number 2" in third.prompt
    # The reviewer continues its own thread too.
    reviews = caller.calls_of("reviewer")
    assert [call.thread_id for call in reviews] == [None, "reviewer-thread-1", "reviewer-thread-1"]
    assert "review round 2" in reviews[1].prompt
    assert '"verdict"' in reviews[2].prompt

    assert harness.reporter.names()[3:] == [
        "developing round 1",
        "reviewing round 1",
        "developing round 2",
        "reviewing round 2",
        "developing round 3",
        "reviewing round 3",
    ]
    assert ("developing round 2", "fix number 1") in harness.reporter.phases
    assert result.verdict == "changes"
    assert result.rounds_used == 3
    assert result.ok
    assert result.files_changed == ("a.py", "b.py", "c.py")
    assert "not approved after 3 review rounds" in result.text
    assert "fix number 3" in result.text
    assert [(line.role, line.round) for line in harness.traces[2:]] == [
        ("developer", 1),
        ("reviewer", 1),
        ("developer", 2),
        ("reviewer", 2),
        ("developer", 3),
        ("reviewer", 3),
    ]


async def test_changes_then_approval_in_round_two(autojump_clock):
    def developed(tokens: int, *files: str) -> RoleSucceeded:
        context = ContextFill(thread_id="dev", tokens=tokens, window=1000)
        return RoleSucceeded(
            text=report(*files),
            thread_id="dev",
            worker_id=1,
            context=context,
            instructions=f"digest-{tokens}",
        )

    harness = Harness(
        FakeCaller(
            {
                "selector": [PLAN],
                "planner": [THE_PLAN],
                "developer": [developed(300, "a.py"), developed(450, "a.py", "t.py")],
                "reviewer": [changes(1), APPROVED],
            }
        )
    )
    result = await harness.plan()
    assert result.verdict == "approved"
    assert result.rounds_used == 2
    assert result.files_changed == ("a.py", "t.py")
    assert "approved by the reviewer in round 2 of 3" in result.text
    # the developer's thread as its last round left it (not the reviewer's)
    assert result.developer_context == ContextFill(thread_id="dev", tokens=450, window=1000)
    assert result.developer_instructions == "digest-450"


async def test_malformed_reviewer_output_means_one_more_round_with_its_text(autojump_clock):
    harness = Harness(
        FakeCaller(
            {
                "selector": [PLAN],
                "planner": [THE_PLAN],
                "developer": [report("a.py"), report("a.py")],
                "reviewer": ["Mostly fine but the docstring is missing.", APPROVED],
            }
        )
    )
    result = await harness.plan()
    second = harness.caller.calls_of("developer")[1]
    assert "the docstring is missing" in second.prompt
    reviewer_traces = [line for line in harness.traces if line.role == "reviewer"]
    assert [line.malformed for line in reviewer_traces] == [True, False]
    assert result.verdict == "approved"
    assert result.rounds_used == 2
    # The developer gets the reviewer's text; the user a line that says what happens.
    assert ("developing round 2", UNREADABLE_REVIEW) in harness.reporter.phases
    assert not any("could not be read" in detail for _, detail in harness.reporter.phases)


async def test_malformed_reviewer_output_in_the_last_round_is_not_an_approval(autojump_clock):
    harness = Harness(
        FakeCaller(
            {
                "selector": [PLAN],
                "planner": [THE_PLAN],
                "developer": [report("a.py")],
                "reviewer": ['{"verdict": "ok"}'],
            }
        )
    )
    result = await harness.plan(max_review_rounds=1)
    assert result.verdict == "changes"
    assert result.rounds_used == 1
    assert "not approved after 1 review rounds" in result.text
    assert (
        "The last review was not a clear “approved” or “changes”, so it does not count as an "
        'approval. The reviewer wrote:\n{"verdict": "ok"}\n\n'
    ) in result.text
    assert "could not be read" not in result.text  # the developer's wording, not the user's


async def test_review_round_limit_must_be_positive(autojump_clock):
    harness = Harness(FakeCaller({}))
    with pytest.raises(ValueError, match="max_review_rounds"):
        await harness.plan(max_review_rounds=0)
    assert harness.caller.calls == []


# --- failures ---------------------------------------------------------------------------------

FULL_SCRIPT: dict[Role, list[str | RoleOutcome | Exception]] = {
    "selector": [PLAN],
    "planner": [THE_PLAN],
    "developer": [report("a.py"), report("b.py")],
    "reviewer": [changes(1), APPROVED],
}


@pytest.mark.parametrize(
    ("role", "nth", "phase", "label", "calls_made"),
    [
        ("selector", 1, "selecting", "deciding how to handle your request.", 1),
        ("planner", 1, "planning", "writing the plan.", 2),
        ("developer", 1, "developing", "carrying out the plan (round 1).", 3),
        ("reviewer", 1, "reviewing", "reviewing the work (round 1).", 4),
        ("developer", 2, "developing", "carrying out the plan (round 2).", 5),
        ("reviewer", 2, "reviewing", "reviewing the work (round 2).", 6),
    ],
)
async def test_failure_in_each_phase_ends_with_a_clear_message(
    autojump_clock, role, nth, phase, label, calls_made
):
    script = {key: list(value) for key, value in FULL_SCRIPT.items()}
    script[role][nth - 1] = RoleFailed(
        failure="tool_error", message="unexpected status 401", worker_id=4
    )
    harness = Harness(FakeCaller(script))
    result = await harness.plan(thread_id="dev-t0", worker_id=2)

    assert len(harness.caller.calls) == calls_made
    assert result.failed_phase == phase
    assert not result.ok
    assert result.error == "unexpected status 401 (tool_error)"
    assert result.text.startswith(f"❌ Codex failed while {label} Unexpected status 401.")
    assert "tool_error" not in result.text
    assert result.mode_used == "plan"
    last = harness.traces[-1]
    assert (last.role, last.outcome, last.worker_id) == (role, "failed", 4)
    assert last.detail == "tool_error: unexpected status 401"
    assert len(harness.traces) == calls_made
    # What the request reached before the failure is kept: the selector's decision, the plan.
    assert (result.selector is None) == (role == "selector")
    assert result.plan == (None if role in ("selector", "planner") else THE_PLAN)
    if (role, nth) == ("developer", 2):
        # Work from round 1 is kept and reported; the developer thread survives for next time.
        assert result.files_changed == ("a.py",)
        assert "a.py" in result.text
        assert result.developer_thread_id == "dev-t0"
        assert result.verdict == "changes"
    if role in ("selector", "planner"):
        assert result.rounds_used == 0
        assert (result.developer_thread_id, result.developer_worker_id) == ("dev-t0", 2)


async def test_failure_in_single_mode_names_the_phase(autojump_clock):
    failed = RoleFailed(failure="worker_died", message="worker 1 exited")
    harness = Harness(FakeCaller({"developer": [failed]}))
    result = await harness.single(thread_id="dev-t0", worker_id=1)
    assert result.failed_phase == "developing"
    assert result.text.startswith(
        "❌ Codex failed while working on your request. "
        "The Codex process working on it stopped unexpectedly."
    )
    assert "worker_died" not in result.text
    assert "Nothing else was run" not in result.text
    assert (result.developer_thread_id, result.developer_worker_id) == ("dev-t0", 1)
    assert harness.trace_keys() == [("developer", 1, "failed")]


async def test_a_codex_error_in_plan_mode_says_what_happened_in_words(autojump_clock):
    failed = RoleFailed(failure="codex_error", message="exceeded retry limit, last status: 429")
    harness = Harness(FakeCaller({"selector": [PLAN], "planner": [failed]}))
    result = await harness.plan()
    assert result.text == (
        "❌ Codex failed while writing the plan. The model provider is limiting how often Codex "
        "may ask (429 Too Many Requests), and Codex's own retries did not get through. Wait a "
        "minute before sending it again.\n\nThe steps after this one did not run.\n\n"
        "Send the request again to retry, or /new to start over."
    )
    assert result.error == "exceeded retry limit, last status: 429 (codex_error)"


async def test_an_empty_plan_still_carries_out_the_request_reviewed(autojump_clock):
    harness = Harness(
        FakeCaller(
            {
                "selector": [PLAN],
                "planner": ["  \n"],
                "developer": [report("cli.py")],
                "reviewer": [APPROVED],
            }
        )
    )
    result = await harness.plan()
    assert result.ok
    assert result.verdict == "approved"
    assert result.plan is None
    assert harness.reporter.phases == [
        ("selecting", ""),
        ("planning", "several files"),
        ("developing round 1", NO_PLAN),  # no plan message: the user reads why instead
        ("reviewing round 1", ""),
    ]
    _, _, developer, reviewer = harness.caller.calls
    assert "add a --verbose flag" in developer.prompt
    assert "plan" not in developer.prompt.lower()
    assert "Plan:" not in reviewer.prompt
    assert "Developer's report:\nDid the work." in reviewer.prompt


async def test_a_caller_crash_is_traced_and_propagates(autojump_clock):
    harness = Harness(FakeCaller({"selector": [PLAN], "planner": [RuntimeError("adapter bug")]}))
    with pytest.raises(RuntimeError, match="adapter bug"):
        await harness.plan()
    assert harness.trace_keys()[-1] == ("planner", None, "crashed")
    assert harness.traces[-1].detail == "RuntimeError"


# --- cancellation -----------------------------------------------------------------------------


async def cancel_during(
    harness: Harness, role: Role, nth: int, *, mode: str
) -> tuple[bool, trio.CancelScope]:
    """Start the workflow, cancel its scope once `role`'s `nth` call is in flight."""
    propagated = False
    with trio.fail_after(CEILING), trio.CancelScope() as scope:

        async def cancel_when_started() -> None:
            await harness.caller.started_event(role, nth).wait()
            scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel_when_started)
            try:
                if mode == "plan":
                    await harness.plan(thread_id="dev-t0", worker_id=2)
                else:
                    await harness.single(thread_id="dev-t0", worker_id=2)
            except trio.Cancelled:
                propagated = True
                raise
    return propagated, scope


@pytest.mark.parametrize(
    ("role", "nth", "phase"),
    [
        ("selector", 1, "selecting"),
        ("planner", 1, "planning"),
        ("developer", 1, "developing round 1"),
        ("reviewer", 1, "reviewing round 1"),
        ("developer", 2, "developing round 2"),
        ("reviewer", 2, "reviewing round 2"),
    ],
)
async def test_cancel_in_each_phase_propagates(autojump_clock, role, nth, phase):
    harness = Harness(FakeCaller({key: list(value) for key, value in FULL_SCRIPT.items()}))
    propagated, scope = await cancel_during(harness, role, nth, mode="plan")

    assert propagated, "trio.Cancelled was swallowed by the workflow"
    assert scope.cancelled_caught
    assert harness.caller.cancelled == [role]
    assert harness.caller.calls[-1].role == role
    assert harness.reporter.names()[-1] == phase
    last = harness.traces[-1]
    assert (last.role, last.outcome) == (role, "cancelled")
    assert last.round == (None if role in ("selector", "planner") else nth)
    assert [line.outcome for line in harness.traces[:-1]] == ["succeeded"] * (
        len(harness.traces) - 1
    )


async def test_cancel_in_single_mode_propagates(autojump_clock):
    harness = Harness(FakeCaller({"developer": [report("a.py")]}))
    propagated, scope = await cancel_during(harness, "developer", 1, mode="single")
    assert propagated
    assert scope.cancelled_caught
    assert harness.caller.cancelled == ["developer"]
    assert harness.trace_keys() == [("developer", 1, "cancelled")]
    assert harness.traces[0].thread_id == "dev-t0"


# --- dispatch and instructions ----------------------------------------------------------------


@pytest.mark.parametrize(("mode", "roles"), [("single", ["developer"]), ("plan", ["selector"])])
async def test_carry_out_workflow_dispatches_on_the_mode(autojump_clock, mode, roles):
    caller = FakeCaller({"developer": ["done"], "selector": [SINGLE]})
    reporter = FakeReporter()
    with trio.fail_after(CEILING):
        result = await carry_out_workflow(
            "do it",
            mode=mode,
            caller=caller,
            reporter=reporter,
            trace=lambda line: None,
            instructions=INSTRUCTIONS,
        )
    assert [call.role for call in caller.calls][: len(roles)] == roles
    assert result.mode_used == "single"
    assert (result.selector is None) == (mode == "single")


async def test_instruction_overrides_reach_their_role_only(autojump_clock, tmp_path: Path):
    override = tmp_path / "reviewer.md"
    override.write_text("Review like a hawk. Answer JSON only.", encoding="utf-8")
    instructions = load_instructions({"reviewer": override}, system_prompt="Project rules.")
    harness = Harness(FakeCaller({key: list(value) for key, value in FULL_SCRIPT.items()}))
    await harness.plan(instructions=instructions)

    by_role = {call.role: call.instructions for call in harness.caller.calls}
    assert by_role["reviewer"] == "Project rules.\n\n---\n\nReview like a hawk. Answer JSON only."
    assert by_role["developer"].startswith("Project rules.")
    assert "Files changed:" in by_role["developer"]
    assert '"route"' in by_role["selector"]
    assert "numbered plan" in by_role["planner"]


def test_a_review_that_ends_inside_a_code_block_leaves_the_summary_out_of_it() -> None:
    """The reviewer's feedback sits between the summary's head and the developer's report:
    a fence it leaves open is closed, or the report would show as code."""
    summary = workflow_prompts.plan_summary(
        verdict="changes",
        feedback="Fix this:\n```py\nassert x\n",
        rounds=3,
        max_rounds=3,
        files=("a.py",),
        report="Done.",
    )
    assert (
        "```py\nassert x\n```\n\nFiles changed: a.py\n\nDeveloper's report (round 3):\nDone."
        in (summary)
    )


def test_a_last_review_that_said_nothing_is_not_an_approval_in_words() -> None:
    summary = workflow_prompts.plan_summary(
        verdict="changes",
        feedback="The reviewer gave no answer. Re-check your changes…",
        rounds=3,
        max_rounds=3,
        files=(),
        report="Done.",
        unreadable="",
    )
    assert summary.split("\n\n")[1] == (
        "The last review was not a clear “approved” or “changes”, so it does not count as an "
        "approval."
    )
