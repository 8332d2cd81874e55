"""A stand-in for ``codex mcp-server`` 0.153.4: MCP over stdio, scripted per test.

Run as ``python tests/fakes/codex_mcp_server.py``. Standard library only, so it starts in
tens of milliseconds. It reproduces what the orchestrator relies on, as measured on the real
0.153.4 (the facts are in `orchestrator.wire.codex_mcp` and `orchestrator.edges.codex_mcp`):

- ``initialize`` (serverInfo codex-mcp-server 0.153.4, tools.listChanged), ``tools/list``
  with the exact ``codex`` / ``codex-reply`` schemas, ``ping``;
- ``tools/call`` results ``{"content": [...], "structuredContent": {"threadId", "content"}}``,
  calls running in parallel, threads that live only in this process ("Session not found for
  thread_id" elsewhere);
- ``codex/event`` notifications with ``_meta.requestId`` in Codex's order;
- ``elicitation/create`` with the ``codex_*`` fields, answered with ``{"decision": ...}``
  (``abort`` hangs the call forever, like the real one);
- ``notifications/cancelled``: ``turn_aborted`` and no response for that id;
- a deprecation warning on stderr at start.

The script (JSON, path in ``$FAKE_CODEX_SCRIPT``) holds ``rules``, each matched on the
prompt by ``match`` (substring) or ``regex`` (``re.search``); the first match wins; no match →
reply ``FAKE-REPLY: <prompt>``. A rule's actions, in the order a turn runs them:

- ``grandchild``: start ``bash -c 'sleep 300 & wait'`` in its own session, as Codex starts
  commands; both pids go to the ``pids`` file (``hold_stdout``: the command inherits the
  server's stdout, so the pipe outlives a crash);
- ``crash``: exit at once mid-call (``os._exit``; the value is the exit code, ``true`` → 3);
- ``approval`` ("exec" | "patch") with ``command`` (exec) or ``changes`` (patch:
  ``codex_changes``): ``elicitation/create`` with the ``codex_*`` fields;
  ``approved``/``approved_for_session`` run it (exec/patch events), ``denied`` goes on and
  says so in the reply, ``abort`` never answers the call;
- ``run``: a real shell command (``/bin/bash -lc``, own session, pid recorded) between
  ``exec_command_begin`` and ``exec_command_end`` with its exit code; waited for at most
  ``run_wait`` seconds (default 10, like Codex's unified exec yield);
- ``flood``: that many extra ``agent_message_content_delta`` events of ``"."``;
- ``deltas``: the reply streamed in that many pieces; ``reply`` (text);
- ``delay`` (seconds before the result), ``hang`` (never answer unless cancelled);
- ``tokens`` (token_count totals), ``error`` (an ``isError`` result with that text);
- ``garbage_lines``: that many lines that are not JSON before the response;
  ``raw_response``: the response line written as given (``{id}`` → the request id as JSON,
  ``{num}`` → its digits bare), to send what the strict decoder refuses.

Top-level options: ``record`` (a file where the server appends one JSON line per received
message and per approval decision, each with ``at``: ``time.time()`` when it was written),
``pids`` (a file for started pids), ``no_codex_tools`` (``tools/list`` lacks ``codex``),
``wedged`` (never answer ``ping``).

Wire order is the real one: ``session_configured`` (id ``""``, codex only),
``mcp_startup_complete``, ``task_started``, ``user_message``, command and patch events,
deltas, ``agent_message``, ``token_count``, ``task_complete``, then the tools/call response.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

SCRIPT: dict[str, Any] = {}
if os.environ.get("FAKE_CODEX_SCRIPT"):
    with open(os.environ["FAKE_CODEX_SCRIPT"]) as handle:
        SCRIPT = json.load(handle)

CODEX_SCHEMA = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string"},
        "approval-policy": {"type": "string", "enum": ["on-request", "never"]},
        "sandbox": {
            "type": "string",
            "enum": ["read-only", "workspace-write", "danger-full-access"],
        },
        "cwd": {"type": "string"},
        "model": {"type": "string"},
        "base-instructions": {"type": "string"},
        "developer-instructions": {"type": "string"},
        "compact-prompt": {"type": "string"},
        "config": {"type": "object", "additionalProperties": True},
    },
    "required": ["prompt"],
    "additionalProperties": False,
}
REPLY_SCHEMA = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string"},
        "threadId": {"type": "string"},
        "conversationId": {"type": "string"},
    },
    "required": ["prompt"],
}
OUTPUT_SCHEMA = {
    "type": "object",
    "properties": {"threadId": {"type": "string"}, "content": {"type": "string"}},
    "required": ["threadId", "content"],
}
TOOLS = [
    {
        "name": "codex",
        "title": "Codex",
        "description": "Run a Codex session.",
        "inputSchema": CODEX_SCHEMA,
        "outputSchema": OUTPUT_SCHEMA,
    },
    {
        "name": "codex-reply",
        "title": "Codex Reply",
        "description": "Continue a Codex conversation.",
        "inputSchema": REPLY_SCHEMA,
        "outputSchema": OUTPUT_SCHEMA,
    },
]
if SCRIPT.get("no_codex_tools"):
    TOOLS = [{"name": "other", "inputSchema": {"type": "object"}}]

write_lock = threading.Lock()
threads: dict[str, list[str]] = {}
cancelled: set[Any] = set()
waiting: dict[Any, tuple[threading.Event, list[Any]]] = {}
elicitation_ids = iter(range(10**9))


def send(message: dict[str, Any]) -> None:
    data = json.dumps(message) + "\n"
    with write_lock:
        sys.stdout.write(data)
        sys.stdout.flush()


def record(entry: dict[str, Any]) -> None:
    path = SCRIPT.get("record")
    if path:
        entry = {**entry, "at": time.time()}  # wall clock: benchmarks compare it across processes
        with write_lock, open(path, "a") as handle:
            handle.write(json.dumps(entry) + "\n")


def event(request_id: Any, thread_id: str, msg: dict[str, Any], turn_id: str = "turn-1") -> None:
    send(
        {
            "jsonrpc": "2.0",
            "method": "codex/event",
            "params": {
                "_meta": {"requestId": request_id, "threadId": thread_id},
                "id": turn_id,
                "msg": msg,
            },
        }
    )


def ask(params: dict[str, Any]) -> Any:
    """Send elicitation/create and wait for the client's answer."""
    request_id = next(elicitation_ids)
    done = threading.Event()
    box: list[Any] = []
    waiting[request_id] = (done, box)
    send({"jsonrpc": "2.0", "id": request_id, "method": "elicitation/create", "params": params})
    done.wait()
    return box[0] if box else {}


def rule_for(prompt: str) -> dict[str, Any]:
    for rule in SCRIPT.get("rules", []):
        if "regex" in rule:
            if re.search(rule["regex"], prompt):
                return dict(rule)
        elif rule.get("match", "") in prompt:
            return dict(rule)
    return {}


def record_pid(pid: int) -> None:
    with write_lock, open(SCRIPT.get("pids", "/dev/null"), "a") as handle:
        handle.write(f"{pid}\n")


def start_grandchild(hold_stdout: bool) -> None:
    """A command in its own session with a child of its own, as Codex runs commands.

    Returns once the shell has started its child and recorded it: otherwise a stop under
    load could kill the shell before its fork, and a test would see one pid, not two."""
    ready, told = os.pipe()
    child = subprocess.Popen(
        [
            "bash",
            "-c",
            f'sleep 300 {told}>&- & echo $! >> "$PIDS"; echo >&{told}; exec {told}>&-; wait',
        ],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=None if hold_stdout else subprocess.DEVNULL,
        env={**os.environ, "PIDS": SCRIPT.get("pids", "/dev/null")},
        pass_fds=(told,),
    )
    os.close(told)
    record_pid(child.pid)
    with os.fdopen(ready, "rb") as said:
        said.read(1)  # the shell's line, or end of file if it died first


def run_command(request_id: Any, thread_id: str, command: str, wait: float) -> None:
    """Run `command` like Codex's exec_command: own session, begin/end events."""
    argv = ["/bin/bash", "-lc", command]
    event(
        request_id,
        thread_id,
        {
            "type": "exec_command_begin",
            "call_id": "call_run",
            "command": argv,
            "cwd": os.getcwd(),
            "source": "unified_exec_startup",
        },
    )
    child = subprocess.Popen(
        argv,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PIDS": SCRIPT.get("pids", "/dev/null")},
    )
    record_pid(child.pid)
    try:
        exit_code: int | None = child.wait(wait)
    except subprocess.TimeoutExpired:
        return  # still running: Codex yields, and no end event comes yet
    event(
        request_id,
        thread_id,
        {
            "type": "exec_command_end",
            "call_id": "call_run",
            "command": argv,
            "exit_code": exit_code,
        },
    )


def run_call(request_id: Any, name: str, arguments: dict[str, Any]) -> None:
    prompt = arguments.get("prompt", "")
    if name == "codex-reply":
        thread_id = arguments.get("threadId") or arguments.get("conversationId") or ""
        if thread_id not in threads:
            send(
                {
                    "jsonrpc": "2.0",
                    "id": request_id,
                    "result": {
                        "content": [
                            {
                                "type": "text",
                                "text": f"Session not found for thread_id: {thread_id}",
                            }
                        ],
                        "isError": True,
                    },
                }
            )
            return
    else:
        thread_id = str(uuid.uuid4())
        threads[thread_id] = []
        event(
            request_id,
            thread_id,
            {
                "type": "session_configured",
                "session_id": thread_id,
                "model": arguments.get("model", "gpt-5.2"),
                "model_provider_id": "openai",
                "cwd": arguments.get("cwd", os.getcwd()),
                "approval_policy": arguments.get("approval-policy", "on-request"),
            },
            turn_id="",
        )
        event(request_id, thread_id, {"type": "mcp_startup_complete", "ready": [], "failed": []})
    threads[thread_id].append(prompt)
    rule = rule_for(prompt)
    event(
        request_id,
        thread_id,
        {"type": "task_started", "turn_id": "turn-1", "model_context_window": 272000},
    )
    event(request_id, thread_id, {"type": "user_message", "message": prompt, "images": None})
    if rule.get("grandchild"):
        start_grandchild(bool(rule.get("hold_stdout")))
    if rule.get("crash"):
        os._exit(3 if rule["crash"] is True else int(rule["crash"]))
    command = rule.get("command", "touch approved.txt")
    decision_text = ""
    if rule.get("approval") in ("exec", "patch"):
        kind = rule["approval"]
        params: dict[str, Any] = {
            "message": f"Allow Codex to run `{command}`?"
            if kind == "exec"
            else "Allow Codex to apply proposed code changes?",
            "requestedSchema": {"type": "object", "properties": {}},
            "threadId": thread_id,
            "codex_elicitation": f"{kind}-approval",
            "codex_mcp_tool_call_id": str(request_id),
            "codex_event_id": "turn-1",
            "codex_call_id": "call_1",
        }
        if kind == "exec":
            params["codex_command"] = ["/bin/bash", "-lc", command]
            params["codex_cwd"] = arguments.get("cwd", os.getcwd())
        else:
            default = {"/work/file.txt": {"type": "add", "content": "x\n"}}
            params["codex_changes"] = rule.get("changes", default)
        answer = ask(params)
        decision = answer.get("decision")
        record({"decision": decision, "answer": answer})
        if decision == "abort":
            event(request_id, thread_id, {"type": "turn_aborted", "reason": "interrupted"})
            return  # like the real one: the call never gets a response
        if decision in ("approved", "approved_for_session"):
            if kind == "exec":
                argv = ["/bin/bash", "-lc", command]
                begin = {
                    "type": "exec_command_begin",
                    "call_id": "call_1",
                    "command": argv,
                    "cwd": params["codex_cwd"],
                }
                event(request_id, thread_id, begin)
                # This end event names the command only by call_id.
                end = {"type": "exec_command_end", "call_id": "call_1", "exit_code": 0}
                event(request_id, thread_id, end)
            else:
                event(
                    request_id,
                    thread_id,
                    {"type": "patch_apply_begin", "changes": params["codex_changes"]},
                )
                event(request_id, thread_id, {"type": "patch_apply_end", "success": True})
            decision_text = f" [{kind} {decision}]"
        else:
            decision_text = f" [{kind} denied]"
    if rule.get("run"):
        run_command(request_id, thread_id, rule["run"], float(rule.get("run_wait", 10)))
    for _ in range(int(rule.get("flood", 0))):
        event(request_id, thread_id, {"type": "agent_message_content_delta", "delta": "."})
    delay = float(rule.get("delay", 0))
    deadline = time.monotonic() + delay
    reply = rule.get("reply", f"FAKE-REPLY: {prompt}") + decision_text
    pieces = max(1, int(rule.get("deltas", 1)))
    step = max(1, len(reply) // pieces)
    for start in range(0, len(reply), step):
        if request_id in cancelled:
            break
        event(
            request_id,
            thread_id,
            {"type": "agent_message_content_delta", "delta": reply[start : start + step]},
        )
    while time.monotonic() < deadline or rule.get("hang"):
        if request_id in cancelled:
            event(request_id, thread_id, {"type": "turn_aborted", "reason": "interrupted"})
            return
        time.sleep(0.01)
    if request_id in cancelled:
        event(request_id, thread_id, {"type": "turn_aborted", "reason": "interrupted"})
        return
    tokens = rule.get("tokens", {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18})
    event(request_id, thread_id, {"type": "agent_message", "message": reply})
    event(
        request_id,
        thread_id,
        {"type": "token_count", "info": {"total_token_usage": tokens, "last_token_usage": tokens}},
    )
    if rule.get("error"):
        result: dict[str, Any] = {
            "content": [{"type": "text", "text": rule["error"]}],
            "structuredContent": {"threadId": thread_id, "content": rule["error"]},
            "isError": True,
        }
    else:
        result = {
            "content": [{"type": "text", "text": reply}],
            "structuredContent": {"threadId": thread_id, "content": reply},
        }
    event(
        request_id,
        thread_id,
        {"type": "task_complete", "last_agent_message": reply, "duration_ms": 1},
    )
    for _ in range(int(rule.get("garbage_lines", 0))):
        with write_lock:
            sys.stdout.write("this is not JSON {\n")
            sys.stdout.flush()
    if "raw_response" in rule:  # a response line as written, "{id}" replaced
        with write_lock:
            raw = rule["raw_response"].replace("{num}", str(request_id))
            sys.stdout.write(raw.replace("{id}", json.dumps(request_id)) + "\n")
            sys.stdout.flush()
        return
    send({"jsonrpc": "2.0", "id": request_id, "result": result})


def main() -> None:
    sys.stderr.write(
        "warning: `codex mcp-server` is deprecated and will be removed in a future release.\n"
    )
    sys.stderr.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        message = json.loads(line)
        record({"received": message})
        method = message.get("method")
        request_id = message.get("id")
        if method is None and request_id in waiting:
            done, box = waiting.pop(request_id)
            box.append(message.get("result", {}))
            done.set()
        elif method == "initialize":
            version = message["params"].get("protocolVersion", "2025-06-18")
            client = message["params"].get("clientInfo", {})
            send(
                {
                    "jsonrpc": "2.0",
                    "id": request_id,
                    "result": {
                        "protocolVersion": version,
                        "capabilities": {"tools": {"listChanged": True}},
                        "serverInfo": {
                            "name": "codex-mcp-server",
                            "title": "Codex",
                            "version": "0.153.4",
                            "user_agent": "codex_cli_rs/0.153.4 (Debian 12.0.0; x86_64) unknown "
                            f"({client.get('name')}; {client.get('version')})",
                        },
                    },
                }
            )
        elif method == "tools/list":
            send({"jsonrpc": "2.0", "id": request_id, "result": {"tools": TOOLS}})
        elif method == "ping":
            if not SCRIPT.get("wedged"):
                send({"jsonrpc": "2.0", "id": request_id, "result": {}})
        elif method == "tools/call":
            params = message["params"]
            threading.Thread(
                target=run_call,
                args=(request_id, params["name"], params.get("arguments", {})),
                daemon=False,
            ).start()
        elif method == "notifications/cancelled":
            cancelled.add(message["params"].get("requestId"))
        elif request_id is not None and method is not None:
            send(
                {
                    "jsonrpc": "2.0",
                    "id": request_id,
                    "error": {"code": -32601, "message": f"method not found: {method}"},
                }
            )
    # stdin closed: like Codex, finish what is running, then exit.
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()


if __name__ == "__main__":
    main()
