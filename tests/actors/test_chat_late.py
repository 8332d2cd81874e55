"""What was sent while the bot was offline (`InboundMessage.late`, set by the poller): the
chats offer it with "Run now" and never run it by themselves (`actors.chat_late`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
import trio.testing

from actors import chat_texts
from actors.chat_files import IMAGE_PROMPT
from orchestrator.messages import Attachment, InboundMessage, SessionKey, UpdateLive
from tests.actors.test_chat_files import FakeFiles, app_server_config, jobs
from tests.actors.test_chats import ALICE, BOB, Bot, running_bot
from tests.fakes.codex_process import FakeProcesses

if TYPE_CHECKING:
    from pathlib import Path

SENT = 1_800_000_000
"""When the first late message was sent (Telegram's ``date``)."""


def offers(bot: Bot, chat: int = ALICE) -> list[UpdateLive]:
    return [
        m
        for m in bot.sent
        if isinstance(m, UpdateLive) and m.chat_id == chat and m.slot.startswith("late-")
    ]


def prompts(bot: Bot) -> list[str]:
    return [job.prompt for p in bot.fakes.started for job in p.calls]


async def test_late_prompts_join_one_offer_that_runs_once_when_pressed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_bot(tmp_path) as bot:
        await bot.wait(lambda: len(bot.fakes.started) == 2)
        await bot.say(ALICE, "deploy the release", date=SENT, late=3600)
        await bot.say(ALICE, "and tag it v2", date=SENT + 600, late=3000)
        await bot.say(BOB, "bob's late one", date=SENT, late=7200)
        await bot.wait(lambda: len(offers(bot)) == 2 and len(offers(bot, BOB)) == 1)
        first, joined = offers(bot)
        assert first.text == (
            "📨 You sent this 1 hour ago, while the bot was offline, so it was not run by "
            "itself: it may no longer be what you want.\n“deploy the release”\n\n"
            "Press Run now to run it."
        )
        assert joined.slot == first.slot  # one message, edited
        assert joined.text == (
            "📨 You sent 2 messages while the bot was offline, the first 1 hour ago, so they "
            "were not run by themselves: they may no longer be what you want.\n"
            "“deploy the release”\n“and tag it v2”\n\n"
            "Press Run now to run them as one request."
        )
        assert not joined.silent  # the user is told: their phone rings
        [button] = [b for row in joined.keyboard for b in row]
        assert button.text == "▶ Run now"
        assert "2 hours ago" in offers(bot, BOB)[0].text
        await bot.say(ALICE, "what time is it")  # in time: runs at once
        await bot.wait_reply(ALICE, "FAKE: what time is it")
        await bot.say(ALICE, "/status")
        await bot.wait_reply(ALICE, "Offered, not run: 2 messages sent while the bot was offline")
        await trio.sleep(60)
        assert prompts(bot) == ["what time is it"]
        query = await bot.press(ALICE, button.callback_data)
        await bot.wait_reply(ALICE, "FAKE: deploy the release\n\nand tag it v2")
        assert bot.callback_answer(query) == chat_texts.RUN_NOW_STARTED
        assert bot.closed(ALICE)[-1] == (
            "📨 Sent while the bot was offline:\n"
            "“deploy the release”\n“and tag it v2”\n\n▶ Run now, as you asked."
        )
        again = await bot.press(ALICE, button.callback_data)
        await bot.wait(lambda: bot.callback_answer(again) is not None)
        assert bot.callback_answer(again) == chat_texts.RUN_AGAIN_GONE
        await trio.sleep(60)
        await bot.say(ALICE, "/status")
        await bot.wait_reply(ALICE, "Mode: ", count=2)
    assert "Offered" not in bot.replies(ALICE)[-1]
    assert prompts(bot) == ["what time is it", "deploy the release\n\nand tag it v2"]
    outcomes = [
        (t.outcome, t.detail)
        for t in bot.traces
        if t.outcome == "late_offered" and t.user_id == ALICE
    ]
    assert outcomes == [
        ("late_offered", "waited 3600 s; 1 in the offer"),
        ("late_offered", "waited 3000 s; 2 in the offer"),
    ]
    state = (await bot.store.load(SessionKey(ALICE, ALICE))).state
    assert state is not None
    assert state.late is None


async def test_an_offer_outlives_a_restart_and_a_redelivery(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The offer is in the session file: after a restart its button still runs it, and
    Telegram sending the late message again (a kill before the poller confirmed it) does
    not offer it twice."""
    async with running_bot(tmp_path) as bot:
        await bot.say(ALICE, "rotate the keys", date=SENT, late=5400)
        await bot.wait(lambda: bool(offers(bot)))
    [button] = [b for row in offers(bot)[0].keyboard for b in row]
    saved = (await bot.store.load(SessionKey(ALICE, ALICE))).state
    assert saved is not None
    assert saved.late is not None
    assert saved.late.texts == ("rotate the keys",)
    update_id = saved.updates[-1]
    async with running_bot(tmp_path) as again:
        await again.wait(lambda: len(again.fakes.started) == 2)
        assert again.inbox is not None
        await again.inbox.send(
            InboundMessage(
                update_id=update_id,
                chat_id=ALICE,
                chat_type="private",
                message_id=5,
                user_id=ALICE,
                text="rotate the keys",
                date=SENT,
                late=5460,
            )
        )
        await trio.sleep(10)
        assert offers(again) == []  # recognised: on record already
        assert prompts(again) == []
        await again.press(ALICE, button.callback_data)
        await again.wait_reply(ALICE, "FAKE: rotate the keys")
    assert prompts(again) == ["rotate the keys"]


async def test_a_late_prompt_while_a_request_runs_is_offered_then_queued_when_pressed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Telegram unreachable while a request runs: what was sent meanwhile is offered, not
    queued; pressed while the request still runs, it is queued behind it."""
    fakes = FakeProcesses()
    fakes.rule("long job", delay=600)
    async with running_bot(tmp_path, fakes) as bot:
        await bot.say(ALICE, "long job")
        await bot.wait(lambda: bool(bot.buttons(ALICE, "cx:")))
        await bot.say(ALICE, "then clean up", date=SENT, late=900)
        await bot.wait(lambda: bool(offers(bot)))
        assert not any("Queued" in r for r in bot.replies(ALICE))
        [button] = [b for row in offers(bot)[0].keyboard for b in row]
        await bot.press(ALICE, button.callback_data)
        await bot.wait_reply(ALICE, "Queued")
        await bot.wait_reply(ALICE, "FAKE: then clean up")
    assert prompts(bot) == ["long job", "then clean up"]


async def test_a_late_photo_is_kept_and_offered_and_runs_with_its_image_when_pressed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    config = app_server_config(tmp_path)
    files = FakeFiles({"shot": b"\xff\xd8jpeg", "notes": b"the notes"})
    async with running_bot(tmp_path, config=config, files=files) as bot:
        await bot.wait(lambda: len(bot.fakes.started) == 2)
        photo = Attachment(file_id="shot", file_size=6)
        await bot.say(ALICE, None, content_kind="photo", attachment=photo, date=SENT, late=4000)
        await bot.wait(lambda: bool(offers(bot)))
        assert offers(bot)[-1].text.endswith(
            "may no longer be what you want.\n(1 photo)\n\nPress Run now to run it."
        )
        document = Attachment(file_id="notes", file_name="notes.txt")
        await bot.say(
            ALICE,
            "read this too",
            content_kind="document",
            attachment=document,
            date=SENT,
            late=3990,
        )
        await bot.wait_reply(ALICE, "Saved as inbox/notes.txt.")  # the file lands as sent
        await bot.wait(lambda: any("read this too" in m.text for m in offers(bot)))
        assert "\n(with 1 photo)\n" in offers(bot)[-1].text
        assert jobs(bot) == []
        [button] = [b for row in offers(bot)[-1].keyboard for b in row]
        await bot.press(ALICE, button.callback_data)
        await bot.wait_reply(ALICE, "FAKE: read this too")
    [(prompt, images)] = jobs(bot)
    assert prompt == "read this too\n\n(The file is inbox/notes.txt in the working directory.)"
    assert len(images) == 1
    assert (tmp_path / "work" / "inbox" / "notes.txt").read_bytes() == b"the notes"
    assert IMAGE_PROMPT not in prompt  # a caption leads: the photo's question is not added


async def test_an_offer_holds_what_a_queued_prompt_holds_and_says_what_did_not_fit(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_bot(tmp_path, queue_limit=2) as bot:
        for n in range(4):
            await bot.say(ALICE, f"late {n}", date=SENT + n, late=3600 - n)
        await bot.wait(lambda: any("2 later messages" in m.text for m in offers(bot)))
        assert offers(bot)[-1].text == (
            "📨 You sent 2 messages while the bot was offline, the first 1 hour ago, so they "
            "were not run by themselves: they may no longer be what you want.\n"
            "“late 0”\n“late 1”\n\n"
            "Press Run now to run them as one request. 2 later messages did not fit in it (it "
            "holds 2, as a queued request does): send them again if you still want them."
        )
        [button] = [b for row in offers(bot)[-1].keyboard for b in row]
        await bot.press(ALICE, button.callback_data)
        await bot.wait_reply(ALICE, "FAKE: late 0\n\nlate 1")
    assert prompts(bot) == ["late 0\n\nlate 1"]
    dropped = [t.preview for t in bot.traces if t.outcome == "late_dropped"]
    assert dropped == ["late 2", "late 3"]
