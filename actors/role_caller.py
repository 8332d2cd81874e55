"""Adapters between a workflow and the rest of the bot: the `RoleCaller` over the worker
pool, and how a role becomes a `CodexJob`.

- Selector, planner and reviewer run read-only with approvals off: they only read and
  judge. The developer gets the profile's sandbox and approval policy.
- Role instructions go to ``developer-instructions``, which Codex applies to fresh threads
  only; they are always passed, so a thread the pool had to move still gets them.
- A request's images (a photo) go with every call of it: each role judges what it shows.
- The developer's job carries the conversation summary as its context preamble: the pool
  puts it before the prompt only when the thread cannot be continued.
- Commands a selector, planner or reviewer turn left running (``codex app-server`` hands a
  long command back to the model and keeps it running) are stopped as soon as the call ends:
  their threads are never continued, so nothing else would stop them before their worker
  restarts. The developer's stay: the result names them and offers a Stop button
  (`actors.chat_background`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final, final

import trio

from orchestrator.codex_runs import CodexJob, JobDone, JobFailed
from orchestrator.prompts import instructions_digest
from orchestrator.words import plural
from orchestrator.workflow_types import READ_ONLY_ROLES, RoleFailed, RoleOutcome, RoleSucceeded

if TYPE_CHECKING:
    from orchestrator.codex_runs import ApprovalRequest, CodexProgress
    from orchestrator.config import Profile
    from orchestrator.ports import CodexPool
    from orchestrator.workflow_types import Role, ThreadInstructions

__all__ = ["PREAMBLE_HEADER", "PoolRoleCaller", "job_for_role"]

logger: Final = logging.getLogger(__name__)

PREAMBLE_HEADER: Final = (
    "Context: this continues an earlier conversation whose Codex session is no longer "
    "available. Summary of it so far:"
)


def job_for_role(
    role: Role,
    prompt: str,
    *,
    conversation: str,
    profile: Profile,
    instructions: str,
    thread_id: str | None,
    worker_id: int | None,
    summary: str,
    images: tuple[str, ...] = (),
    model: str = "",
    effort: str = "",
    thread_instructions: str = "",
) -> CodexJob:
    """The Codex job for one role call; `model` and `effort` are the chat's choices (/model,
    /effort; "" keeps the profile's); `thread_instructions`, what its chat knows the thread
    has (`CodexJob.thread_instructions`)."""
    read_only = role in READ_ONLY_ROLES
    preamble = f"{PREAMBLE_HEADER}\n{summary}" if summary and role == "developer" else ""
    return CodexJob(
        conversation=conversation,
        prompt=prompt,
        cwd=profile.working_directory,
        sandbox="read-only" if read_only else profile.sandbox,
        approval_policy="never" if read_only else profile.approval_policy,
        model=profile.model,
        model_choice=model,
        effort=effort,
        developer_instructions=instructions,
        thread_id=thread_id,
        worker_id=worker_id,
        thread_instructions=thread_instructions,
        context_preamble=preamble,
        images=images,
    )


@final
class PoolRoleCaller:
    """`RoleCaller` over the worker pool for one request of one chat.

    `moved` turns True when the pool had to continue the conversation on a fresh thread,
    so the chat can say so once.
    """

    def __init__(
        self,
        pool: CodexPool,
        *,
        conversation: str,
        profile: Profile,
        summary: str,
        model: str = "",
        effort: str = "",
        progress: trio.MemorySendChannel[CodexProgress],
        approvals: trio.MemorySendChannel[ApprovalRequest],
        images: tuple[str, ...] = (),
        known: ThreadInstructions | None = None,
    ) -> None:
        self._pool = pool
        self._images = images
        self._known = known
        """The developer instructions the session's thread has, as the chat last saw them."""
        self._conversation = conversation
        self._profile = profile
        self._summary = summary
        self._model = model
        self._effort = effort
        self._progress = progress
        self._approvals = approvals
        self.moved_because = ""
        """Why the developer's conversation went on in a fresh thread (empty: it did not)."""
        self.background: tuple[str, ...] = ()
        """Commands the developer's last call left running."""
        self.last_worker: int | None = None

    async def call_role(
        self,
        role: Role,
        prompt: str,
        *,
        thread_id: str | None,
        worker_id: int | None,
        instructions: str,
    ) -> RoleOutcome:
        """Call one role on the pool; cancellation propagates (the pool kills the worker)."""
        known = self._known if self._known and self._known.thread_id == thread_id else None
        job = job_for_role(
            role,
            prompt,
            conversation=self._conversation,
            profile=self._profile,
            instructions=instructions,
            thread_id=thread_id,
            worker_id=worker_id,
            summary=self._summary,
            images=self._images,
            model=self._model,
            effort=self._effort,
            thread_instructions=known.digest if known else "",
        )
        outcome = await self._pool.run(job, progress=self._progress, approvals=self._approvals)
        match outcome:
            case JobDone():
                self.last_worker = outcome.worker_id
                if outcome.moved and role == "developer":
                    self.moved_because = outcome.moved_because
                if role == "developer":
                    self.background = outcome.background
                elif outcome.background:
                    with trio.CancelScope(shield=True):  # a cancel now must not leave them
                        stopped = await self._pool.release(outcome.thread_id, outcome.worker_id)
                    logger.info(
                        "stopped %s the %s left running: %s",
                        plural(len(stopped), "command"),
                        role,
                        ", ".join(stopped)[:200],
                    )
                return RoleSucceeded(
                    text=outcome.text,
                    thread_id=outcome.thread_id,
                    worker_id=outcome.worker_id,
                    usage=outcome.usage,
                    context=outcome.context,
                    instructions=instructions_digest(job.developer_instructions),
                )
            case JobFailed():
                return RoleFailed(
                    failure=outcome.failure,
                    message=outcome.message,
                    worker_id=outcome.worker_id,
                    thread_id=outcome.thread_id,
                    thread_kept=outcome.thread_kept,
                )
