"""The file a live message refers to goes first; if it cannot be delivered, the message with
its buttons is not sent (an approval is never offered without what it approves)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.errors import TelegramBadRequest
from orchestrator.messages import Button, SendReply, UpdateLive
from tests.actors.test_telegram_sender import Sender, sender, sent_texts

if TYPE_CHECKING:
    import trio.testing

__all__ = ["sender"]  # the fixture

KEYBOARD = ((Button("✅ Approve", "ap:t:a"),),)


def approval(slot: str) -> UpdateLive:
    return UpdateLive(
        chat_id=5,
        slot=slot,
        text="the full command is in the file above",
        keyboard=KEYBOARD,
        document=b"echo " + b"x" * 5000,
        document_name="command.txt",
        document_caption="The full command",
    )


async def test_the_file_goes_before_the_buttons(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    await sender.put(approval("a"))
    await sender.wait(lambda api: bool(sent_texts(api, 5)))
    calls = [call.method for call in sender.api.calls if call.method != "setMyCommands"]
    assert calls == ["sendDocument", "sendMessage"]


async def test_no_buttons_when_the_file_was_refused(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    sender.api.fail("sendDocument", TelegramBadRequest("Bad Request: file is too big"))
    await sender.put(approval("a"), SendReply(chat_id=5, markdown="after"))
    await sender.wait(lambda api: "after" in sent_texts(api, 5))
    assert sent_texts(sender.api, 5) == ["after"]
    assert sender.stats.undelivered == 1


async def test_a_file_with_no_text_goes_alone_its_caption_cut_to_what_telegram_takes(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    """``/get``: the document says what it is in its caption, with no message after it; a
    caption past Telegram's 1,024 (a deep path) is cut rather than refused."""
    long_path = "📎 " + "/deep" * 300 + " (9 bytes)"
    await sender.put(
        UpdateLive(
            chat_id=5,
            slot="file-1",
            text="",
            document=b"print(1)\n",
            document_name="app.py",
            document_caption=long_path,
        ),
        SendReply(chat_id=5, markdown="after"),
    )
    await sender.wait(lambda api: "after" in sent_texts(api, 5))
    calls = [call for call in sender.api.calls if call.method != "setMyCommands"]
    assert [call.method for call in calls] == ["sendDocument", "sendMessage"]
    caption = calls[0].text
    assert caption == long_path[:511] + "…"
    assert sender.stats.undelivered == 0
