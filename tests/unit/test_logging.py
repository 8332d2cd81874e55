"""Logging: ISO-8601 timestamps on every line and no token anywhere."""

from __future__ import annotations

import io
import logging
import re

import pytest

from orchestrator.logging import SaidOnce, configure_logging

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


@pytest.fixture
def captured():
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("DEBUG", secrets=[TOKEN], stream=stream)
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_every_line_starts_with_an_iso_timestamp(captured: io.StringIO) -> None:
    logging.getLogger("orchestrator.test").info("hello %s", "world")
    line = captured.getvalue().splitlines()[0]
    assert re.match(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO orchestrator\.test: hello world$", line
    )


def test_token_is_redacted_from_message_args_and_traceback(captured: io.StringIO) -> None:
    log = logging.getLogger("orchestrator.test")
    log.warning(f"url https://api.telegram.org/bot{TOKEN}/getUpdates")
    log.warning("arg %s", TOKEN)
    try:
        raise RuntimeError(f"failed calling /bot{TOKEN}/sendMessage")
    except RuntimeError:
        log.exception("boom")
    output = captured.getvalue()
    assert TOKEN not in output
    assert "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw" not in output
    assert output.count("[REDACTED]") >= 3
    assert "RuntimeError" in output


def test_token_shaped_strings_are_redacted_even_if_unknown(captured: io.StringIO) -> None:
    other = "987654321:ZZHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    logging.getLogger("x").error("leak %s", other)
    assert other not in captured.getvalue()


def test_httpx_info_lines_are_silenced(captured: io.StringIO) -> None:
    logging.getLogger("httpx").info(f"HTTP Request: POST https://x/bot{TOKEN}/getMe")
    assert captured.getvalue() == ""


def test_a_text_said_once_is_at_its_level_once_and_the_memory_stays_bounded() -> None:
    said = SaidOnce(kept=2)
    assert [said.level("a", logging.WARNING) for _ in range(3)] == [
        logging.WARNING,
        logging.DEBUG,
        logging.DEBUG,
    ]
    assert said.level("b", logging.INFO) == logging.INFO
    assert said.level("c", logging.INFO) == logging.INFO  # full: starts over with "c"
    assert said.level("c", logging.INFO) == logging.DEBUG
    assert said.level("a", logging.WARNING) == logging.WARNING  # forgotten, said once more
