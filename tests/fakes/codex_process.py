"""In-memory Codex workers (`orchestrator.ports.CodexWorker`) for pool and chat tests under the
autojump clock. By default they behave like the MCP backend: a cancelled turn leaves the worker
unusable, and `interrupt` kills it. ``FakeProcesses(app_server=True)`` behaves like ``codex
app-server``: a cancelled turn is interrupted in place (the worker stays reusable), and a thread
outlives its process: another worker resumes it unless a living process still holds it (then a
fresh thread, as the edge falls back)."""

from __future__ import annotations

import itertools
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec
import trio

from orchestrator.codex_runs import (
    AgentMessageDelta,
    ApprovalAsk,
    ApprovalDecision,
    CodexJob,
    CodexNotice,
    CodexProgress,
    JobDone,
    JobFailed,
    JobOutcome,
    RunStarted,
)
from orchestrator.errors import WorkerStartError
from orchestrator.ports import ModelChoice, RateLimits, SteerResult
from orchestrator.workflow_types import ContextFill

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

CONTEXT_WINDOW = 258_400
"""The model's context window the fake reports (gpt-5.5's, as Codex 0.171.0 reports it)."""


@dataclass
class Rule:
    match: str
    reply: str | None = None
    delay: float = 0.0
    events: list[CodexProgress] = field(default_factory=list)
    approval: ApprovalAsk | None = None
    approval_after: float = 0.0
    """Seconds the turn works before it asks `approval`."""
    die: bool = False
    """The process dies mid-call: once the model began (a word of its answer)."""
    die_on_start: bool = False
    """The process dies once the turn started, before the model said anything."""
    hang: bool = False
    error: str | None = None
    silent_for: float = 0.0
    reconnecting: bool = False
    """Like an unreachable endpoint: "Reconnecting..." notices at 0, 5, 15, 35, 75 s, then
    every 60 s, for ever (measured on Codex 0.171.0)."""
    background: tuple[str, ...] = ()
    """Commands left running after the turn (app-server: named in the outcome)."""
    context_tokens: int = 0
    """When set, the answer says the thread's context holds this many tokens of
    `CONTEXT_WINDOW`."""
    deaf_to_interrupt: bool = False
    """App-server: like a server that stopped answering (wedged, SIGSTOPped), a cancel of
    the turn gets no reply and leaves the worker unusable, as an MCP cancel does."""


@dataclass
class FakeProcess:
    worker_id: int
    pid: int
    owner: FakeProcesses
    threads: int = 0
    alive: bool = True
    rss: float = 60.0
    wedged: bool = False
    ping_delay: float = 0.0
    """Seconds the process takes to answer a ping."""
    killed: bool = False
    closed: bool = False
    poisoned: bool = False
    doomed: bool = False
    """Killed an instant ago: still looks alive, but the next call finds it dead (no event)."""
    thread_ids: set[str] = field(default_factory=set)
    calls: list[CodexJob] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    in_flight: set[trio.CancelScope] = field(default_factory=set)
    running: dict[str, list[str]] = field(default_factory=dict)
    """Conversation → texts steered into its running turn."""
    exited: trio.Event = field(default_factory=trio.Event)

    @property
    def reusable(self) -> bool:
        return self.alive and not self.poisoned

    @property
    def resumes_threads(self) -> bool:
        return self.owner.app_server

    def rss_mb(self) -> float:
        return self.rss

    def die(self) -> None:
        """Like the real process exiting: every call in flight ends as ``worker_died``, and
        `wait_exited` returns."""
        self.alive = False
        self.exited.set()
        for scope in self.in_flight:
            scope.cancel()

    async def wait_exited(self) -> None:
        await self.exited.wait()

    async def run_turn(
        self,
        job: CodexJob,
        *,
        on_event: Callable[[CodexProgress], None],
        on_approval: Callable[[ApprovalAsk], Awaitable[ApprovalDecision]],
    ) -> JobOutcome:
        self.calls.append(job)
        self.owner.in_flight += 1
        try:
            with trio.CancelScope() as scope:
                self.in_flight.add(scope)
                if self.doomed:
                    self.alive = False
                if self.alive:
                    return await self._call(job, on_event, on_approval)
            return JobFailed(failure="worker_died", message="died", worker_id=self.worker_id)
        except trio.Cancelled:
            deaf = self.wedged or self.owner.rule_for(job.prompt).deaf_to_interrupt
            if self.owner.app_server and deaf:  # the edge waits for the interrupt's answer
                with trio.CancelScope(shield=True):
                    await trio.sleep(self.owner.interrupt_grace)
            if not self.owner.app_server or deaf:
                self.poisoned = True  # like an MCP call: the process cannot be reused
            raise
        finally:
            self.in_flight.discard(scope)
            self.owner.in_flight -= 1

    async def _call(self, job, on_event, on_approval) -> JobOutcome:
        steered = self.running.setdefault(job.conversation, [])
        try:
            outcome = await self._turn(job, on_event, on_approval)
        finally:
            del self.running[job.conversation]
        if steered and isinstance(outcome, JobDone):
            text = f"{outcome.text} [steered: {' | '.join(steered)}]"
            outcome = msgspec.structs.replace(outcome, text=text)
        return outcome

    async def _turn(self, job, on_event, on_approval) -> JobOutcome:
        if self.wedged:  # like a stopped server: no answer to anything, not even a ping
            await trio.sleep_forever()
        rule = self.owner.rule_for(job.prompt)
        resume = self.owner.app_server and job.thread_id is not None
        if resume and job.thread_id not in self.thread_ids:
            if self.owner.resumable(job.thread_id):
                self.thread_ids.add(job.thread_id)
                self.threads += 1
                self.owner.resumed.append((self.worker_id, job.thread_id))
            else:
                job = msgspec.structs.replace(job, thread_id=None)
        if job.thread_id is not None and job.thread_id not in self.thread_ids:
            return JobFailed(
                failure="codex_error",
                message=f"Session not found for thread_id: {job.thread_id}",
                worker_id=self.worker_id,
            )
        thread_id = job.thread_id
        if thread_id is None:  # thread/start comes before the turn's first event
            self.threads += 1
            thread_id = f"w{self.worker_id}-p{self.pid}-t{self.threads}"
            self.thread_ids.add(thread_id)
            self.owner.stored.add(thread_id)
        # An app-server thread outlives a cancelled turn, and says which it is.
        started_in = thread_id if self.owner.app_server else ""
        on_event(RunStarted(worker_id=self.worker_id, thread_id=started_in))
        for event in rule.events:
            on_event(event)
        suffix = ""
        if rule.approval is not None:
            await trio.sleep(rule.approval_after)
            suffix = f" [{await on_approval(rule.approval)}]"
        if rule.reconnecting:
            waits = itertools.chain([0.1, 4.9, 10, 20, 40], itertools.repeat(60))
            for wait in waits:
                await trio.sleep(wait)
                notice = "Reconnecting... waiting for network"
                on_event(CodexNotice(level="stream_error", message=notice))
        if rule.silent_for:
            await trio.sleep(rule.silent_for)
            on_event(AgentMessageDelta(text="back"))
        if rule.die or rule.die_on_start:
            if rule.die:
                on_event(AgentMessageDelta(text="Working"))
            self.die()
            return JobFailed(failure="worker_died", message="died", worker_id=self.worker_id)
        if rule.hang:
            await trio.sleep_forever()
        await trio.sleep(rule.delay)
        if rule.error is not None:
            return JobFailed(
                failure="codex_error",
                message=rule.error,
                worker_id=self.worker_id,
                thread_id=thread_id,
            )
        text = (rule.reply if rule.reply is not None else f"FAKE: {job.prompt}") + suffix
        if rule.background and self.owner.app_server:
            self.owner.background[thread_id] = rule.background
            return JobDone(
                text=text,
                thread_id=thread_id,
                worker_id=self.worker_id,
                background=rule.background,
            )
        context = None
        if rule.context_tokens:
            context = ContextFill(
                thread_id=thread_id, tokens=rule.context_tokens, window=CONTEXT_WINDOW
            )
        return JobDone(text=text, thread_id=thread_id, worker_id=self.worker_id, context=context)

    async def ping(self) -> None:
        self.owner.pings += 1
        if self.wedged:
            await trio.sleep_forever()
        await trio.sleep(self.ping_delay)

    async def release_thread(self, thread_id: str) -> tuple[str, ...]:
        self.released.append(thread_id)
        return self.owner.background.pop(thread_id, ())

    @property
    def controls(self) -> bool:
        return self.owner.app_server

    async def steer(self, conversation: str, text: str) -> SteerResult:
        if not self.owner.app_server:
            return "unsupported"
        self.owner.steers.append((self.worker_id, conversation, text))
        if conversation not in self.running or self.owner.steer_refused:
            return "ended"
        self.running[conversation].append(text)
        return "added"

    async def models(self) -> tuple[ModelChoice, ...]:
        return self.owner.models if self.owner.app_server else ()

    async def rate_limits(self) -> RateLimits | None:
        return self.owner.limits if self.owner.app_server else None

    async def stop_background(self, thread_id: str) -> tuple[str, ...]:
        self.owner.stops.append((self.worker_id, thread_id))
        return self.owner.background.pop(thread_id, ())

    async def interrupt(self) -> None:
        """Kills, as the MCP backend does, taking `FakeProcesses.stop_delay` (alive until
        then, holding its threads)."""
        await trio.sleep(self.owner.stop_delay)
        self.die()
        self.killed = True


class FakeProcesses:
    """The factory side: every process started, rules by prompt substring, start failures."""

    def __init__(self, *, app_server: bool = False) -> None:
        self.app_server = app_server
        self.stored: set[str] = set()
        """Threads on "disk" (app-server: resumable by any process)."""
        self.resumed: list[tuple[int, str]] = []
        self.rules: list[Rule] = []
        self.steers: list[tuple[int, str, str]] = []
        self.steer_refused = False
        """Like a turn that moved on: the server refuses ``turn/steer``."""
        self.stops: list[tuple[int, str]] = []
        self.background: dict[str, tuple[str, ...]] = {}
        """Thread → commands still running after its turn."""
        self.models: tuple[ModelChoice, ...] = (
            ModelChoice(
                id="gpt-a",
                name="GPT A",
                is_default=True,
                default_effort="medium",
                efforts=("low", "medium", "high"),
            ),
            ModelChoice(id="gpt-b", name="GPT B", default_effort="low", efforts=("low",)),
        )
        self.limits: RateLimits | None = None
        self.started: list[FakeProcess] = []
        self.fail_starts = 0
        self.start_delay = 0.0
        self.start_delays: dict[int, float] = {}
        """Seconds the start of a worker id takes, where it differs from `start_delay`."""
        self.failing_workers: set[int] = set()
        """Worker ids whose every start fails (after their delay)."""
        self.interrupt_grace = 0.0
        """Seconds a cancelled turn of a worker that no longer answers waits for its interrupt
        (the app-server edge's ``INTERRUPT_GRACE``)."""
        self.stop_delay = 0.0
        """Seconds a dropped worker takes to die (a server that ignores SIGTERM until the
        kill ladder's SIGKILL)."""
        self.pings = 0
        self.in_flight = 0
        self._pids = itertools.count(1000)

    def rule(self, match: str, **kw) -> Rule:
        rule = Rule(match, **kw)
        self.rules.insert(0, rule)
        return rule

    def rule_for(self, prompt: str) -> Rule:
        for rule in self.rules:
            if rule.match in prompt:
                return rule
        return Rule("")

    def resumable(self, thread_id: str) -> bool:
        """Stored, and no living process holds it (one writer per thread)."""
        holders = [p for p in self.started if p.alive and thread_id in p.thread_ids]
        return thread_id in self.stored and not holders

    def current(self, worker_id: int) -> FakeProcess:
        return [p for p in self.started if p.worker_id == worker_id][-1]

    @asynccontextmanager
    async def factory(self, worker_id: int) -> AsyncIterator[FakeProcess]:
        await trio.sleep(self.start_delays.get(worker_id, self.start_delay))
        if self.fail_starts or worker_id in self.failing_workers:
            self.fail_starts = max(0, self.fail_starts - 1)
            raise WorkerStartError("scripted start failure")
        process = FakeProcess(worker_id=worker_id, pid=next(self._pids), owner=self)
        self.started.append(process)
        try:
            yield process
        finally:
            process.closed = True
            process.die()
