"""The threads one ``codex app-server`` process holds: start, resume, background commands.

This module owns the per-process thread bookkeeping of `orchestrator.edges.codex_app_server`
(`AppServerThreads`, one per `CodexAppServer`): which threads the process has loaded, the
developer instructions the model has on each, and how many it ever loaded (the pool recycles a
worker by that count). A job's thread is started (``thread/start``, the job's context preamble
ahead of its prompt) or resumed (``thread/resume``, ``excludeTurns``), falling back to a
fresh thread when the resume is refused (another process still holds it: one writer per
thread). Developer instructions reach the model only at ``thread/start``, so a job whose
instructions differ from those its thread has sends them ahead of the prompt
(`instructions_preamble`); which ones a thread resumed here has is the job's
`CodexJob.thread_instructions` (its chat's record, kept across restarts), else unknown. A
sandboxed thread starts and resumes in the fence's permission profile
(`orchestrator.agent_fence`), sent as the thread's ``config`` instead of ``sandbox``.

It also owns the commands a turn left running: listing them after a completed turn
(`JobDone.background`; the chat words them, as only it knows what the thread is for) and
stopping them (``thread/backgroundTerminals/clean``, and after a cancel the commands that
escaped the server's tree). The turns, the process and its tree stay with
`CodexAppServer`; the wire types are in `orchestrator.wire.codex_app_server`.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import TYPE_CHECKING, Final, final

import msgspec
import trio

from orchestrator.agent_fence import PROFILE_NAME
from orchestrator.edges.jsonrpc_lines import Refused
from orchestrator.edges.processes import kill_orphans
from orchestrator.errors import WorkerUnavailable
from orchestrator.prompts import instructions_digest
from orchestrator.wire.codex_app_server import (
    BackgroundTerminalsResponse,
    ThreadIdParams,
    ThreadResponse,
    ThreadResumeParams,
    ThreadStartParams,
    classify_error,
    command_text,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from orchestrator.agent_fence import AgentFence
    from orchestrator.codex_runs import CodexJob, JobDone
    from orchestrator.edges.jsonrpc_lines import LineRpc
    from orchestrator.wire.codex_app_server import BackgroundTerminal

__all__ = [
    "BACKGROUND_LIST_TIMEOUT",
    "ORPHAN_CHECKS",
    "ORPHAN_INTERVAL",
    "AppServerThreads",
    "instructions_preamble",
]

logger: Final = logging.getLogger(__name__)

BACKGROUND_LIST_TIMEOUT: Final = 5.0
"""Seconds the listing of a finished turn's background commands may take (it answers in
milliseconds; a wedged server must not hold the answer back)."""

ORPHAN_CHECKS: Final = 3
ORPHAN_INTERVAL: Final = 0.1
"""After a cancel's clean, up to `ORPHAN_CHECKS` looks, `ORPHAN_INTERVAL` s apart, for commands
re-parented away from the server (``clean`` kills a command's process group ~0.1 s after it
answers; a ``setsid`` child of it survives)."""

_UNKNOWN_INSTRUCTIONS: Final = "\0unknown"
"""The developer instructions of a resumed thread: stored with it, unknown here."""

_THREAD: Final = msgspec.json.Decoder(ThreadResponse)
_TERMINALS: Final = msgspec.json.Decoder(BackgroundTerminalsResponse)


@final
class AppServerThreads:
    """The threads loaded in one app-server process (never unloaded).

    Attributes:
        count: threads started or resumed in this process.
    """

    def __init__(
        self, rpc: LineRpc, worker_id: int, server_pid: int, fence: AgentFence | None = None
    ) -> None:
        self._rpc = rpc
        self._worker_id = worker_id
        self._server_pid = server_pid
        self._fence = fence
        """What a sandboxed thread's commands may not read (None: nothing fenced off)."""
        self._fence_refused = False
        self.count = 0
        self._loaded: set[str] = set()
        self._instructions: dict[str, str] = {}
        """The `instructions_digest` of the developer instructions the model has on each
        loaded thread (after a resume: the job's `thread_instructions`, what its chat last
        saw there, else `_UNKNOWN_INSTRUCTIONS`: the stored ones are kept, unknown to us)."""
        self._base: dict[str, tuple[str, str | None]] = {}
        """The model and reasoning effort each thread was started or resumed with."""
        self._current: dict[str, tuple[str, str | None]] = {}
        """The model and effort each thread runs with now (``turn/start`` overrides persist)."""

    async def try_fence(self, cwd: str) -> str | None:
        """Start an ephemeral ``workspace-write`` thread in `cwd` in the fence's permission
        profile (``doctor``); return the profile Codex says it runs, None for none (or no
        fence). Codex reads AGENTS.md through the sandbox as it starts a thread, so one that
        cannot run on this machine, or cannot hide a path, refuses here.

        Raises:
            Refused: Codex refused ``thread/start``.
            msgspec.DecodeError: its answer is not a thread.
            WorkerUnavailable: the process is gone.
        """
        if self._fence is None:
            return None
        params = ThreadStartParams(
            cwd=cwd,
            config=self._fence.thread_config("workspace-write"),
            approval_policy="never",
            ephemeral=True,
        )
        started = _THREAD.decode(await self._rpc.result("thread/start", params))
        return started.active_permission_profile.id if started.active_permission_profile else None

    def loaded(self, thread_id: str) -> bool:
        """True when this process has started or resumed `thread_id`."""
        return thread_id in self._loaded

    async def open(self, job: CodexJob) -> tuple[str, str]:
        """The thread `job` runs on (started or resumed) and the prompt to send.

        Raises:
            Refused: Codex refused ``thread/start``.
            msgspec.DecodeError: its answer is not a thread.
            WorkerUnavailable: the process is gone.
        """
        if job.thread_id is not None:
            thread_id = job.thread_id
            if thread_id not in self._loaded:
                config = self._config(job)
                resume = ThreadResumeParams(
                    thread_id=thread_id,
                    exclude_turns=True,
                    cwd=job.cwd,
                    sandbox=None if config else job.sandbox,
                    config=config,
                    approval_policy=job.approval_policy,
                )
                try:
                    resumed = _THREAD.decode(await self._rpc.result("thread/resume", resume))
                except Refused as error:
                    logger.info(
                        "worker %d: resume of %s refused (%s); a fresh thread",
                        self._worker_id,
                        thread_id,
                        classify_error(str(error)),
                    )
                    return await self._start(job)
                self._loaded.add(thread_id)
                self._instructions[thread_id] = job.thread_instructions or _UNKNOWN_INSTRUCTIONS
                self._settle_base(thread_id, resumed)
                if config is not None:
                    self._check_fence(thread_id, resumed)
                self.count += 1
            prompt = job.prompt
            wanted = instructions_digest(job.developer_instructions)
            if wanted and self._instructions.get(thread_id) != wanted:
                prompt = instructions_preamble(job.developer_instructions, prompt)
            self._instructions[thread_id] = wanted
            return thread_id, prompt
        return await self._start(job)

    async def _start(self, job: CodexJob) -> tuple[str, str]:
        config = self._config(job)
        params = ThreadStartParams(
            cwd=job.cwd,
            model=job.model or None,
            sandbox=None if config else job.sandbox,
            config=config,
            approval_policy=job.approval_policy,
            developer_instructions=job.developer_instructions or None,
        )
        started = _THREAD.decode(await self._rpc.result("thread/start", params))
        thread_id = started.thread.id
        self._settle_base(thread_id, started)
        if config is not None:
            self._check_fence(thread_id, started)
        self._loaded.add(thread_id)
        self._instructions[thread_id] = instructions_digest(job.developer_instructions)
        self.count += 1
        preamble = job.context_preamble
        return thread_id, (f"{preamble}\n\n{job.prompt}" if preamble else job.prompt)

    def _config(self, job: CodexJob) -> dict[str, object] | None:
        """The thread's config override: the fence's permission profile for a sandboxed job."""
        return self._fence.thread_config(job.sandbox) if self._fence else None

    def _settle_base(self, thread_id: str, response: ThreadResponse) -> None:
        base = (response.model or "", response.reasoning_effort)
        self._base[thread_id] = base
        self._current[thread_id] = base

    def _check_fence(self, thread_id: str, response: ThreadResponse) -> None:
        """Log, once per process, a thread that runs without the fence's profile."""
        profile = response.active_permission_profile
        if (profile is not None and profile.id == PROFILE_NAME) or self._fence_refused:
            return
        self._fence_refused = True  # the same Codex says the same of every thread
        logger.warning(
            "worker %d: Codex runs thread %s without the permission profile that keeps the "
            "bot's own files from the agent (it reports %s): the sandbox lets the agent read "
            "them; permission profiles need a newer Codex",
            self._worker_id,
            thread_id,
            profile.id if profile else "none",
        )

    def turn_settings(
        self, thread_id: str, job: CodexJob, default_efforts: Mapping[str, str]
    ) -> tuple[str | None, str | None]:
        """The model and effort to send with the turn (None: the thread keeps its own).

        The chat's choice (`job.model_choice`, `job.effort`) else the thread's own (the
        profile's model or Codex's configured one, from its start); sent only when it
        differs from what the thread runs with, because an override persists. Going back to a
        thread whose own effort is the model's default sends that default by name
        (`default_efforts`, from ``model/list``): there is no way to clear an override."""
        base_model, base_effort = self._base.get(thread_id, ("", None))
        model_now, effort_now = self._current.get(thread_id, (base_model, base_effort))
        model = job.model_choice or base_model
        effort = job.effort or base_effort or default_efforts.get(model or model_now)
        return (
            model if model and model != model_now else None,
            effort if effort and effort != (effort_now or default_efforts.get(model_now)) else None,
        )

    def overridden(self, thread_id: str) -> bool:
        """Whether `thread_id` runs with another model or effort than it started with."""
        return self._current.get(thread_id) != self._base.get(thread_id)

    def settled(self, thread_id: str, model: str | None, effort: str | None) -> None:
        """``turn/start`` took `model` and `effort` (None: unchanged) for `thread_id`."""
        model_now, effort_now = self._current.get(thread_id, ("", None))
        self._current[thread_id] = (model or model_now, effort or effort_now)

    async def background_terminals(self, thread_id: str) -> list[BackgroundTerminal]:
        """Commands of `thread_id` still running after their turn (``[]`` when the server
        cannot say)."""
        with suppress(Refused, msgspec.DecodeError, WorkerUnavailable):
            raw = await self._rpc.result(
                "thread/backgroundTerminals/list", ThreadIdParams(thread_id=thread_id)
            )
            return _TERMINALS.decode(raw).data
        return []

    async def stop_background(self, thread_id: str) -> None:
        """Stop the commands `thread_id` left running (``thread/backgroundTerminals/clean``)."""
        with suppress(WorkerUnavailable):
            response = await self._rpc.request(
                "thread/backgroundTerminals/clean", ThreadIdParams(thread_id=thread_id)
            )
            if response.error is not None:
                kind = classify_error(response.error.message)
                logger.warning("worker %d: clean failed (%s)", self._worker_id, kind)

    async def stop_listed(self, thread_id: str) -> tuple[str, ...]:
        """Stop the commands `thread_id` left running and return them (the Stop button)."""
        running = await self.background_terminals(thread_id)
        if running:
            await self.stop_background(thread_id)
        return tuple(command_text(terminal.command) for terminal in running)

    async def stop_commands(
        self, thread_id: str, *, before: set[int], snapshot: Callable[[], Awaitable[set[int]]]
    ) -> None:
        """After a cancel: stop the commands `thread_id` left running, then kill those that
        escaped the server's tree (a ``setsid`` child whose shell ``clean`` killed is
        re-parented to us), so a cancel leaves no process behind.

        `before` is the server's tree taken before the interrupt; `snapshot` takes it again.
        """
        await self.stop_background(thread_id)
        known = before | await snapshot()
        for _ in range(ORPHAN_CHECKS):
            await trio.sleep(ORPHAN_INTERVAL)  # the killed shells' children re-parent
            known |= await snapshot()
            killed = await kill_orphans(self._server_pid, known)
            if killed:
                logger.info("worker %d: stopped %d orphaned commands", self._worker_id, len(killed))
            else:
                return

    async def with_background(self, done: JobDone, *, on_running: Callable[[], object]) -> JobDone:
        """`done` with the commands still running after the turn (`JobDone.background`);
        `on_running` is called first when there are any (they may outlive the process:
        remember their pids)."""
        with trio.move_on_after(BACKGROUND_LIST_TIMEOUT):
            running = await self.background_terminals(done.thread_id)
            if running:
                on_running()
                commands = tuple(command_text(terminal.command) for terminal in running)
                return msgspec.structs.replace(done, background=commands)
        return done


def instructions_preamble(instructions: str, prompt: str) -> str:
    """The prompt with the role's developer instructions ahead of it: a resumed thread keeps
    the ones it was started with, and a thread changing roles needs the new ones."""
    return (
        "<developer_instructions>\nFrom now on, follow these instructions (they replace "
        f"earlier ones):\n{instructions}\n</developer_instructions>\n\n{prompt}"
    )
