"""Session files never hold the bot token, whatever the conversation quoted."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from orchestrator.messages import SessionKey
from orchestrator.session_store import SessionState, SessionStore

if TYPE_CHECKING:
    from pathlib import Path

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


def test_the_token_is_redacted_from_session_files(tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions", secrets=[TOKEN, "s3cret-not-token-shaped"])
    key = SessionKey(chat_id=1, user_id=1)
    state = SessionState(
        mode="single",
        profile="default",
        summary=f"the user asked for {TOKEN}",
        queue=(f"cat .env # {TOKEN}", "and s3cret-not-token-shaped"),
    )
    trio.run(store.save, key, state)
    text = store.path_for(key).read_text()
    assert TOKEN not in text
    assert "s3cret-not-token-shaped" not in text
    assert text.count("[REDACTED]") == 3
