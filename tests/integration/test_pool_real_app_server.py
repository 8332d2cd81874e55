"""The worker pool over the real Codex 0.171.0 app-server and the mock model: a conversation
keeps its thread (one ``prompt_cache_key``) across a cancel that keeps the worker (same pid, no
process of the command left) and a recycle that replaces the worker (the thread is resumed on
the new process); a command that outlives its turn is named in the answer."""

from __future__ import annotations

import random
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from actors.worker_pool import WorkerPoolHandle, open_worker_pool
from orchestrator.codex_runs import ApprovalRequest, CodexJob, CodexProgress, JobDone
from orchestrator.edges.codex_app_server import open_codex_app_server
from tests.fakes.mock_model import (
    Shell,
    Text,
    Turn,
    codex_env,
    last_user_text,
    open_mock_model,
    write_codex_home,
)
from tests.integration.app_server_fixtures import app_server_codex
from tests.procfs import cmdline, living, tree, wait_until_gone

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager
    from pathlib import Path

    from orchestrator.ports import CodexWorker

__all__ = ["app_server_codex"]

CEILING = 120
MODEL = "gpt-5.5"


async def run(pool: WorkerPoolHandle, job: CodexJob) -> JobDone:
    progress_send, progress = trio.open_memory_channel[CodexProgress](1000)
    approvals_send, _approvals = trio.open_memory_channel[ApprovalRequest](1)
    with progress, progress_send, approvals_send:
        outcome = await pool.run(job, progress=progress_send, approvals=approvals_send)
    assert isinstance(outcome, JobDone), outcome
    return outcome


async def sleeping(root: int, command: str) -> set[int]:
    """The pids under `root` running `command`, once there is one (polled: /proc has no wait)."""
    while True:
        found = {pid for pid in tree(root) if cmdline(pid).startswith(command)}
        if found:
            return found
        await trio.sleep(0.05)


async def replaced(pool: WorkerPoolHandle, pid: int) -> None:
    """Until the pool's only worker is another process than `pid`."""
    while True:
        if pool.statistics().workers[0].pid not in (pid, None):
            return
        await trio.sleep(0.05)


async def test_a_thread_survives_a_cancel_and_a_recycle(
    app_server_codex: Path, tmp_path: Path
) -> None:
    def respond(body: dict[str, Any]) -> Turn:
        prompt = last_user_text(body)
        if "sleep" in prompt and body["input"][-1].get("type") != "function_call_output":
            return [Shell("sleep 300")]
        if "linger" in prompt and body["input"][-1].get("type") != "function_call_output":
            return [Shell("sleep 30")]
        return [Text(f"MOCK-REPLY: {prompt[-40:]}")]

    with trio.fail_after(CEILING):
        async with open_mock_model() as model:
            model.responder = respond
            home = write_codex_home(tmp_path / "home", model.base_url, model=MODEL)

            def factory(worker_id: int) -> AbstractAsyncContextManager[CodexWorker]:
                return open_codex_app_server(
                    [str(app_server_codex), "app-server"],
                    env={"PATH": "/usr/bin:/bin", **codex_env(home)},
                    worker_id=worker_id,
                    stderr_log=tmp_path / f"w{worker_id}.log",
                )

            async with open_worker_pool(
                factory,
                size=1,
                affinity_wait=30,
                stall_timeout=300,
                request_timeout=600,
                ping_interval=30,
                recycle_rss_mb=0,
                recycle_threads=2,
                rng=random.Random(0),
                trace=lambda record: None,
                endpoint_failure_limit=60,
            ) as pool:
                job = partial(
                    CodexJob,
                    conversation="c",
                    cwd=str(tmp_path),
                    sandbox="danger-full-access",
                    approval_policy="never",
                    context_preamble="RECAP",
                )
                first = await run(pool, job(prompt="hello"))
                thread = first.thread_id
                (worker,) = pool.statistics().workers
                pid = worker.pid
                assert pid is not None

                with trio.move_on_after(60):
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(
                            run, pool, job(prompt="sleep", thread_id=thread, worker_id=0)
                        )
                        found = await sleeping(pid, "sleep 300")
                        nursery.cancel_scope.cancel()
                assert await wait_until_gone(set(found)) == set()
                assert pool.statistics().workers[0].pid == pid  # kept

                after = await run(pool, job(prompt="after cancel", thread_id=thread, worker_id=0))
                assert after.thread_id == thread

                other = await run(pool, job(prompt="another chat", conversation="d"))
                assert other.thread_id != thread  # the 2nd thread: the worker is recycled
                await replaced(pool, pid)
                assert living({pid}) == set()

                resumed = await run(
                    pool, job(prompt="after recycle", thread_id=thread, worker_id=0)
                )
                assert resumed.thread_id == thread
                assert not resumed.moved

                lingering = await run(pool, job(prompt="linger", thread_id=thread, worker_id=0))
                assert lingering.background == ("sleep 30",)
    keys = [body.get("prompt_cache_key") for body in model.requests]
    conversation = [
        k for k, b in zip(keys, model.requests, strict=True) if "another" not in str(b["input"][-1])
    ]
    assert set(conversation) == {thread}
    # The conversation's preamble went out once, with its first prompt: resumed, never recapped.
    texts = [
        part.get("text", "")
        for item in model.requests[-1]["input"]
        if item.get("role") == "user"
        for part in item.get("content", [])
    ]
    assert [text for text in texts if "RECAP" in text] == ["RECAP\n\nhello"]
