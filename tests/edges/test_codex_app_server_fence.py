"""The app-server edge with a fence (`orchestrator.agent_fence`), against the fake ``codex
app-server``: a sandboxed thread, fresh or resumed, is started in the fence's permission
profile instead of the ``sandbox`` argument (which would win over it); a
``danger-full-access`` one keeps the argument; a Codex that does not take the profile is
logged once per process."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from orchestrator.agent_fence import PROFILE_NAME, AgentFence
from orchestrator.codex_runs import JobDone
from orchestrator.edges.codex_app_server import open_codex_app_server
from tests.edges.test_codex_app_server import CEILING, deny, fake, ignore, job

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

    from tests.fakes.app_server_script import FakeAppServer

__all__ = ["fake"]


def fence_in(tmp_path: Path) -> AgentFence:
    (tmp_path / "conf.toml").write_text("")
    (tmp_path / "state" / "sessions").mkdir(parents=True)
    return AgentFence(own_files=[tmp_path / "conf.toml"], state_dir=tmp_path / "state")


async def run_jobs(fake: FakeAppServer, tmp_path: Path, fence: AgentFence) -> None:
    """A fresh sandboxed thread, a resumed one, and a fresh unsandboxed one."""
    with trio.fail_after(CEILING):
        async with open_codex_app_server(
            fake.argv(),
            env=fake.env(),
            worker_id=3,
            stderr_log=tmp_path / "worker-3.log",
            fence=fence,
        ) as codex:
            for one in (
                job("fresh"),
                job("resumed", thread_id="stored-thread", sandbox="read-only"),
                job("free", sandbox="danger-full-access"),
            ):
                outcome = await codex.run_turn(one, on_event=ignore, on_approval=deny)
                assert isinstance(outcome, JobDone), outcome


def params(fake: FakeAppServer, method: str) -> list[dict[str, Any]]:
    return [message["params"] for message in fake.received(method)]


async def test_sandboxed_threads_run_in_the_fence_profile_instead_of_the_sandbox_argument(
    fake: FakeAppServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake.options["threads"] = ["stored-thread"]
    fence = fence_in(tmp_path)
    with caplog.at_level(logging.WARNING):
        await run_jobs(fake, tmp_path, fence)
    fresh, free = params(fake, "thread/start")
    assert "sandbox" not in fresh
    assert fresh["config"] == fence.thread_config("workspace-write")
    assert fresh["config"]["permissions"][PROFILE_NAME]["filesystem"] == {
        str((tmp_path / "conf.toml").resolve()): "none",
        str((tmp_path / "state" / "sessions").resolve()): "none",
    }
    (resumed,) = params(fake, "thread/resume")
    assert "sandbox" not in resumed
    assert resumed["config"] == fence.thread_config("read-only")
    assert resumed["config"]["permissions"][PROFILE_NAME]["extends"] == ":read-only"
    assert free["sandbox"] == "danger-full-access"
    assert "config" not in free
    assert "permission profile" not in caplog.text  # the fake took it, as 0.171.0 does


async def test_a_codex_that_does_not_take_the_profile_is_logged_once(
    fake: FakeAppServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake.options["threads"] = ["stored-thread"]
    fake.options["no_permission_profiles"] = True
    with caplog.at_level(logging.WARNING):
        await run_jobs(fake, tmp_path, fence_in(tmp_path))
    warnings = [r.getMessage() for r in caplog.records if "permission profile" in r.getMessage()]
    assert len(warnings) == 1, warnings  # two sandboxed threads, one line
    assert "worker 3" in warnings[0]
    assert "lets the agent read them" in warnings[0]
