"""Where the token comes from (token file, systemd credential, environment, .env), the
workspace rule for the token file, and the warnings about secret files open to others."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.messages import (
    AnswerCallback,
    CloseLive,
    SenderMsg,
    SendReply,
    UpdateLive,
)
from orchestrator.redaction import redact_outbound
from tests.unit.test_config import ENV, TOKEN, fail, write

if TYPE_CHECKING:
    from pathlib import Path

from orchestrator.config import load_config, token_error

OTHER = "987654321:BBHdqTcvCH1vGWJxfSeofSAs0K5PALDxyz"


def test_token_file_wins_and_is_relative_to_the_config_folder(tmp_path: Path) -> None:
    path = write(tmp_path, "[telegram]\ntoken_file = 'secret/token'\n")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "token").write_text(f"{OTHER}\n")
    loaded = load_config(path, environ=ENV, cwd=tmp_path)
    assert loaded.token.reveal() == OTHER
    assert loaded.token_from_file
    assert loaded.token_source == str(tmp_path / "secret" / "token")
    assert loaded.config.telegram.token_file == str(tmp_path / "secret" / "token")


def test_files_saved_by_a_windows_editor_are_read(tmp_path: Path) -> None:
    """A byte order mark first (Notepad's UTF-8) and CRLF line ends: the config loads (it
    failed with "Invalid statement (at line 1, column 1)") and the token is whole (it was
    malformed, the mark in front of it)."""
    bom = "\ufeff"
    path = tmp_path / "conf.toml"
    path.write_bytes(
        (f"{bom}[telegram]\r\ntoken_file = 'token'\r\n[profiles.default]\r\n").encode()
        + b"working_directory = 'work'\r\n"
    )
    (tmp_path / "work").mkdir()
    (tmp_path / "token").write_bytes(f"{bom}{OTHER}\r\n".encode())
    loaded = load_config(path, environ={"HOME": "/nonexistent-home"}, cwd=tmp_path)
    assert loaded.token.reveal() == OTHER
    assert token_error(loaded.token, loaded.token_source, tmp_path) is None
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "telegram_bot_token").write_bytes(f"{bom}{OTHER}\n".encode())
    path.write_bytes(path.read_bytes().replace(b"token_file = 'token'", b""))
    environ = {"HOME": "/nonexistent-home", "CREDENTIALS_DIRECTORY": str(tmp_path / "creds")}
    assert load_config(path, environ=environ, cwd=tmp_path).token.reveal() == OTHER


def test_a_missing_token_file_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[telegram]\ntoken_file = 'nope'\n")
    error = fail(path)
    assert error.key == "telegram.token_file"
    assert "cannot read" in error.problem


def test_the_workspace_may_not_hold_the_token_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[telegram]\ntoken_file = 'work/token'\n")
    (tmp_path / "work" / "token").write_text(TOKEN)
    error = fail(path)
    assert error.key == "profiles.default.working_directory"
    assert "contains the token file" in error.problem


def test_a_systemd_credential_comes_before_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "telegram_bot_token").write_text(OTHER)
    environ = {**ENV, "CREDENTIALS_DIRECTORY": str(tmp_path / "creds")}
    loaded = load_config(path, environ=environ, cwd=tmp_path)
    assert loaded.token.reveal() == OTHER
    assert loaded.token_source == "systemd credential telegram_bot_token"
    assert loaded.token_from_file


def test_secret_files_open_to_others_are_warned_about(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    (tmp_path / ".env").write_text(f"TELEGRAM_BOT_TOKEN={TOKEN}\n")
    (tmp_path / ".env").chmod(0o644)
    path.chmod(0o600)
    loaded = load_config(path, environ={"HOME": "/nonexistent-home"}, cwd=tmp_path)
    assert not loaded.token_from_file
    assert loaded.permission_warnings() == [
        f"the .env file {tmp_path / '.env'} is open to other users (mode 0644): "
        f"run chmod 600 {tmp_path / '.env'}"
    ]
    (tmp_path / ".env").chmod(0o600)
    assert loaded.permission_warnings() == []


def test_every_outbound_text_is_redacted() -> None:
    text = f"the token is {TOKEN}, and {OTHER}!"
    messages: list[SenderMsg] = [
        SendReply(chat_id=1, markdown=text),
        UpdateLive(chat_id=1, slot="s", text=text),
        CloseLive(chat_id=1, slot="s", final_text=text),
        CloseLive(chat_id=1, slot="s", keep_text=True, text_from=text, text_to=text),
        CloseLive(chat_id=1, slot="s", keep_text=True, text_from="a note", text_to=text),
        AnswerCallback(callback_query_id="q", text=text),
    ]
    for message in messages:
        shown = repr(redact_outbound(message, [TOKEN]))
        assert TOKEN not in shown
        assert OTHER not in shown
        assert "[REDACTED]" in shown
