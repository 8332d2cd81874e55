"""Plan mode end to end on the real Codex 0.153.4: selector → planner → developer (applies a
patch in a temporary git repository) → reviewer, through the worker pool."""

from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING, Any

import trio

from actors.role_caller import PoolRoleCaller
from actors.worker_pool import open_worker_pool
from actors.workflows import carry_out_workflow
from orchestrator.codex_runs import ApprovalRequest, CodexProgress, PatchApplied
from orchestrator.config import Profile
from orchestrator.edges.codex_mcp import open_codex_process
from orchestrator.prompts import load_instructions
from tests.fakes.mock_model import (
    Item,
    Patch,
    Text,
    codex_env,
    last_item_type,
    last_user_text,
    open_mock_model,
    write_codex_home,
)

if TYPE_CHECKING:
    from pathlib import Path

PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello from codex\n*** End Patch\n"


def by_role(body: dict[str, Any]) -> list[Item]:
    prompt = last_user_text(body)
    if "Decide how to handle" in prompt:
        return [Text('{"route": "plan", "reason": "it creates a file"}')]
    if "Write the numbered plan" in prompt:
        return [Text("1. Create hello.txt with a greeting.\n2. Report the change.")]
    if "Carry out this request" in prompt:
        if last_item_type(body) == "custom_tool_call_output":
            return [Text("Created hello.txt.\n\nFiles changed:\n- hello.txt")]
        return [Patch(PATCH)]
    if "Review the developer" in prompt:
        return [Text('{"verdict": "approved", "feedback": "hello.txt is there"}')]
    return [Text(f"unexpected prompt: {prompt[:80]}")]


class Phases:
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def phase(self, name: str, detail: str) -> None:
        self.seen.append(name)

    def patched(self) -> list[str]:
        return []


async def test_plan_mode_edits_a_file_in_a_git_repository(
    codex_binary: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    await trio.run_process(["git", "init", "-q", str(repo)])
    profile = Profile(
        working_directory=str(repo), sandbox="danger-full-access", approval_policy="never"
    )
    with trio.fail_after(180):
        async with open_mock_model() as model:
            model.responder = by_role
            home = write_codex_home(tmp_path / "home", model.base_url)
            env = {**os.environ, **codex_env(home)}

            def factory(worker_id: int):
                return open_codex_process(
                    [str(codex_binary), "mcp-server"],
                    env=env,
                    worker_id=worker_id,
                    stderr_log=tmp_path / f"worker-{worker_id}.log",
                )

            async with open_worker_pool(
                factory,
                size=2,
                affinity_wait=30,
                stall_timeout=60,
                request_timeout=120,
                ping_interval=30,
                recycle_rss_mb=0,
                recycle_threads=100,
                rng=random.Random(0),
                trace=lambda record: None,
            ) as pool:
                progress_send, progress_receive = trio.open_memory_channel[CodexProgress](1000)
                approvals_send, _approvals = trio.open_memory_channel[ApprovalRequest](1)
                caller = PoolRoleCaller(
                    pool,
                    conversation="1-1",
                    profile=profile,
                    summary="",
                    progress=progress_send,
                    approvals=approvals_send,
                )
                phases = Phases()
                traces: list[object] = []
                result = await carry_out_workflow(
                    "Add a hello.txt file with a greeting",
                    mode="plan",
                    caller=caller,
                    reporter=phases,
                    trace=traces.append,
                    instructions=load_instructions({}),
                )
    assert (repo / "hello.txt").read_text() == "hello from codex\n"
    assert result.error is None, result
    assert result.verdict == "approved"
    assert result.rounds_used == 1
    assert "hello.txt" in result.files_changed
    assert phases.seen[:3] == ["selecting", "planning", "plan"]
    assert "developing round 1" in phases.seen
    assert "reviewing round 1" in phases.seen
    assert len(traces) == 4
    events = []
    while True:
        try:
            events.append(progress_receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            break
    assert any(isinstance(event, PatchApplied) for event in events)
    status = await trio.run_process(
        ["git", "-C", str(repo), "status", "--porcelain"], capture_stdout=True
    )
    assert b"hello.txt" in status.stdout
