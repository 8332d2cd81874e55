"""What a running request is doing, as its progress message and ``/status`` say it.

`follow_progress` turns the pool's progress events (a worker taken, commands, patches,
warnings, what the model is thinking, the answer as it streams) into the request's
`Progress`; `live_text` writes the progress message from it, and `phase_words` names a
workflow phase in people's words.
`actors.chat_request` runs the one and shows the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING, Final, assert_never

import trio

from actors.chat_texts import format_duration
from orchestrator.codex_runs import (
    AgentMessageDelta,
    CodexNotice,
    CommandFinished,
    CommandStarted,
    PatchApplied,
    Reasoning,
    RunStarted,
    ThreadMoved,
    TokenCount,
    WaitingForWorker,
)
from orchestrator.words import one_line
from orchestrator.workflow_types import MAX_REVIEW_ROUNDS, NO_PLAN, UNREADABLE_REVIEW

if TYPE_CHECKING:
    from orchestrator.codex_runs import CodexProgress

__all__ = [
    "WAITING_FOR_CODEX",
    "WAITING_FOR_RELEASE",
    "WAITING_FOR_THE_USER",
    "WAITING_STEPS",
    "Progress",
    "follow_progress",
    "live_text",
    "may_write",
    "phase_words",
]

WAITING_FOR_THE_USER: Final = "Waiting for your answer to Codex's question"
"""What the progress message and /status say while an approval question is open."""

LAST_ACTIONS: Final = 4
"""Actions listed on the progress message."""

ANSWER_LINES: Final = 3
"""Latest lines of Codex's answer shown on the progress message as it streams."""

ANSWER_KEPT: Final = 2000
"""Characters of the streaming answer kept for the progress message."""

THINKING_KEPT: Final = 1000
THINKING_SHOWN: Final = 160
"""Characters of the reasoning summary part being written that are kept, and shown on one
line ("💭 Planning the change"): Codex's summaries start with a bold headline."""


@dataclass
class Progress:
    """What a request is doing, for its progress message and ``/status``.

    Written only by the request's own tasks; the chat reads it.
    """

    phase: str = "starting"
    detail: str = ""
    worker: int | None = None
    thread: str | None = None
    """The developer's Codex thread once a turn of it started, where a cancel leaves the thread
    fit to continue (`RunStarted.thread_id`): a first request's thread is kept after a cancel."""
    actions: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    ran: int = 0
    """Commands reported started in a phase that may write (not the read-only selector,
    planner or reviewer)."""
    held: int = 0
    """Of those, the ones reported before their approval question (``codex app-server``)
    and not approved (yet): they never ran (`actors.chat_approvals`)."""
    patched: bool = False
    """A patch applied."""
    answer: str = ""
    """The tail of the answer Codex is writing in the current phase."""
    answer_paused: bool = False
    """A step came after the answer's last piece (a command, a patch): the next piece belongs
    to another message of Codex's and starts on a new line."""
    thinking: str = ""
    """The part of the model's reasoning summary being written, until its next step."""
    warnings: set[str] = field(default_factory=set)
    """Warnings already shown (each once)."""
    told_waiting: bool = False
    live_shown: bool = False
    asking: int = 0
    """Approval questions open now: Codex waits for the user, not the other way round."""
    changed: trio.Event = field(default_factory=trio.Event)

    @property
    def acted(self) -> bool:
        """Codex may have changed the workspace: a patch applied, or a command ran in a phase
        that may write. A command that waits for an approval, or was denied one, did not run.
        Such a request is not run again by itself after a stop (`actors.chat_settle`)."""
        return self.patched or self.ran > self.held


WAITING_FOR_CODEX: Final = "waiting for Codex: other requests are using it"
"""The step shown while the run waits for a worker, until it starts on one."""

WAITING_FOR_RELEASE: Final = "waiting for Codex to stop the process that held this conversation"
"""The step shown while the run waits for a stopping worker's process to let go of its
thread (`WaitingForWorker.releasing`), until it starts on another."""

WAITING_STEPS: Final = (WAITING_FOR_CODEX, WAITING_FOR_RELEASE)
"""The steps that say the run has not started on a worker yet."""


async def follow_progress(
    progress: Progress, events: trio.MemoryReceiveChannel[CodexProgress], folder: str
) -> None:
    """Keep `progress` up to date from Codex's events; the files a patch changed are named
    relative to the working directory `folder` (Codex gives absolute paths)."""
    async for event in events:
        if isinstance(event, CommandStarted | CommandFinished | PatchApplied):
            progress.answer_paused = bool(progress.answer)  # a warning may come mid-sentence
        if not isinstance(event, Reasoning | TokenCount):
            progress.thinking = ""  # the thought led to this step
        match event:
            case RunStarted():
                progress.worker = event.worker_id  # for /status, not the progress message
                if event.thread_id and may_write(progress.phase):  # the developer's, not a reader's
                    progress.thread = event.thread_id
                for waiting in WAITING_STEPS:
                    if waiting in progress.actions:
                        progress.actions.remove(waiting)  # no longer true
            case WaitingForWorker():
                if progress.told_waiting:
                    continue
                progress.told_waiting = True
                progress.actions.append(
                    WAITING_FOR_RELEASE if event.releasing else WAITING_FOR_CODEX
                )
            case ThreadMoved():
                progress.actions.append("continuing in a new Codex session")
            case CommandStarted():
                if may_write(progress.phase):
                    progress.ran += 1
                progress.actions.append(f"$ {event.command}")
            case CommandFinished():
                started = f"$ {event.command}"
                ended = started + (
                    f" (failed, exit {event.exit_code})" if event.exit_code not in (0, None) else ""
                )
                if started in progress.actions:
                    progress.actions[_last_index(progress.actions, started)] = ended
                else:
                    progress.actions.append(ended)
            case PatchApplied() if event.success:
                progress.patched = True
                files = [_relative(path, folder) for path in event.files]
                progress.files.extend(path for path in files if path not in progress.files)
                _add_or_count(
                    progress.actions, "changed " + ", ".join(files) if files else "changed files"
                )
            case PatchApplied():  # denied, or it did not apply: nothing was changed
                files = [_relative(path, folder) for path in event.files]
                _add_or_count(
                    progress.actions, "did not change " + ", ".join(files) if files else "no change"
                )
            case TokenCount():
                continue  # the result carries the request's usage
            case CodexNotice():
                if event.message in progress.warnings:
                    continue
                progress.warnings.add(event.message)
                progress.actions.append(f"⚠️ {event.message}")
            case Reasoning():
                before = "" if event.part_start or event.item == "start" else progress.thinking
                progress.thinking = (before + event.text)[-THINKING_KEPT:]
            case AgentMessageDelta():
                gap = "\n" if progress.answer_paused else ""
                progress.answer_paused = False
                progress.answer = (progress.answer + gap + event.text)[-ANSWER_KEPT:]
            case _:
                assert_never(event)
        del progress.actions[:-LAST_ACTIONS]
        progress.changed.set()


_READ_ONLY_PHASES: Final = ("selecting", "planning", "reviewing")
"""Phases whose role runs in a read-only sandbox (`actors.role_caller`; ``reviewing round K``
too). The plan itself is a message, never a phase of the progress."""


def may_write(phase: str) -> bool:
    """Whether Codex works where it may write in `phase` (not a read-only role's)."""
    return not phase.startswith(_READ_ONLY_PHASES)


_ANSWERS_FOR_THE_BOT: Final = ("selecting", "reviewing")
"""Phases whose answer is JSON for the bot (a route, a verdict), not words for the user: the
bot says what it decided once it has read it."""


def _relative(path: str, folder: str) -> str:
    """`path` relative to `folder` when it lies inside it, else as it is."""
    try:
        return str(PurePath(path).relative_to(folder))
    except ValueError:
        return path


_NOTICES: Final = frozenset({NO_PLAN, UNREADABLE_REVIEW})
"""Details of a developer round that are the bot's own words, not what the reviewer asked for."""

_COUNTED: Final = re.compile(r"(?P<action>.*) \((?P<times>\d+) times\)")


def _add_or_count(actions: list[str], action: str) -> None:
    """Add `action`, or count it on the last line when that says the same: a file patched
    again and again would otherwise fill the progress message with one line, four times."""
    if actions:
        counted = _COUNTED.fullmatch(actions[-1])
        if counted is not None and counted["action"] == action:
            actions[-1] = f"{action} ({int(counted['times']) + 1} times)"
            return
        if actions[-1] == action:
            actions[-1] = f"{action} (2 times)"
            return
    actions.append(action)


def _last_index(items: list[str], item: str) -> int:
    return len(items) - 1 - items[::-1].index(item)


def phase_words(phase: str, detail: str = "") -> str:
    """A workflow phase as the user reads it (see `PhaseReporter` for the names)."""
    name, _, round_text = phase.partition(" round ")
    rounds = f" (round {round_text} of {MAX_REVIEW_ROUNDS})" if round_text else ""
    match name:
        case "starting":
            return "Starting"
        case "selecting":
            return "Deciding how to handle your request"
        case "planning":
            return "Writing a plan"
        case "developing" if not round_text:
            return "Working on your request"
        case "developing" if detail == NO_PLAN:
            return "Working on your request" + rounds
        case "developing" if round_text == "1" or not detail:
            return "Carrying out the plan" + rounds
        case "developing" if detail == UNREADABLE_REVIEW:
            return "Going over the work again" + rounds
        case "developing":
            return "Making the changes the reviewer asked for" + rounds
        case "reviewing":
            return "Reviewing the work" + rounds
        case _:
            return phase.capitalize()


def live_text(progress: Progress, started: float) -> str:
    """The progress message of a request that started at `started` (trio time)."""
    elapsed = format_duration(trio.current_time() - started)
    phase = phase_words(progress.phase, progress.detail)
    lines = [f"⏳ {phase}… {elapsed}"]
    if progress.asking:
        lines = [f"⏸ {WAITING_FOR_THE_USER}… {elapsed}"]
        if progress.phase not in ("starting", "developing"):
            lines.append(phase)  # plan mode: which role asks, in which round
    if progress.detail:
        asked = progress.phase.startswith("developing round ") and (progress.detail not in _NOTICES)
        lines.append(("The reviewer asked for: " if asked else "") + progress.detail[:300])
    if progress.actions:
        lines.append("")
        lines.extend(f"• {action[:200]}" for action in progress.actions)
    thought = one_line(progress.thinking.replace("**", ""), THINKING_SHOWN)
    if thought:
        lines.append("")
        lines.append(f"💭 {thought}")
    answer = [line for line in progress.answer.splitlines() if line.strip()][-ANSWER_LINES:]
    if answer and not progress.phase.startswith(_ANSWERS_FOR_THE_BOT):
        lines.append("")
        lines.append("Codex is writing:")
        lines.extend(line[:300] for line in answer)
    return "\n".join(lines)
