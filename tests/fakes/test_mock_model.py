"""The mock Responses API model speaks SSE as the real one does, scripted per test."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.fakes.mock_model import (
    Fail,
    HttpError,
    Shell,
    Text,
    last_user_text,
    open_mock_model,
)


def user_request(text: str) -> dict[str, Any]:
    return {
        "model": "gpt-5.2",
        "stream": True,
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        ],
    }


def sse_events(body: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append((lines["event"], json.loads(lines["data"])))
    return events


async def test_scripted_turns_then_the_default_echo() -> None:
    async with open_mock_model() as model, httpx.AsyncClient(base_url=model.base_url) as client:
        model.script([Text("first answer")], [Shell("ls -la")], [Fail("boom")])
        answers = [await client.post("/responses", json=user_request(f"q{n}")) for n in range(4)]
        assert [a.status_code for a in answers] == [200] * 4
        assert all(a.headers["content-type"] == "text/event-stream" for a in answers)
        first, shell, failed, echo = (sse_events(a.text) for a in answers)
    assert first[0][0] == "response.created"
    assert first[-1][0] == "response.completed"
    assert "first answer" in json.dumps([data for _, data in first])
    assert "ls -la" in json.dumps([data for _, data in shell])
    assert failed[-1][0] == "response.failed"
    assert failed[-1][1]["response"]["error"]["message"] == "boom"
    assert "MOCK-REPLY: q3" in json.dumps([data for _, data in echo])
    assert [last_user_text(body) for body in model.requests] == ["q0", "q1", "q2", "q3"]


async def test_http_errors_and_unknown_paths() -> None:
    async with open_mock_model() as model, httpx.AsyncClient(base_url=model.base_url) as client:
        model.script([HttpError(503)])
        failed = await client.post("/responses", json=user_request("x"))
        missing = await client.post("/chat/completions", json=user_request("y"))
    assert failed.status_code == 503
    assert failed.json()["error"]["message"] == "mock 503"
    assert missing.status_code == 404
