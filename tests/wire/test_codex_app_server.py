"""The app-server wire types and turn translation, on messages measured from Codex 0.171.0.

The examples under ``tests/fakes/app_server_examples/`` are verbatim copies of
tests/fakes/app_server_examples (paths shortened to ``/…`` there). Pure functions: no I/O, no
clock.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from orchestrator.codex_runs import (
    AgentMessageDelta,
    ApprovalDecision,
    CodexNotice,
    CommandFinished,
    CommandStarted,
    PatchApplied,
    Reasoning,
    RunStarted,
    TokenCount,
)
from orchestrator.codex_words import CONTEXT_COMPACTED
from orchestrator.wire.codex_app_server import (
    ClientInfo,
    InitializeCapabilities,
    InitializeParams,
    InitializeResponse,
    LoadedListParams,
    LocalImageInput,
    TextInput,
    ThreadResponse,
    ThreadResumeParams,
    ThreadStartParams,
    TurnResponse,
    TurnStartParams,
    approval_answer,
    classify_error,
    command_text,
    route_of,
    server_version,
)
from orchestrator.wire.codex_app_server_notifications import notice_text
from orchestrator.wire.codex_app_server_turn import DIFF_IN_ASK_LIMIT, TurnTranslator
from orchestrator.wire.jsonrpc import Incoming
from orchestrator.workflow_types import TokenUsage

EXAMPLES = Path(__file__).resolve().parents[1] / "fakes" / "app_server_examples"
THREAD = "01a22c98-42f3-7df0-8b1b-0283c9b3a0c0"
TURN = "01a22c98-431b-7713-abac-7cf1351fc852"


def example(name: str) -> Any:
    (path,) = EXAMPLES.glob(f"{name}-*.json")
    return json.loads(path.read_text())


def feed(translator: TurnTranslator, *notes: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for note in notes:
        out += translator.feed(note["method"], msgspec.json.encode(note["params"]))
    return out


def note(method: str, **params: Any) -> dict[str, Any]:
    return {"method": method, "params": {"threadId": "t", "turnId": "u", **params}}


def agent_message(text: str, phase: str | None) -> dict[str, Any]:
    item = {"type": "agentMessage", "id": f"msg-{text}", "text": text, "phase": phase}
    return note("item/completed", item=item)


def completed(status: str = "completed", items: list[Any] | None = None) -> dict[str, Any]:
    turn = {"id": "u", "status": status, "items": items or [], "error": None}
    return {"method": "turn/completed", "params": {"threadId": "t", "turn": turn}}


def test_a_plain_turn_gives_started_delta_tokens_and_the_final_text() -> None:
    translator = TurnTranslator(worker_id=3)
    progress = feed(translator, *example("07"))
    usage = TokenUsage(input_tokens=11, output_tokens=7, total_tokens=18)
    assert progress == [
        CodexNotice(level="warning", message=example("07")[3]["params"]["message"]),
        RunStarted(worker_id=3),
        AgentMessageDelta(text="MOCK-REPLY #1: hello there"),
        TokenCount(usage=usage),
    ]
    assert translator.status == "completed"
    assert translator.final_text == "MOCK-REPLY #1: hello there"
    assert translator.usage == usage
    assert translator.error == ""


def test_the_turn_summary_gives_the_answer_when_no_item_completed_was_seen() -> None:
    translator = TurnTranslator(worker_id=0)
    feed(translator, example("07")[-1])  # turn/completed alone, items = [agentMessage]
    assert translator.final_text == "MOCK-REPLY #1: hello there"


def test_a_command_starts_unwrapped_and_finishes_with_its_exit_code() -> None:
    translator = TurnTranslator(worker_id=0)
    progress = feed(translator, *example("08"))
    command = "for i in 1 2 3; do echo tick$i; sleep 1; done"
    assert progress == [
        CommandStarted(command=command, cwd="/…"),
        CommandFinished(command=command, exit_code=0),
    ]
    assert translator.commands_started


def test_a_declined_command_is_closed_without_exit_code() -> None:
    translator = TurnTranslator(worker_id=0)
    declined = example("12")
    started = copy.deepcopy(declined)
    started["method"] = "item/started"
    started["params"]["item"]["status"] = "inProgress"
    progress = feed(translator, started, declined)
    assert isinstance(progress[0], CommandStarted)
    assert progress[1] == CommandFinished(command=progress[0].command, exit_code=None)


def test_an_interrupted_turn_closes_the_command_it_left_running() -> None:
    translator = TurnTranslator(worker_id=0)
    begin = example("08")[0]
    progress = feed(translator, begin, example("17"))
    command = "for i in 1 2 3; do echo tick$i; sleep 1; done"
    assert progress == [CommandStarted(command=command, cwd="/…"), CommandFinished(command=command)]
    assert translator.status == "interrupted"
    assert translator.final_text == ""


def test_a_failed_turn_reports_the_error_notice_and_message() -> None:
    translator = TurnTranslator(worker_id=0)
    progress = feed(translator, *example("18"))
    message = example("18")[0]["params"]["error"]["message"]
    assert progress == [CodexNotice(level="error", message=message)]
    assert translator.status == "failed"
    assert "mock http 400" in translator.error


def test_a_reconnect_notice_is_a_stream_error() -> None:
    progress = feed(TurnTranslator(worker_id=0), example("19"))
    assert progress == [
        CodexNotice(level="stream_error", message="Reconnecting... waiting for network")
    ]


def test_a_patch_approval_carries_the_diff_of_its_item() -> None:
    translator = TurnTranslator(worker_id=5)
    started, declined = example("14")
    assert feed(translator, started) == []
    request = example("13")
    ask = translator.approval_ask(request["method"], msgspec.json.encode(request["params"]))
    assert ask is not None
    assert ask.kind == "patch"
    assert ask.changes == ("/…/work/inside_decline.txt",)
    assert "hello from mock patch" in ask.diff
    assert ask.worker_id == 5
    assert feed(translator, declined) == []  # declined: the prompt already said so


def test_a_patch_update_replaces_the_diff_the_approval_shows() -> None:
    translator = TurnTranslator(worker_id=0)
    started = example("14")[0]
    change = {"path": "/w/b.txt", "kind": {"type": "update", "move_path": None}, "diff": "@@ new"}
    update = note("item/fileChange/patchUpdated", itemId="call_patch_1", changes=[change])
    unknown = note("item/fileChange/patchUpdated", itemId="other", changes=[change])
    assert feed(translator, started, update, unknown) == []
    request = example("13")
    ask = translator.approval_ask(request["method"], msgspec.json.encode(request["params"]))
    assert ask is not None
    assert ask.changes == ("/w/b.txt",)
    assert "@@ new" in ask.diff
    assert "hello from mock patch" not in ask.diff


def test_a_patch_approval_reads_as_on_the_mcp_backend() -> None:
    """0.171.0 gives a new or deleted file's content as is, and a move's diff followed by
    "Moved to: PATH" (measured): the ask writes them as the MCP wire does."""
    translator = TurnTranslator(worker_id=0)
    started = example("14")[0]
    changes = [
        {
            "path": "/w/a.txt",
            "kind": {"type": "update", "move_path": "/w/b.txt"},
            "diff": "@@ -1 +1 @@\n-old\n+newer\n\n\nMoved to: /w/b.txt\n",
        },
        {"path": "/w/new.txt", "kind": {"type": "add"}, "diff": "new\nsecond\n"},
        {"path": "/w/gone.txt", "kind": {"type": "delete"}, "diff": "bye\n"},
    ]
    update = note("item/fileChange/patchUpdated", itemId="call_patch_1", changes=changes)
    feed(translator, started, update)
    request = example("13")
    ask = translator.approval_ask(request["method"], msgspec.json.encode(request["params"]))
    assert ask is not None
    assert ask.diff == (
        "--- /w/a.txt (update → /w/b.txt)\n@@ -1 +1 @@\n-old\n+newer\n\n"
        "--- /w/new.txt (add)\n+new\n+second\n\n"
        "--- /w/gone.txt (delete)\n-bye\n"
    )


def test_an_applied_patch_lists_its_files() -> None:
    translator = TurnTranslator(worker_id=0)
    started, done = example("14")
    done = copy.deepcopy(done)
    done["params"]["item"]["status"] = "completed"
    assert feed(translator, started, done) == [
        PatchApplied(files=("/…/work/inside_decline.txt",), success=True)
    ]


def test_a_renamed_file_is_listed_under_its_new_name_too() -> None:
    """0.171.0 sends a rename as an update with ``move_path`` (snake case, as measured)."""
    translator = TurnTranslator(worker_id=0)
    started, done = example("14")
    done = copy.deepcopy(done)
    done["params"]["item"]["status"] = "completed"
    done["params"]["item"]["changes"] = [
        {"path": "/w/keep.txt", "kind": {"type": "update", "move_path": "/w/moved.txt"}},
        {"path": "/w/old.txt", "kind": {"type": "delete"}},
    ]
    assert feed(translator, started, done) == [
        PatchApplied(files=("/w/keep.txt", "/w/moved.txt", "/w/old.txt"), success=True)
    ]


def test_a_long_diff_is_cut_in_the_ask() -> None:
    translator = TurnTranslator(worker_id=0)
    started = copy.deepcopy(example("14")[0])
    started["params"]["item"]["changes"][0]["diff"] = "x" * (DIFF_IN_ASK_LIMIT * 2)
    feed(translator, started)
    request = example("13")
    ask = translator.approval_ask(request["method"], msgspec.json.encode(request["params"]))
    assert ask is not None
    assert len(ask.diff) == DIFF_IN_ASK_LIMIT


def test_a_command_approval_asks_with_the_unwrapped_command() -> None:
    translator = TurnTranslator(worker_id=2)
    request = example("09")
    params = dict(request["params"], command="/bin/bash -lc 'touch /tmp/it; echo made'")
    ask = translator.approval_ask(request["method"], msgspec.json.encode(params))
    assert ask is not None
    assert (ask.kind, ask.command, ask.cwd) == ("exec", "touch /tmp/it; echo made", "/…")
    assert ask.message == "mock wants to run this unsandboxed"
    verbatim = translator.approval_ask(request["method"], msgspec.json.encode(request["params"]))
    assert verbatim is not None
    assert verbatim.command == "/bin/bash -lc 'touch /…"  # unbalanced quote: shown as is


def test_a_command_approval_says_whether_its_command_was_reported_started() -> None:
    """0.171.0 reports the command (``item/started``) before it asks: the ask says so, as
    that command runs only if approved (`ApprovalAsk.reported_started`)."""
    translator = TurnTranslator(worker_id=0)
    request = example("09")
    params = msgspec.json.encode(request["params"])
    before = translator.approval_ask(request["method"], params)
    assert before is not None
    assert not before.reported_started
    started = example("08")[0]
    assert started["params"]["item"]["id"] == request["params"]["itemId"]
    feed(translator, started)
    after = translator.approval_ask(request["method"], params)
    assert after is not None
    assert after.reported_started


def test_an_undecodable_approval_request_gives_no_ask() -> None:
    translator = TurnTranslator(worker_id=0)
    assert translator.approval_ask("item/fileChange/requestApproval", b'{"itemId": 3}') is None
    assert translator.approval_ask("item/tool/requestUserInput", b"{}") is None


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (
            [("thinking", "commentary"), ("the answer", "final_answer"), ("p.s.", None)],
            "the answer",
        ),
        ([("thinking", "commentary"), ("first", None), ("second", None)], "second"),
        ([("only commentary", "commentary")], "only commentary"),
        ([], ""),
    ],
)
def test_the_final_answer_prefers_final_answer_then_the_last_plain_message(
    messages: list[tuple[str, str | None]], expected: str
) -> None:
    translator = TurnTranslator(worker_id=0)
    feed(translator, *(agent_message(text, phase) for text, phase in messages), completed())
    assert translator.final_text == expected


def test_reasoning_streams_its_summary_parts() -> None:
    """Measured (example 22): the item starts, a part begins, then its deltas, and the item
    ends (without summaries, only its start and end)."""
    assert feed(TurnTranslator(worker_id=0), *example("22")) == [
        Reasoning(item="start"),
        Reasoning(part_start=True),
        Reasoning(text="**Thinki"),
        Reasoning(text="ng** abo"),
        Reasoning(text="ut it."),
        Reasoning(part_start=True),
        Reasoning(text="Second s"),
        Reasoning(text="ummary p"),
        Reasoning(text="art."),
        Reasoning(item="end"),
    ]


def test_unknown_items_notifications_and_garbage_mean_nothing() -> None:
    translator = TurnTranslator(worker_id=0)
    assert translator.feed("item/completed", b'{"item": {"type": "webSearch", "id": "w"}}') == []
    assert translator.feed("item/started", b"not json") == []
    assert translator.feed("thread/goal/cleared", b"{}") == []
    assert translator.status is None


def test_a_compaction_is_said_once_it_is_done() -> None:
    """As measured on 0.171.0 with ``model_auto_compact_token_limit``: the turn opens with a
    ``contextCompaction`` item, started then completed (the model wrote the summary)."""
    compaction = {"type": "contextCompaction", "id": "c", "startedAtMs": 1, "completedAtMs": None}
    translator = TurnTranslator(worker_id=0)
    assert feed(translator, note("item/started", item=compaction)) == []
    done = compaction | {"completedAtMs": 2}
    assert feed(translator, note("item/completed", item=done)) == [
        CodexNotice(level="warning", message=CONTEXT_COMPACTED)
    ]


def test_a_plan_update_is_a_notice_with_checkboxes() -> None:
    plan = [{"step": "read", "status": "completed"}, {"step": "write", "status": "pending"}]
    (notice,) = feed(TurnTranslator(worker_id=0), note("turn/plan/updated", plan=plan))
    assert notice == CodexNotice(level="warning", message="plan:\n[x] read\n[ ] write")


def test_routes_come_from_thread_and_turn_fields() -> None:
    notes = example("07")
    assert route_of(msgspec.json.encode(notes[2]["params"])) == (THREAD, None)  # thread/started
    assert route_of(msgspec.json.encode(notes[5]["params"])) == (THREAD, TURN)  # turn/started
    assert route_of(msgspec.json.encode(notes[9]["params"])) == (THREAD, TURN)  # delta
    assert route_of(msgspec.json.encode(notes[0]["params"])) == (None, None)  # configWarning
    assert route_of(b"[1, 2]") == (None, None)


def test_a_notice_for_the_log_is_its_words_not_its_json() -> None:
    """configWarning (measured), warning and deprecationNotice are logged as text."""
    config_warning = msgspec.json.encode(example("07")[0]["params"])
    assert notice_text("configWarning", config_warning).startswith(
        "Codex could not find bubblewrap on PATH."
    )
    warning = b'{"threadId": "t", "message": "Model metadata for `m` not found."}'
    assert notice_text("warning", warning) == "Model metadata for `m` not found."
    notice = b'{"summary": "old flag", "details": "use the new one"}'
    assert notice_text("deprecationNotice", notice) == "old flag (use the new one)"
    assert notice_text("warning", b"[1]") == "[1]"  # unreadable: as it came


@pytest.mark.parametrize(
    ("decision", "wire"),
    [("approved", "accept"), ("approved_for_session", "acceptForSession"), ("denied", "decline")],
)
def test_decisions_map_to_the_wire(decision: ApprovalDecision, wire: str) -> None:
    assert msgspec.json.encode(approval_answer(decision)) == f'{{"decision":"{wire}"}}'.encode()


def test_errors_are_classified_by_their_text() -> None:
    texts = [entry["error"]["message"] for entry in example("24")]
    assert [classify_error(text) for text in texts] == [
        "not_initialized",
        "other",  # Already initialized
        "unknown_method",
    ]
    assert classify_error("thread not found: abc") == "thread_not_found"
    assert classify_error("no rollout found for thread id abc") == "thread_not_found"
    assert classify_error("thread abc already has an active writer") == "active_writer"
    assert classify_error("no active turn to interrupt") == "no_active_turn"
    assert classify_error("x requires experimentalApi capability") == "experimental_required"


def test_requests_encode_as_measured() -> None:
    init = InitializeParams(
        client_info=ClientInfo(name="codex-orchestrator", version="0.1.0"),
        capabilities=InitializeCapabilities(experimental_api=True),
    )
    assert msgspec.to_builtins(init) == {
        "clientInfo": {"name": "codex-orchestrator", "version": "0.1.0"},
        "capabilities": {"experimentalApi": True},
    }
    turn = TurnStartParams(thread_id=THREAD, input=[TextInput(text="hello there")])
    measured = example("05")["params"]
    measured["input"][0].pop("text_elements")  # optional: omitted is accepted
    assert msgspec.to_builtins(turn) == measured
    pictured = TurnStartParams(
        thread_id=THREAD, input=[TextInput(text="look"), LocalImageInput(path="/s/images/a.jpg")]
    )
    assert msgspec.to_builtins(pictured)["input"] == [
        {"type": "text", "text": "look"},
        {"type": "localImage", "path": "/s/images/a.jpg"},  # UserInput in the 0.171.0 schema
    ]
    resume = ThreadResumeParams(thread_id="t", exclude_turns=True)
    assert msgspec.to_builtins(resume) == {"threadId": "t", "excludeTurns": True}
    start = ThreadStartParams(cwd="/w", sandbox="workspace-write", approval_policy="never")
    assert msgspec.to_builtins(start) == {
        "cwd": "/w",
        "sandbox": "workspace-write",
        "approvalPolicy": "never",
    }
    assert msgspec.to_builtins(LoadedListParams()) == {}


def test_responses_decode_tolerantly() -> None:
    def result(name: str) -> bytes:
        message = msgspec.json.decode(json.dumps(example(name)).encode(), type=Incoming)
        assert message.id is not None
        assert message.method is None
        return bytes(message.result)

    init = msgspec.json.decode(result("02"), type=InitializeResponse)
    assert server_version(init.user_agent) == "0.171.0"
    assert msgspec.json.decode(result("04"), type=ThreadResponse).thread.id == THREAD
    resumed = msgspec.json.decode(result("21"), type=ThreadResponse)
    assert resumed.thread.id == "01a22c9c-70ad-73c0-9cce-d680a66cef01"
    turn = msgspec.json.decode(result("06"), type=TurnResponse).turn
    assert (turn.id, turn.status) == (TURN, "inProgress")
    request = msgspec.json.decode(json.dumps(example("09")).encode(), type=Incoming)
    assert (request.id, request.method) == (0, "item/commandExecution/requestApproval")


def test_command_text_unwraps_only_a_shell_wrapper() -> None:
    assert command_text("/bin/bash -lc 'echo '\\''hi'\\'''") == "echo 'hi'"
    assert command_text("ls -la") == "ls -la"
    assert command_text("") == ""
