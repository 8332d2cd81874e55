"""Redaction: the one function every outward text (logs, traces, doctor) goes through."""

from __future__ import annotations

import datetime

from actors import tracer
from orchestrator.messages import TraceRecord
from orchestrator.redaction import (
    REDACTED,
    redact,
    redact_bytes,
    redact_secrets,
    redact_secrets_bytes,
)

FOREIGN_TOKEN = "987654321:BBFFggHHiiJJkkLLmmNNooPPqqRRssTTuu"


def test_given_secrets_and_token_shaped_strings_are_replaced() -> None:
    text = f"our s3cr3t-value and someone's {FOREIGN_TOKEN} in a URL /bot{FOREIGN_TOKEN}/getMe"
    assert redact(text, ["s3cr3t-value", ""]) == (
        f"our {REDACTED} and someone's {REDACTED} in a URL /bot{REDACTED}/getMe"
    )


def test_what_codex_is_given_loses_our_secrets_only() -> None:
    """A prompt may hold another bot's token as the work itself; ours, whole or in part,
    never goes."""
    ours = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    text = f"mine {ours}, half {ours.split(':')[1]}, id {ours[:12]}…, theirs {FOREIGN_TOKEN}"
    assert redact_secrets(text, [ours]) == (
        f"mine {REDACTED}, half {REDACTED}, id {REDACTED}…, theirs {FOREIGN_TOKEN}"
    )
    assert redact_secrets(text, []) == text


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


def test_a_file_codex_reads_loses_our_secrets_only_text_or_binary() -> None:
    binary = bytes(range(256)) * 4
    assert redact_secrets_bytes(binary, ["sekrit"]) == binary
    leaking = b"\x89PNG\xff" + FOREIGN_TOKEN.encode() + b"\x00sekrit\xfe"
    assert redact_secrets_bytes(leaking, ["sekrit"]) == (
        b"\x89PNG\xff" + FOREIGN_TOKEN.encode() + b"\x00[REDACTED]\xfe"
    )
    assert redact_secrets_bytes("é sekrit".encode(), ["sekrit"]) == "é [REDACTED]".encode()


OUR_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
SECRET_HALF = OUR_TOKEN.partition(":")[2]


def test_the_token_in_pieces_is_redacted_too() -> None:
    """The bot id is public, so the half after it is the whole secret: a command that
    prints only that half, URL-encodes the colon or folds the token, and a text cut inside
    the token, must not get it out either."""
    cases = {
        f"key={SECRET_HALF}": f"key={REDACTED}",  # cut -d: -f2
        f"t=123456789%3A{SECRET_HALF}&x": f"t={REDACTED}&x",  # URL-encoded
        f"{OUR_TOKEN[:20]}\n{OUR_TOKEN[20:40]}\n{OUR_TOKEN[40:]}": (  # fold -w 20
            f"{REDACTED}\n{REDACTED}\n{OUR_TOKEN[40:]}"
        ),
        f"• $ echo … {OUR_TOKEN[:25]}": f"• $ echo … {REDACTED}",  # cut at 200 characters
        f"{OUR_TOKEN[:12]}…": f"{REDACTED}…",  # the id and 2 characters: still the id's
        f"x.{SECRET_HALF[5:15]}.y": f"x.{REDACTED}.y",  # any 10 characters of it
    }
    for text, redacted in cases.items():
        assert redact(text, [OUR_TOKEN]) == redacted, text
    assert SECRET_HALF not in redact_bytes(b"\xff" + SECRET_HALF.encode(), [OUR_TOKEN]).decode(
        "latin-1"
    )


def test_the_bot_id_alone_and_short_runs_stay() -> None:
    text = f"bot 123456789 answered; 12345678912:30; {SECRET_HALF[:9]} is nine characters"
    assert redact(text, [OUR_TOKEN]) == text
