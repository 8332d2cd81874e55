"""Redaction: the one function every outward text (logs, traces, doctor) goes through."""

from __future__ import annotations

import datetime

from actors import tracer
from orchestrator.messages import TraceRecord
from orchestrator.redaction import REDACTED, redact, redact_bytes

FOREIGN_TOKEN = "987654321:BBFFggHHiiJJkkLLmmNNooPPqqRRssTTuu"


def test_given_secrets_and_token_shaped_strings_are_replaced() -> None:
    text = f"our s3cr3t-value and someone's {FOREIGN_TOKEN} in a URL /bot{FOREIGN_TOKEN}/getMe"
    assert redact(text, ["s3cr3t-value", ""]) == (
        f"our {REDACTED} and someone's {REDACTED} in a URL /bot{REDACTED}/getMe"
    )


def test_ordinary_text_is_untouched() -> None:
    text = "update 123456 in chat -100123: 12:30 meeting, thread 0199a-bcde"
    assert redact(text) == text


def test_trace_lines_go_through_the_same_redaction() -> None:
    when = datetime.datetime(2026, 11, 25, tzinfo=datetime.UTC)
    line = tracer.encode_line(
        TraceRecord(event="shutdown", detail=f"env had {FOREIGN_TOKEN} and hunter2"),
        when,
        ["hunter2"],
    )
    assert FOREIGN_TOKEN.encode() not in line
    assert b"hunter2" not in line
    assert line.count(REDACTED.encode()) == 2


def test_a_binary_document_stays_intact_unless_it_holds_a_secret() -> None:
    """A zip or an image (``/get``) is not text: decoding it as UTF-8 would spoil it."""
    binary = bytes(range(256)) * 4
    assert redact_bytes(binary, ["sekrit"]) == binary
    leaking = b"\x89PNG\xff" + FOREIGN_TOKEN.encode() + b"\x00sekrit\xfe"
    assert redact_bytes(leaking, ["sekrit"]) == b"\x89PNG\xff[REDACTED]\x00[REDACTED]\xfe"
    assert redact_bytes(f"text {FOREIGN_TOKEN}".encode()) == b"text [REDACTED]"
