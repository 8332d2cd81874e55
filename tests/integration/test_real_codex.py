"""The Codex edge, the doctor's probe and cancel against the real Codex 0.153.4."""

from __future__ import annotations

import os
from pathlib import Path

import trio

from cli.doctor_probe import probe_worker
from orchestrator.edges.codex_mcp import open_codex_process
from orchestrator.messages import (
    ApprovalAsk,
    ApprovalDecision,
    CodexJob,
    CodexProgress,
    CommandStarted,
    JobDone,
)
from tests.fakes.mock_model import Shell, Text, open_mock_model, write_codex_home
from tests.procfs import living, tree

CEILING = 120


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def environment(home: Path) -> dict[str, str]:
    return {**os.environ, "CODEX_HOME": str(home)}


async def deny(ask: ApprovalAsk) -> ApprovalDecision:
    return "denied"


async def test_smoke_initialize_list_call_reply(codex_binary: Path, tmp_path: Path) -> None:
    with trio.fail_after(CEILING):
        async with open_mock_model() as model:
            home = write_codex_home(tmp_path / "home", model.base_url)
            model.script([Text("Hello from the mock model")])
            events: list[CodexProgress] = []
            async with open_codex_process(
                [str(codex_binary), "mcp-server"],
                env=environment(home),
                worker_id=0,
                stderr_log=tmp_path / "codex.log",
            ) as codex:
                assert codex.server_version == "0.153.4"
                job = CodexJob(
                    conversation="c",
                    prompt="hello there",
                    cwd=str(tmp_path),
                    sandbox="read-only",
                    approval_policy="never",
                )
                first = await codex.call(job, on_event=events.append, on_approval=deny)
                assert isinstance(first, JobDone), first
                assert first.text == "Hello from the mock model"
                second = await codex.call(
                    CodexJob(
                        conversation="c",
                        prompt="second prompt",
                        cwd=str(tmp_path),
                        thread_id=first.thread_id,
                        worker_id=0,
                    ),
                    on_event=events.append,
                    on_approval=deny,
                )
                assert isinstance(second, JobDone), second
                assert second.text == "MOCK-REPLY: second prompt"
                assert second.thread_id == first.thread_id
                pid = codex.pid
    assert any("hello there" in str(request.get("input")) for request in model.requests)
    assert living({pid}) == set()


async def test_doctor_probe_against_the_real_codex(codex_binary: Path, tmp_path: Path) -> None:
    with trio.fail_after(CEILING):
        row = await probe_worker(
            0, (str(codex_binary), "mcp-server"), env=environment(tmp_path), startup_seconds=60
        )
    assert row.status == "ok", row
    assert "codex-mcp-server 0.153.4" in row.detail
    assert "codex-reply" in row.detail


async def test_cancel_kills_codex_and_the_commands_it_started(
    codex_binary: Path, tmp_path: Path
) -> None:
    with trio.fail_after(CEILING):
        async with open_mock_model() as model:
            home = write_codex_home(tmp_path / "home", model.base_url)
            model.script([Shell("sleep 300")], [Text("done")])
            events: list[CodexProgress] = []
            command_started = trio.Event()

            def on_event(event: CodexProgress) -> None:
                events.append(event)
                if isinstance(event, CommandStarted):
                    command_started.set()

            async with open_codex_process(
                [str(codex_binary), "mcp-server"],
                env=environment(home),
                worker_id=0,
                stderr_log=tmp_path / "codex.log",
            ) as codex:
                job = CodexJob(
                    conversation="c",
                    prompt="run a long command",
                    cwd=str(tmp_path),
                    sandbox="danger-full-access",
                    approval_policy="never",
                )
                with trio.move_on_after(60) as scope:
                    async with trio.open_nursery() as nursery:

                        async def run() -> None:
                            await codex.call(job, on_event=on_event, on_approval=deny)

                        nursery.start_soon(run)
                        await command_started.wait()
                        await trio.sleep(0.5)  # let bash start its sleep (a real process)
                        everything = tree(codex.pid)
                        nursery.cancel_scope.cancel()
                assert not scope.cancelled_caught
                assert codex.poisoned
                commands = [cmdline(pid) for pid in living(everything)]
                assert any("sleep" in command for command in commands), commands
                await codex.kill()
                assert living(everything) == set()
