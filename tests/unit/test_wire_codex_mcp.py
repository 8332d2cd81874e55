"""The Codex MCP wire types and their translation, without a process."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from orchestrator.codex_runs import (
    CodexJob,
    CodexNotice,
    CommandFinished,
    CommandStarted,
    JobDone,
    JobFailed,
    PatchApplied,
    Reasoning,
    RunStarted,
    TokenCount,
)
from orchestrator.codex_words import CONTEXT_COMPACTED
from orchestrator.wire.codex_mcp import (
    ELICITATION,
    EVENT,
    TurnEvents,
    approval_ask,
    command_text,
    local_path,
    tool_call,
    tool_outcome,
)
from orchestrator.wire.jsonrpc import Response, RpcError
from orchestrator.workflow_types import ContextFill, TokenUsage

if TYPE_CHECKING:
    from collections.abc import Mapping


def job(**kw: object) -> CodexJob:
    return CodexJob(conversation="1-1", prompt="do it", cwd="/w", **kw)  # type: ignore[arg-type]


def result(payload: object) -> Response:
    return Response(msgspec.Raw(msgspec.json.encode(payload)), None)


def test_local_path_turns_file_urls_into_paths() -> None:
    assert local_path("file:///home/me/my%20project") == "/home/me/my project"
    assert local_path("/home/me/project") == "/home/me/project"
    assert local_path("") == ""


def test_command_text_drops_the_shell_wrapper() -> None:
    assert command_text(["/bin/bash", "-lc", "make test"]) == "make test"
    assert command_text(["ls", "my dir"]) == "ls 'my dir'"
    assert command_text("echo hi") == "echo hi"
    assert command_text(None) == ""


def test_a_fresh_thread_is_codex_with_the_preamble_a_reply_is_codex_reply() -> None:
    tool, arguments = tool_call(job(context_preamble="ctx", model="m"))
    assert tool == "codex"
    assert arguments == {
        "prompt": "ctx\n\ndo it",
        "cwd": "/w",
        "sandbox": "workspace-write",
        "approval-policy": "on-request",
        "model": "m",
    }
    assert tool_call(job(thread_id="t1", context_preamble="ctx")) == (
        "codex-reply",
        {"prompt": "do it", "threadId": "t1"},
    )


def test_events_of_a_turn_become_progress() -> None:
    events = TurnEvents(worker_id=4)

    def translate(msg: Mapping[str, object]) -> object:
        params = EVENT.decode(msgspec.json.encode({"msg": msg, "_meta": {"requestId": 7}}))
        assert params.tool_call_id == "7"
        return events.translate(params.msg)

    assert translate({"type": "task_started"}) == RunStarted(worker_id=4)
    begin = {"type": "exec_command_begin", "call_id": "c", "command": ["bash", "-lc", "ls"]}
    assert translate(begin | {"cwd": "file:///w"}) == CommandStarted(command="ls", cwd="/w")
    end = {"type": "exec_command_end", "call_id": "c", "exit_code": 2}
    assert translate(end) == CommandFinished(command="ls", exit_code=2)
    assert translate({"type": "patch_apply_begin", "changes": {"/w/a": {}}}) is None
    assert translate({"type": "patch_apply_end"}) == PatchApplied(files=("/w/a",))
    renamed = {"/w/k": {"type": "update", "unified_diff": "", "move_path": "/w/m"}, "/w/o": 1}
    assert translate({"type": "patch_apply_end", "changes": renamed}) == PatchApplied(
        files=("/w/k", "/w/m", "/w/o")  # a rename's new name too; an odd shape, its path
    )
    info = {"total_token_usage": {"total_tokens": 30}, "last_token_usage": {"total_tokens": 9}}
    tokens = {"type": "token_count", "info": info}
    assert translate(tokens) == TokenCount(usage=TokenUsage(total_tokens=9))  # not the thread's
    assert events.usage.total_tokens == 9
    contexts = [events.context]  # no window said
    more = {"total_token_usage": {"total_tokens": 47}, "last_token_usage": {"total_tokens": 17}}
    translate({"type": "token_count", "info": more | {"model_context_window": 258400}})
    contexts.append(events.context)
    assert contexts == [None, (17, 258400)]  # the last response, not a sum
    assert translate({"type": "raw_response_item"}) is None
    # reasoning, as 0.153.4 streams it: the item starts, a part of its summary begins, then
    # its deltas; the item ends
    started = {"type": "item_started", "item": {"type": "Reasoning", "id": "rs"}}
    assert translate(started) == Reasoning(item="start")
    ended = started | {"type": "item_completed"}
    assert translate(ended) == Reasoning(item="end")
    assert translate({"type": "item_started", "item": {"type": "AgentMessage"}}) is None
    section = {"type": "agent_reasoning_section_break", "item_id": "rs", "summary_index": 0}
    assert translate(section) == Reasoning(part_start=True)
    delta = {"type": "reasoning_content_delta", "item_id": "rs", "delta": "**Plan**"}
    assert translate(delta | {"summary_index": 0}) == Reasoning(text="**Plan**")
    assert translate({"type": "agent_reasoning", "text": "**Plan**"}) is None  # said already
    # a compaction, as 0.153.4 says it: the event, then a warning of its own about threads
    compacted = CodexNotice(level="warning", message=CONTEXT_COMPACTED)
    assert translate({"type": "context_compacted"}) == compacted
    heads_up = (
        "Heads up: Long threads and multiple compactions can cause the model to be less "
        "accurate. Start a new thread when possible to keep threads small and targeted."
    )
    assert translate({"type": "warning", "message": heads_up}) is None  # said, in our words
    other = {"type": "warning", "message": "something else"}
    assert translate(other) == CodexNotice(level="warning", message="something else")


def test_an_elicitation_becomes_an_approval_ask() -> None:
    params = ELICITATION.decode(
        msgspec.json.encode(
            {
                "message": "Allow?",
                "codex_elicitation": "patch-approval",
                "codex_mcp_tool_call_id": "2",
                "codex_changes": {
                    "/w/f.txt": {"type": "add", "content": "one\ntwo\n"},
                    "/w/g.txt": {"type": "update", "unified_diff": "@@ -1 +1 @@\n-a\n+b\n"},
                    "/w/h.txt": {"type": "delete", "content": "gone\n"},
                },
            }
        )
    )
    ask = approval_ask(params, worker_id=1)
    assert (ask.kind, ask.changes, ask.worker_id) == (
        "patch",
        ("/w/f.txt", "/w/g.txt", "/w/h.txt"),
        1,
    )
    assert ask.diff == (
        "--- /w/f.txt (add)\n+one\n+two\n\n"
        "--- /w/g.txt (update)\n@@ -1 +1 @@\n-a\n+b\n\n"
        "--- /w/h.txt (delete)"
    )


def test_tool_results_become_outcomes() -> None:
    usage = TokenUsage(total_tokens=3)
    events = TurnEvents(worker_id=0, usage=usage, context=(3, 1000))
    done = tool_outcome(
        result({"structuredContent": {"threadId": "t", "content": "hi"}}),
        job(),
        worker_id=0,
        events=events,
    )
    context = ContextFill(thread_id="t", tokens=3, window=1000)
    assert done == JobDone(text="hi", thread_id="t", worker_id=0, usage=usage, context=context)
    failed = tool_outcome(
        result({"content": [{"type": "text", "text": "Session not found"}], "isError": True}),
        job(thread_id="t"),
        worker_id=0,
        events=events,
    )
    assert failed == JobFailed(
        failure="codex_error", message="Session not found", worker_id=0, thread_id="t"
    )
    refused = tool_outcome(
        Response(None, RpcError(code=-32602, message="bad")), job(), worker_id=0, events=events
    )
    assert isinstance(refused, JobFailed)
    assert refused.message == "Codex refused the call: bad (-32602)"
