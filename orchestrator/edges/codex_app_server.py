"""One ``codex app-server`` process (Codex 0.171.0), spoken to as JSON-RPC lines over stdio.

This module owns the subprocess and speaks to it through `orchestrator.edges.jsonrpc_lines`
(the line transport: no length limit, 200 kB lines were measured; responses matched to their
requests, server request ids overlapping ours). The wire types and the translation of a turn
live in `orchestrator.wire.codex_app_server` and `orchestrator.wire.codex_app_server_turn`
(measured on Codex 0.171.0). Every notification goes to the turn running on its
``threadId``, and every server request is answered: an approval with the decision of that
turn's approval callback, anything else with an error. That routing, and the turns in flight
it routes to, are `orchestrator.edges.codex_app_server_calls`.

`CodexAppServer` implements the `orchestrator.ports.CodexWorker` port. Several threads run
turns at once in one process; a thread has at most one call here (a second
``turn/start`` would steer the running turn). A cancelled `CodexAppServer.run_turn`
ends its turn and keeps the process (`reusable` stays True): ``turn/interrupt``, wait for
``turn/completed``, then ``thread/backgroundTerminals/clean`` (the only way to stop its
commands; needs the ``experimentalApi`` capability we ask for at ``initialize``), then the
commands that escaped the server's tree (a ``setsid`` child) are killed and reaped; shielded
and bounded by `INTERRUPT_GRACE` (past it the process is `poisoned` and the pool replaces
it). `CodexAppServer.interrupt_thread` does the same for a thread from outside; the port's
`CodexAppServer.interrupt` (a worker the pool drops) kills the tree.

Threads outlive the process: which threads this process holds, how a job's thread is
started or resumed, and the commands a turn left running (named in the answer; stopped by
`CodexAppServer.release_thread` on ``/cancel`` when idle and ``/new``, and after a cancel) are
kept by `orchestrator.edges.codex_app_server_threads`. The chat's controls (steer a running
turn, the models and the turn's model and effort, rate limits) are
`orchestrator.edges.codex_app_server_controls`.

Lifecycle (`open_codex_app_server`): spawn in a new session, stderr appended to a log file,
the bot token removed from the environment (commands see all of it), ``initialize`` +
``initialized``; on exit a shielded, bounded teardown: close stdin, wait `GRACEFUL_EXIT`, then
kill the whole tree, including the commands Codex started (`kill_tree`, from /proc snapshots
taken whenever a command starts, after each call and at each ping).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Final, final

import msgspec
import trio

from orchestrator.codex_runs import JobDone, JobFailed
from orchestrator.edges.codex_app_server_calls import AppServerCalls, Call
from orchestrator.edges.codex_app_server_controls import AppServerControls
from orchestrator.edges.codex_app_server_threads import AppServerThreads
from orchestrator.edges.jsonrpc_lines import LineRpc, Refused
from orchestrator.edges.processes import (
    SCAN_ALLOWANCE,
    TreeSnapshots,
    kill_tree,
    rss_mb,
    serve_worker,
)
from orchestrator.errors import WorkerStartError, WorkerUnavailable
from orchestrator.wire.codex_app_server import (
    CODEX_APP_SERVER_VERSION,
    BackgroundTerminal,
    ClientInfo,
    InitializeCapabilities,
    InitializeParams,
    InitializeResponse,
    LoadedListParams,
    LocalImageInput,
    TextInput,
    TurnInterruptParams,
    TurnResponse,
    TurnStartParams,
    server_version,
)
from orchestrator.wire.codex_app_server_turn import TurnTranslator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
    from pathlib import Path

    from orchestrator.agent_fence import AgentFence
    from orchestrator.codex_runs import (
        ApprovalAsk,
        ApprovalDecision,
        CodexJob,
        CodexProgress,
        JobOutcome,
    )
    from orchestrator.ports import ModelChoice, RateLimits, SteerResult
    from orchestrator.wire.jsonrpc import Incoming, RpcError

__all__ = [
    "CLIENT_INFO",
    "GRACEFUL_EXIT",
    "INTERRUPT_GRACE",
    "CodexAppServer",
    "open_codex_app_server",
]

logger: Final = logging.getLogger(__name__)

_ProcessGone = WorkerUnavailable
"""The process exited or closed its pipes."""

CLIENT_INFO: Final = ClientInfo(
    name="codex-orchestrator", title="Codex Orchestrator", version="0.1.0"
)
"""``clientInfo.name`` becomes the thread's originator: keep it stable."""

GRACEFUL_EXIT: Final = 2.0
"""Seconds after closing stdin before the tree is killed (app-server exits in 0.06 to 0.37 s)."""

STOP_DEADLINE: Final = 4 * GRACEFUL_EXIT + 2 * SCAN_ALLOWANCE
"""Bound of the shielded stop: two snapshots, two `GRACEFUL_EXIT` waits and a kill ladder."""

INTERRUPT_GRACE: Final = 5.0
"""Seconds a cancelled call may spend interrupting its turn and cleaning its commands
(``turn/interrupt`` answers in ~11 ms, ``turn/completed`` follows at once)."""

_INIT: Final = msgspec.json.Decoder(InitializeResponse)
_TURN: Final = msgspec.json.Decoder(TurnResponse)


@final
class CodexAppServer:
    """One running ``codex app-server``. Created by `open_codex_app_server`.

    Attributes:
        worker_id: the pool's number for this worker.
        pid: the server's pid (its process group id too).
        poisoned: a cancelled call could not end its turn in time: kill the process.
        server_version: the Codex version from the ``initialize`` user agent.
    """

    def __init__(
        self,
        process: trio.Process,
        worker_id: int,
        nursery: trio.Nursery,
        fence: AgentFence | None = None,
    ) -> None:
        self._process = process
        self._nursery = nursery
        self.worker_id = worker_id
        self.pid = process.pid
        self.poisoned = False
        self.server_version = ""
        self.snapshots = TreeSnapshots(process)
        self.rpc = LineRpc(
            process,
            label=f"Codex worker {worker_id}",
            on_message=self._dispatch,
            on_end=self._process_gone,
        )
        self._threads = AppServerThreads(self.rpc, worker_id, process.pid, fence)
        self.controls_api = AppServerControls(self.rpc, self._threads, worker_id)
        """The requests beside turns: models, account, rate limits, steer (doctor too)."""
        self._calls = AppServerCalls(
            self.rpc, worker_id, nursery, snapshots=self.snapshots, controls=self.controls_api
        )

    resumes_threads: Final = True
    """A thread outlives this process: any app-server on the same CODEX_HOME resumes it
    (``thread/resume``), once the process holding it let go."""

    @property
    def threads(self) -> int:
        """Threads loaded in this process (started or resumed; never unloaded)."""
        return self._threads.count

    @property
    def alive(self) -> bool:
        """False once the server exited or closed its output (not merely on leaving). Its exit
        counts as `watch_exit` sees it, before the reader drains: a dead server takes no job
        (a read of a flag: the pool asks this of every position on every dispatch)."""
        return not self.rpc.exited.is_set() and not self.rpc.process_ended

    @property
    def reusable(self) -> bool:
        """A cancelled turn is interrupted in place: the worker stays usable unless that
        failed (`poisoned`) or the process is gone."""
        return not self.poisoned and self.rpc.usable()

    async def wait_exited(self) -> None:
        """Return once the server exited or closed its output (the transport's `exited`)."""
        await self.rpc.exited.wait()

    def rss_mb(self) -> float:
        """Resident memory of the server process, in MB (one small /proc read)."""
        return rss_mb({self.pid})

    # ------------------------------------------------------------------ wire

    def _process_gone(self) -> None:
        self._calls.process_gone()

    def _dispatch(self, message: Incoming) -> None:
        """A notification or server request, in wire order (`AppServerCalls.dispatch`)."""
        self._calls.dispatch(message)

    # ------------------------------------------------------------------ API

    async def handshake(self) -> None:
        """``initialize`` (experimental API on) + ``initialized``; `WorkerStartError` when
        the program does not answer as an app-server."""
        params = InitializeParams(
            client_info=CLIENT_INFO,
            capabilities=InitializeCapabilities(experimental_api=True),
        )
        try:
            result = await self.rpc.result("initialize", params)
            await self.rpc.write({"method": "initialized"})
        except _ProcessGone as error:
            raise WorkerStartError(
                f"the Codex app-server exited during startup ({error})"
            ) from None
        except Refused as error:
            raise WorkerStartError(f"initialize failed: {error}") from None
        try:
            self.server_version = server_version(_INIT.decode(result).user_agent)
        except msgspec.DecodeError:
            raise WorkerStartError("initialize answered with an unknown shape") from None
        if self.server_version != CODEX_APP_SERVER_VERSION:
            logger.warning(
                "worker %d runs Codex %s; this edge is pinned to %s",
                self.worker_id,
                self.server_version or "(unknown)",
                CODEX_APP_SERVER_VERSION,
            )

    # ------------------------------------------------------------------ the chat's controls

    controls: Final = True
    """The port's controls: steer, models, rate limits, the Stop button."""

    async def models(self) -> tuple[ModelChoice, ...]:
        """The port's models (`AppServerControls.models`)."""
        return await self.controls_api.models()

    async def rate_limits(self) -> RateLimits | None:
        """The port's rate limits (`AppServerControls.rate_limits`)."""
        return await self.controls_api.rate_limits()

    async def steer(self, conversation: str, text: str) -> SteerResult:
        """The port's steer: ``turn/steer`` on the turn `conversation` runs here, with that
        turn's id (refused once it ended or another one runs)."""
        for thread_id, call in list(self._calls.by_thread.items()):
            if call.conversation == conversation:
                await call.known.wait()
                if not call.done.is_set() and call.turn_id is not None:
                    return await self.controls_api.steer(thread_id, call.turn_id, text)
        return "ended"

    async def stop_background(self, thread_id: str) -> tuple[str, ...]:
        """The port's stop: the commands `thread_id` left running, stopped (none while a
        turn of ours runs on it: that turn's own command would go too)."""
        if not self._threads.loaded(thread_id) or thread_id in self._calls.by_thread:
            return ()
        return await self._threads.stop_listed(thread_id)

    async def ping(self) -> None:
        """``thread/loaded/list``: proves the process answers. Raises `WorkerUnavailable`
        when it died; a wedged one never answers: bound it with the caller's deadline.

        The tree's snapshot it asks for is taken beside it (`TreeSnapshots.keep`), not
        awaited: the deadline is the server's alone, and a scan held up behind other worker
        threads (a disk that stalls them) must not make a busy worker look wedged."""
        self.snapshots.want()
        response = await self.rpc.request("thread/loaded/list", LoadedListParams(limit=1))
        if response.error is not None:
            raise _ProcessGone(f"ping failed: {_error_text(response.error)}")

    async def run_turn(
        self,
        job: CodexJob,
        *,
        on_event: Callable[[CodexProgress], None],
        on_approval: Callable[[ApprovalAsk], Awaitable[ApprovalDecision]],
    ) -> JobOutcome:
        """Run one turn: on a fresh thread (``job.thread_id`` None) or on that thread
        (resumed first if this process has not loaded it), and return its outcome.

        Progress reaches `on_event` in wire order, synchronously from the reader task: it must
        not block. Approvals of this turn are awaited through `on_approval` (an exception
        there declines); one the server withdraws is cancelled there.

        Returns:
            `JobDone` with the final answer; or `JobFailed`: ``codex_error`` (Codex refused a
            request, or the turn failed), ``cancelled`` (the turn was interrupted by
            `interrupt`), ``worker_died`` (the process exited mid-call; `alive` turns False).

        A job on a thread this process has not loaded resumes it (``thread/resume``,
        ``excludeTurns``); when that fails (another process still holds it, or it is gone)
        the job runs on a fresh thread with its context preamble, and the outcome carries the
        new thread id. Developer instructions reach the model only at ``thread/start`` (a
        resume keeps the stored ones), so when a job's instructions differ from those the
        thread has, they are sent ahead of the prompt.

        After a completed turn, commands the model left running (the 10 s yield) are
        listed, and the answer says so.

        Cancellation: the turn is interrupted and its commands cleaned (shielded, at most
        `INTERRUPT_GRACE`); if that fails the process is marked `poisoned`. Cancelled
        propagates.
        """
        if not self.rpc.usable():
            return self._died(job.thread_id, "the Codex worker had already exited")
        try:
            thread_id, prompt = await self._threads.open(job)
        except (Refused, msgspec.DecodeError) as error:
            return self._failed(job.thread_id, f"Codex refused the thread: {error}")
        except _ProcessGone:
            return self._died(job.thread_id, "the Codex worker died during the run")
        if thread_id in self._calls.by_thread:
            return self._failed(thread_id, "a turn is already running on this Codex thread")
        translator = TurnTranslator(self.worker_id, thread_id)
        call = Call(translator, job.conversation, on_event, on_approval)
        self._calls.by_thread[thread_id] = call
        try:
            images = [LocalImageInput(path=path) for path in job.images]
            try:
                model, effort = await self.controls_api.turn_settings(thread_id, job)
                params = TurnStartParams(
                    thread_id=thread_id,
                    input=[TextInput(text=prompt), *images],
                    model=model,
                    effort=effort,
                )
                turn = _TURN.decode(await self.rpc.result("turn/start", params)).turn
                self._threads.settled(thread_id, model, effort)
            except (Refused, msgspec.DecodeError) as error:
                return self._failed(thread_id, f"Codex refused the turn: {error}")
            except _ProcessGone:
                return self._died(thread_id, "the Codex worker died during the run")
            if call.turn_id is None:
                self._calls.turn_known(call, turn.id)
            elif call.turn_id != turn.id:
                logger.warning("worker %d: turn/start joined another turn", self.worker_id)
            await call.done.wait()
        except trio.Cancelled:
            with trio.move_on_after(INTERRUPT_GRACE) as cleanup:
                cleanup.shield = True
                await self._interrupt(thread_id, call)
            if not call.done.is_set():
                self.poisoned = True
            raise
        finally:
            call.end()
            if self._calls.by_thread.get(thread_id) is call:
                del self._calls.by_thread[thread_id]
            if self.snapshots.known or call.translator.commands_started:
                await self.snapshots.take()
        outcome = self._outcome(call, thread_id)
        if isinstance(outcome, JobDone):
            outcome = await self._threads.with_background(outcome, on_running=self.snapshots.want)
        return outcome

    async def release_thread(self, thread_id: str) -> tuple[str, ...]:
        """The port's release: stop the commands `thread_id` left running, and say which."""
        return await self.stop_background(thread_id)

    async def background_terminals(self, thread_id: str) -> list[BackgroundTerminal]:
        """Commands of `thread_id` still running after their turn (``[]`` when the server
        cannot say)."""
        return await self._threads.background_terminals(thread_id)

    def _outcome(self, call: Call, thread_id: str) -> JobOutcome:
        translator = call.translator
        match translator.status:
            case "completed":
                return JobDone(
                    text=translator.final_text,
                    thread_id=thread_id,
                    worker_id=self.worker_id,
                    usage=translator.usage,
                    context=translator.context,
                )
            case "interrupted":
                return JobFailed(
                    failure="cancelled",
                    message="the Codex turn was interrupted",
                    worker_id=self.worker_id,
                    thread_id=thread_id,
                )
            case "failed" | "inProgress":
                return self._failed(thread_id, translator.error or "the Codex turn failed")
            case None:
                return self._died(thread_id, "the Codex worker died during the run")

    def _failed(self, thread_id: str | None, message: str) -> JobFailed:
        return JobFailed(
            failure="codex_error", message=message, worker_id=self.worker_id, thread_id=thread_id
        )

    def _died(self, thread_id: str | None, message: str) -> JobFailed:
        return JobFailed(
            failure="worker_died", message=message, worker_id=self.worker_id, thread_id=thread_id
        )

    async def interrupt(self) -> None:
        """The port's interrupt, for a worker the pool drops: kill the server and every
        process it started, also those a dead server orphaned (shielded, bounded)."""
        await self.kill()

    async def interrupt_thread(self, thread_id: str) -> bool:
        """Stop the turn running on `thread_id` and the commands it started; keep the process.

        ``turn/interrupt``, then wait for ``turn/completed``, then
        ``thread/backgroundTerminals/clean`` (an interrupt alone leaves commands running,
        while ``clean`` answers before the killed commands have exited, ~0.1 s later).
        The call running the turn returns ``JobFailed(failure="cancelled")``. Returns
        False when no call of ours runs on that thread. Unbounded: use the caller's deadline.
        """
        call = self._calls.by_thread.get(thread_id)
        if call is None:
            return False
        await self._interrupt(thread_id, call)
        return True

    async def _interrupt(self, thread_id: str, call: Call) -> None:
        before = await self.snapshots.take()  # while the commands' shells still hold their children
        with suppress(_ProcessGone):
            await call.known.wait()
            if not call.done.is_set() and call.turn_id is not None:
                params = TurnInterruptParams(thread_id=thread_id, turn_id=call.turn_id)
                response = await self.rpc.request("turn/interrupt", params)
                if response.error is not None:
                    logger.info("worker %d: %s", self.worker_id, _error_text(response.error))
                await call.done.wait()
        await self._threads.stop_commands(thread_id, before=before, snapshot=self.snapshots.take)

    async def kill(self) -> None:
        """Kill the server and every process it started (shielded, bounded)."""
        await kill_tree(self.pid, known=await self.snapshots.take())

    async def close(self) -> None:
        """Graceful stop: close stdin, give Codex `GRACEFUL_EXIT`, then kill the tree."""
        with trio.move_on_after(STOP_DEADLINE, shield=True):
            started = await self.snapshots.take()
            if not self.poisoned:
                await self.rpc.close_input()
                with trio.move_on_after(GRACEFUL_EXIT):
                    await self._process.wait()
            await kill_tree(self.pid, known=started | await self.snapshots.take())
            with trio.move_on_after(GRACEFUL_EXIT):
                await self._process.wait()


def _error_text(error: RpcError | None) -> str:
    return error.message if error else "no result"


@asynccontextmanager
async def open_codex_app_server(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    worker_id: int,
    stderr_log: Path,
    cwd: str | None = None,
    startup_timeout: float = 60.0,
    fence: AgentFence | None = None,
) -> AsyncIterator[CodexAppServer]:
    """Start ``codex app-server`` (`argv`, e.g. ``[codex, "app-server"]``), handshake, and
    stop it with its whole tree on exit. The bot token never reaches its environment.

    `startup_timeout` bounds spawn to ``initialize`` answered; `fence` is what the commands
    of its sandboxed threads may not read.

    Raises:
        WorkerStartError: the program cannot be started, exits, or is not an app-server.
    """
    async with serve_worker(
        argv,
        lambda process, nursery: CodexAppServer(process, worker_id, nursery, fence),
        env=env,
        stderr_log=stderr_log,
        cwd=cwd,
        startup_timeout=startup_timeout,
        what="app-server",
    ) as codex:
        yield codex
