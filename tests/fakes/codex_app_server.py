"""A stand-in for ``codex app-server`` 0.171.0: JSON-RPC lines over stdio, scripted per test.

Run as ``python tests/fakes/codex_app_server.py``. Standard library only. It reproduces what
the edge relies on (measured on Codex 0.171.0): ``initialize`` (a 0.171.0 user agent,
``Not initialized`` / ``Already initialized``), ``thread/start``, ``thread/resume`` (``no rollout
found`` for a thread it does not know), ``turn/start`` (answers the active turn's id when one
runs: a steer), ``turn/interrupt`` (``{}`` then ``turn/completed`` interrupted; ``no active turn
to interrupt``), ``thread/backgroundTerminals/clean`` (kills the turn's commands; refused
without ``experimentalApi``), ``thread/loaded/list``; notifications with ``emittedAtMs`` and
extra fields; server request ids from 0; no ``jsonrpc`` member.

The script (JSON, path in ``$FAKE_APP_SERVER_SCRIPT``) holds ``rules`` matched on the prompt
by ``match`` (substring), first match wins; no match → reply ``FAKE-REPLY: <prompt>``. A
rule's actions, in turn order:

- ``garbage``: write a line that is not JSON first;
- ``raw_turn_start``: answer ``turn/start`` with this line as written (``{id}`` → the request
  id) and run no turn: to send what the strict decoder refuses;
- ``early``: send ``turn/started`` and the user message *before* the ``turn/start`` response;
- ``unknown_request``: a server request of that method (answer recorded);
- ``approval`` ("exec" | "patch") with ``command`` / ``path`` + ``diff``: the item starts, the
  request goes out, the answer is recorded; ``accept``/``acceptForSession`` complete the
  item, anything else declines it;
- ``run``: a real ``bash -c`` command in its own session (pid recorded, item started, never
  completed: like a command past the 10 s yield); ``clean`` kills its process group;
- ``hang``: wait for ``turn/interrupt``; with ``silent`` no notification at all until then;
- ``barrier``: wait until that many turns have started (a turn waiting here runs at the same
  time as those started after it: proves concurrency);
- ``fail``: an ``error`` notification and a ``failed`` turn with that message;
- ``crash``: exit at once; ``phases``: a commentary message before the final answer;
- ``reply``, ``deltas`` (pieces), ``tokens`` (totalTokens).

Top-level options: ``record`` (one JSON line per received message, answer and the
``env_has_token`` check at start), ``pids`` (started pids), ``threads`` (thread ids it can
resume), ``wedged`` (never answer ``thread/loaded/list``), ``no_permission_profiles`` (report
no ``activePermissionProfile`` whatever the thread's config selects, as a Codex without them),
``thread_start_error`` (refuse every ``thread/start`` with this text).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

SCRIPT: dict[str, Any] = {}
if os.environ.get("FAKE_APP_SERVER_SCRIPT"):
    with open(os.environ["FAKE_APP_SERVER_SCRIPT"]) as handle:
        SCRIPT = json.load(handle)

lock = threading.Lock()
state: dict[str, Any] = {"initialized": False, "experimental": False}
threads: set[str] = set(SCRIPT.get("threads", []))
active: dict[str, dict[str, Any]] = {}  # thread id → running turn
waiting: dict[int, tuple[threading.Event, list[Any], str]] = {}  # id → (answered, box, thread)
children: dict[str, list[subprocess.Popen[bytes]]] = {}  # thread id → running commands
server_ids = iter(range(10**9))
turns_running = threading.Condition(lock)
turns_started = [0]  # turns started so far (a barrier counts them)


def send(message: dict[str, Any]) -> None:
    data = json.dumps(message) + "\n"
    with lock:
        sys.stdout.write(data)
        sys.stdout.flush()


def active_profile(params: dict[str, Any]) -> dict[str, Any] | None:
    """The ``activePermissionProfile`` 0.171.0 reports: the one the thread's config override
    selects (``no_permission_profiles``: none, as a Codex without them)."""
    config = params.get("config") or {}
    name = config.get("default_permissions")
    if not name or SCRIPT.get("no_permission_profiles"):
        return None
    return {"id": name, "extends": config.get("permissions", {}).get(name, {}).get("extends")}


def notify(method: str, params: dict[str, Any]) -> None:
    send({"method": method, "params": params, "emittedAtMs": int(time.time() * 1000)})


def record(entry: dict[str, Any]) -> None:
    if SCRIPT.get("record"):
        with lock, open(SCRIPT["record"], "a") as handle:
            handle.write(json.dumps(entry) + "\n")


def ask(method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A server → client request; waits for the answer (result or error; {} if withdrawn)."""
    request_id = next(server_ids)
    done = threading.Event()
    box: list[Any] = []
    waiting[request_id] = (done, box, params.get("threadId", ""))
    send({"method": method, "id": request_id, "params": params})
    done.wait()
    return request_id, (box[0] if box else {})


def rule_for(prompt: str) -> dict[str, Any]:
    for rule in SCRIPT.get("rules", []):
        if rule.get("match", "") in prompt:
            return dict(rule)
    return {}


def item_note(method: str, thread_id: str, turn_id: str, item: dict[str, Any]) -> None:
    notify(method, {"item": {**item, "startedAtMs": 1}, "threadId": thread_id, "turnId": turn_id})


def turn_body(
    turn: dict[str, Any], status: str = "inProgress", error: Any = None
) -> dict[str, Any]:
    return {
        "id": turn["id"],
        "items": [],
        "itemsView": "notLoaded",
        "status": status,
        "error": error,
        "startedAt": None,
        "rootTurnId": turn["id"],
    }


def started(thread_id: str, turn: dict[str, Any], prompt: str) -> None:
    notify("thread/status/changed", {"threadId": thread_id, "status": {"type": "active"}})
    notify("turn/started", {"threadId": thread_id, "turn": turn_body(turn)})
    user = {
        "type": "userMessage",
        "id": str(uuid.uuid4()),
        "clientId": None,
        "content": [{"type": "text", "text": prompt, "text_elements": []}],
    }
    item_note("item/started", thread_id, turn["id"], user)
    item_note("item/completed", thread_id, turn["id"], user)


def finish(thread_id: str, turn: dict[str, Any], status: str, error: Any = None) -> None:
    with lock:
        active.pop(thread_id, None)
        turns_running.notify_all()
    notify("turn/completed", {"threadId": thread_id, "turn": turn_body(turn, status, error)})


def approval(thread_id: str, turn: dict[str, Any], rule: dict[str, Any]) -> str:
    kind = rule["approval"]
    turn_id = turn["id"]
    if kind == "exec":
        command = f"/bin/bash -lc '{rule.get('command', 'touch approved.txt')}'"
        item: dict[str, Any] = {
            "type": "commandExecution",
            "id": "call_1",
            "command": command,
            "cwd": "/w",
            "processId": "4242",
            "status": "inProgress",
            "aggregatedOutput": None,
            "exitCode": None,
            "commandActions": [],
        }
        method = "item/commandExecution/requestApproval"
        params = {
            "kind": "command",
            "command": command,
            "cwd": "/w",
            "reason": None,
            "availableDecisions": ["accept", "cancel"],
        }
    else:
        change = {
            "path": rule.get("path", "/w/file.txt"),
            "kind": {"type": "add"},
            "diff": rule.get("diff", "hello\n"),
        }
        item = {
            "type": "fileChange",
            "id": "call_1",
            "changes": [change],
            "status": "inProgress",
        }
        method = "item/fileChange/requestApproval"
        params = {"reason": None, "grantRoot": None}
    item_note("item/started", thread_id, turn_id, item)
    request_id, answer = ask(
        method,
        {"threadId": thread_id, "turnId": turn_id, "itemId": "call_1", "startedAtMs": 1, **params},
    )
    decision = str(answer.get("result", {}).get("decision", "failed"))
    record({"decision": decision, "answer": answer})
    if turn.get("interrupted"):
        return decision
    notify("serverRequest/resolved", {"threadId": thread_id, "requestId": request_id})
    accepted = decision in ("accept", "acceptForSession")
    done: dict[str, Any] = {**item, "status": "completed" if accepted else "declined"}
    if kind == "exec":
        done["exitCode"] = 0 if accepted else None
    item_note("item/completed", thread_id, turn_id, done)
    return decision


def run_command(thread_id: str, turn: dict[str, Any], command: str) -> None:
    child = subprocess.Popen(
        ["bash", "-c", command],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    children.setdefault(thread_id, []).append(child)
    with lock, open(SCRIPT.get("pids", "/dev/null"), "a") as handle:
        handle.write(f"{child.pid}\n")
    item: dict[str, Any] = {
        "type": "commandExecution",
        "id": "call_run",
        "command": f"/bin/bash -lc '{command}'",
        "cwd": os.getcwd(),
        "processId": "777",
        "status": "inProgress",
    }
    item_note("item/started", thread_id, turn["id"], item)


def run_turn(thread_id: str, turn: dict[str, Any], prompt: str, rule: dict[str, Any]) -> None:
    turn_id = turn["id"]
    if not rule.get("early") and not rule.get("silent"):
        started(thread_id, turn, prompt)
    if rule.get("crash"):
        os._exit(3)
    if rule.get("unknown_request"):
        _id, answer = ask(rule["unknown_request"], {"threadId": thread_id, "turnId": turn_id})
        record({"unknown_answer": answer})
    suffix = ""
    if rule.get("approval"):
        suffix = f" [{rule['approval']} {approval(thread_id, turn, rule)}]"
    if rule.get("run"):
        run_command(thread_id, turn, rule["run"])
    if rule.get("barrier"):
        with turns_running:
            turns_running.wait_for(lambda: turns_started[0] >= rule["barrier"], timeout=30)
    if rule.get("hang") or rule.get("silent"):
        turn["interrupted_event"].wait()
    if turn.get("interrupted"):
        finish(thread_id, turn, "interrupted")
        return
    if rule.get("fail"):
        error = {"message": rule["fail"], "codexErrorInfo": "other", "additionalDetails": None}
        notify(
            "error", {"error": error, "willRetry": False, "threadId": thread_id, "turnId": turn_id}
        )
        finish(thread_id, turn, "failed", error)
        return
    reply = rule.get("reply", f"FAKE-REPLY: {prompt}") + suffix
    messages: list[tuple[str, str | None]] = []
    if rule.get("phases"):
        messages.append(("thinking about it", "commentary"))
    messages.append((reply, "final_answer" if rule.get("phases") else None))
    for text, phase in messages:
        item: dict[str, Any] = {
            "type": "agentMessage",
            "id": f"msg_{uuid.uuid4().hex}",
            "text": "",
            "phase": phase,
            "moderation": None,
        }
        item_note("item/started", thread_id, turn_id, item)
        pieces = max(1, int(rule.get("deltas", 1)))
        step = max(1, len(text) // pieces)
        for start in range(0, len(text), step):
            notify(
                "item/agentMessage/delta",
                {
                    "threadId": thread_id,
                    "turnId": turn_id,
                    "itemId": item["id"],
                    "delta": text[start : start + step],
                },
            )
        item_note("item/completed", thread_id, turn_id, {**item, "text": text})
    total = int(rule.get("tokens", 18))
    usage = {
        "totalTokens": total,
        "inputTokens": 11,
        "cachedInputTokens": 0,
        "cacheWriteInputTokens": 0,
        "outputTokens": total - 11,
        "reasoningOutputTokens": 0,
    }
    notify(
        "thread/tokenUsage/updated",
        {
            "threadId": thread_id,
            "turnId": turn_id,
            "tokenUsage": {"total": usage, "last": usage, "modelContextWindow": 258400},
        },
    )
    finish(thread_id, turn, "completed")


def start_turn(request_id: Any, params: dict[str, Any]) -> None:
    thread_id = params["threadId"]
    if thread_id not in threads:
        error(request_id, f"thread not found: {thread_id}")
        return
    prompt = "".join(part.get("text", "") for part in params.get("input", []))
    with lock:
        running = active.get(thread_id)
        if running is None:
            turn = {"id": str(uuid.uuid4()), "interrupted_event": threading.Event()}
            active[thread_id] = turn
            turns_started[0] += 1
            turns_running.notify_all()
    if running is not None:  # like the real one: the input joins the active turn
        send({"id": request_id, "result": {"turn": turn_body(running)}})
        return
    rule = rule_for(prompt)
    if rule.get("garbage"):
        with lock:
            sys.stdout.write("this is not json {\n")
            sys.stdout.flush()
    if rule.get("early"):
        started(thread_id, turn, prompt)
    if "raw_turn_start" in rule:  # the turn/start answer as written, "{id}" replaced
        with lock:
            sys.stdout.write(rule["raw_turn_start"].replace("{id}", json.dumps(request_id)) + "\n")
            sys.stdout.flush()
        return
    send({"id": request_id, "result": {"turn": turn_body(turn)}})
    threading.Thread(target=run_turn, args=(thread_id, turn, prompt, rule), daemon=True).start()


def error(request_id: Any, message: str) -> None:
    send({"id": request_id, "error": {"code": -32600, "message": message}})


def serve(message: dict[str, Any]) -> None:
    method, request_id = message.get("method"), message.get("id")
    params = message.get("params") or {}
    if method is None:
        if request_id in waiting:
            done, box, _thread = waiting.pop(request_id)
            box.append(message)
            done.set()
        return
    if method == "initialized" or request_id is None:
        return
    if method == "initialize":
        if state["initialized"]:
            error(request_id, "Already initialized")
            return
        state["initialized"] = True
        state["experimental"] = bool((params.get("capabilities") or {}).get("experimentalApi"))
        name = params.get("clientInfo", {}).get("name", "client")
        send(
            {
                "id": request_id,
                "result": {
                    "userAgent": f"{name}/0.171.0 (Fake 1.0; x86_64) unknown ({name}; 0.1.0)",
                    "codexHome": "/fake/home",
                    "platformFamily": "unix",
                    "platformOs": "linux",
                },
            }
        )
        notify("configWarning", {"summary": "fake bubblewrap warning", "details": None})
        return
    if not state["initialized"]:
        error(request_id, "Not initialized")
    elif method == "thread/start" and SCRIPT.get("thread_start_error"):
        error(request_id, SCRIPT["thread_start_error"])
    elif method == "thread/start":
        thread_id = str(uuid.uuid4())
        threads.add(thread_id)
        thread: dict[str, Any] = {
            "id": thread_id,
            "cwd": params.get("cwd"),
            "status": {"type": "idle"},
            "turns": [],
            "extraField": True,
        }
        send(
            {
                "id": request_id,
                "result": {
                    "thread": thread,
                    "model": params.get("model"),
                    "sandbox": {"type": "readOnly"},
                    "activePermissionProfile": active_profile(params),
                },
            }
        )
        notify("thread/started", {"thread": thread})
    elif method == "thread/resume":
        thread_id = params.get("threadId", "")
        if thread_id not in threads:
            error(request_id, f"no rollout found for thread id {thread_id}")
        else:
            thread = {"id": thread_id, "turns": []}
            result = {"thread": thread, "activePermissionProfile": active_profile(params)}
            send({"id": request_id, "result": result})
    elif method == "turn/start":
        start_turn(request_id, params)
    elif method == "turn/interrupt":
        with lock:
            turn = active.get(params.get("threadId", ""))
        if turn is None or turn["id"] != params.get("turnId"):
            error(request_id, "no active turn to interrupt")
            return
        turn["interrupted"] = True
        for request, (done, _box, thread_id) in list(waiting.items()):
            if thread_id == params["threadId"]:  # withdrawn: a late answer is ignored
                del waiting[request]
                notify("serverRequest/resolved", {"threadId": thread_id, "requestId": request})
                done.set()
        send({"id": request_id, "result": {}})
        turn["interrupted_event"].set()
    elif method == "thread/backgroundTerminals/clean":
        if not state["experimental"]:
            error(
                request_id, "thread/backgroundTerminals/clean requires experimentalApi capability"
            )
            return
        for child in children.pop(params.get("threadId", ""), []):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        send({"id": request_id, "result": {}})
    elif method == "thread/backgroundTerminals/list":
        running = [c for c in children.get(params.get("threadId", ""), []) if c.poll() is None]
        data = [
            {
                "itemId": "call_run",
                "processId": "777",
                "command": "/bin/bash -lc 'sleep 300'",
                "cwd": os.getcwd(),
                "osPid": None,
                "cpuPercent": None,
                "rssKb": None,
            }
            for _child in running
        ]
        send({"id": request_id, "result": {"data": data, "nextCursor": None}})
    elif method == "account/read":
        account = SCRIPT.get(
            "account", {"type": "chatgpt", "email": "me@example.com", "planType": "plus"}
        )
        send({"id": request_id, "result": {"account": account, "requiresOpenaiAuth": True}})
    elif method == "model/list":
        models = [{"id": "gpt-5.5", "model": "gpt-5.5", "isDefault": True}]
        send({"id": request_id, "result": {"data": models, "nextCursor": None}})
    elif method == "thread/loaded/list":
        if not SCRIPT.get("wedged"):
            send({"id": request_id, "result": {"data": sorted(threads), "nextCursor": None}})
    else:
        error(request_id, f"Invalid request: unknown variant `{method}`")


def main() -> None:
    record({"env_has_token": "TELEGRAM_BOT_TOKEN" in os.environ})
    sys.stderr.write("WARNING: fake app-server starting\n")
    sys.stderr.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            message = json.loads(line)
        except ValueError:
            continue  # like the real one: a malformed line is ignored
        record({"received": message})
        serve(message)


if __name__ == "__main__":
    main()
