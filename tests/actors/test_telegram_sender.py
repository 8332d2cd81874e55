"""The sender in virtual time: order, spacing, rate, coalescing and every delivery fault."""

from __future__ import annotations

import bisect
import functools
import itertools
import random
from typing import TYPE_CHECKING

import pytest
import trio
import trio.lowlevel
import trio.testing

from actors import telegram_sender
from actors.telegram_flood_control import GROUP_SPACING, PRIVATE_SPACING
from orchestrator.errors import (
    TelegramBadRequest,
    TelegramChatMigrated,
    TelegramForbidden,
    TelegramRetryAfter,
    TelegramTransientError,
)
from orchestrator.messages import (
    AnswerCallback,
    Button,
    ChatReactivated,
    CloseLive,
    SendChatAction,
    SenderMsg,
    SendReply,
    TraceRecord,
    UpdateLive,
)
from orchestrator.outage import Recovery
from tests.fakes.telegram_api import FakeTelegramApi

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable


class Sender:
    def __init__(self, api: FakeTelegramApi, send: trio.MemorySendChannel[SenderMsg]) -> None:
        self.api = api
        self.send = send
        self.traces: list[TraceRecord] = []
        self.stats = telegram_sender.SenderStatistics()

    async def put(self, *messages: SenderMsg) -> None:
        for message in messages:
            await self.send.send(message)

    async def wait(self, predicate: Callable[[FakeTelegramApi], bool]) -> None:
        with trio.fail_after(3600):
            await self.api.wait_for(predicate)


@pytest.fixture
async def sender(autojump_clock: trio.testing.MockClock) -> AsyncIterator[Sender]:
    api = FakeTelegramApi()
    send, receive = trio.open_memory_channel[SenderMsg](256)
    harness = Sender(api, send)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: telegram_sender.run(
                receive,
                api,
                max_chunks=3,
                rng=random.Random(3),
                trace=harness.traces.append,
                commands=[("start", "help")],
                statistics=harness.stats,
                task_status=task_status,
            )
        )
        yield harness
        send.close()


def sent_texts(api: FakeTelegramApi, chat_id: int) -> list[str]:
    return [c.text for c in api.calls_of("sendMessage") if c.chat_id == chat_id]


async def test_commands_are_registered(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    await sender.wait(lambda api: bool(api.calls_of("setMyCommands")))
    assert sender.api.calls_of("setMyCommands")[0].extra["commands"] == [("start", "help")]


def at_most_one_early_call(times: list[float], spacing: float) -> bool:
    """Whether no stretch of calls beats one per `spacing`, but for the one final a chat
    may send early: call k+n at least (n-1) spacings after call k."""
    return all(
        times[k + n] - times[k] >= (n - 1) * spacing - 1e-9
        for k in range(len(times))
        for n in range(1, len(times) - k)
    )


async def test_per_chat_order_and_spacing(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    await sender.put(*(SendReply(chat_id=5, markdown=f"private {n}") for n in range(5)))
    await sender.put(*(SendReply(chat_id=-7, markdown=f"group {n}") for n in range(5)))
    await sender.wait(lambda api: len(api.calls_of("sendMessage")) == 10)
    assert sent_texts(sender.api, 5) == [f"private {n}" for n in range(5)]
    assert sent_texts(sender.api, -7) == [f"group {n}" for n in range(5)]
    private = [c.at for c in sender.api.calls_of("sendMessage") if c.chat_id == 5]
    group = [c.at for c in sender.api.calls_of("sendMessage") if c.chat_id == -7]
    assert private == [0.0, 0.0, 1.0, 2.0, 3.0]  # an idle chat takes two at once, then one a second
    assert at_most_one_early_call(private, PRIVATE_SPACING)
    assert at_most_one_early_call(group, GROUP_SPACING)
    assert group[2] - group[0] >= 3.0


async def test_a_result_goes_at_once_after_the_progress_edit_before_it(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    """The result of a run does not wait a chat's spacing behind its last progress edit;
    the progress that follows it waits for both."""
    await sender.put(UpdateLive(chat_id=5, slot="run-1", text="step 1"))
    await sender.wait(lambda api: any(c.text == "step 1" for c in api.calls))
    shown = trio.current_time()
    await trio.sleep(0.4)
    await sender.put(SendReply(chat_id=5, markdown="the answer"))
    await sender.wait(lambda api: any(c.text == "the answer" for c in api.calls))
    answer = next(c for c in sender.api.calls if c.text == "the answer")
    assert answer.at == shown + 0.4  # not shown + 1.0
    await sender.put(UpdateLive(chat_id=5, slot="run-2", text="next run"))
    await sender.wait(lambda api: any(c.text == "next run" for c in api.calls))
    progress = next(c for c in sender.api.calls if c.text == "next run")
    assert progress.at == shown + 2.0  # two calls in the chat: two spacings from the first


async def test_a_group_gets_no_more_than_20_calls_a_minute_with_early_results(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    """Runs that end right after a progress edit, one after another in a group: each result
    goes early, and still no minute holds more than Telegram's 20 calls for a group."""

    def sent(text: str) -> Callable[[FakeTelegramApi], bool]:
        return lambda api: any(c.text == text for c in api.calls)

    for run in range(30):
        await sender.put(UpdateLive(chat_id=-7, slot=f"run-{run}", text=f"working {run}"))
        await sender.wait(sent(f"working {run}"))
        await sender.put(CloseLive(chat_id=-7, slot=f"run-{run}", final_text=f"done {run}"))
        await sender.wait(sent(f"done {run}"))
    times = sorted(c.at for c in sender.api.calls if c.chat_id == -7)
    assert len(times) == 60
    assert max(bisect.bisect_left(times, at + 60.0) - n for n, at in enumerate(times)) == 20
    finals = {c.text: c.at for c in sender.api.calls if c.text.startswith("done")}
    shown = {c.text: c.at for c in sender.api.calls if c.text.startswith("working")}
    assert all(finals[f"done {n}"] == shown[f"working {n}"] for n in range(30))


async def test_global_rate_is_at_most_30_per_second(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    await sender.put(*(SendReply(chat_id=1000 + n, markdown="hi") for n in range(90)))
    await sender.wait(lambda api: len(api.calls_of("sendMessage")) == 90)
    times = sorted(c.at for c in sender.api.calls_of("sendMessage"))
    for start in range(len(times) - 30):
        assert times[start + 30] - times[start] >= 1.0 - 1e-9
    assert times[-1] - times[0] < 3.5


async def test_limits_hold_where_telegram_counts_them_despite_latency(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    """Telegram counts a call when it arrives: uneven latency must not squeeze 31 calls
    into one second there, nor two messages of one chat closer than the spacing."""
    jitter = random.Random(11)
    sender.api.latency = lambda: jitter.choice((0.0, 0.02, 0.3))
    await sender.put(*(SendReply(chat_id=1000 + n % 45, markdown=f"m{n}") for n in range(90)))
    await sender.wait(lambda api: len(api.calls_of("sendMessage")) == 90)
    arrivals = sorted(c.at for c in sender.api.calls_of("sendMessage"))
    for start in range(len(arrivals) - 30):
        assert arrivals[start + 30] - arrivals[start] >= 1.0 - 1e-9
    for chat in range(1000, 1045):
        per_chat = [c.at for c in sender.api.calls_of("sendMessage") if c.chat_id == chat]
        assert per_chat[1] - per_chat[0] >= 1.0 - 1e-9


async def test_finals_take_free_slots_before_progress_under_a_flood(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    await sender.wait(lambda api: bool(api.calls_of("setMyCommands")))
    await trio.sleep(1.0)  # setMyCommands has left the one-second window
    start = trio.current_time()
    await sender.put(*(UpdateLive(chat_id=2000 + n, slot="run", text="working") for n in range(45)))
    await trio.lowlevel.checkpoint()
    await sender.put(*(SendReply(chat_id=3000 + n, markdown="result") for n in range(40)))
    await sender.wait(lambda api: len(api.calls_of("sendMessage")) == 85)
    calls = sender.api.calls_of("sendMessage")
    live = sorted(c.at for c in calls if c.text == "working")
    finals = sorted(c.at for c in calls if c.text == "result")
    assert live[29] < start + 1.0  # the first second went to progress: nothing else was waiting
    assert max(finals) <= min(live[30:])  # then every result went ahead of progress


async def test_finals_go_in_order_and_lift_the_progress_call_ahead_of_them(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    await sender.wait(lambda api: bool(api.calls_of("setMyCommands")))
    await trio.sleep(1.0)
    await sender.put(*(SendReply(chat_id=1000 + n, markdown="result") for n in range(60)))
    await sender.put(UpdateLive(chat_id=5, slot="run", text="working"))
    await sender.put(SendReply(chat_id=5, markdown="chat 5 result"))
    await sender.put(*(SendReply(chat_id=2000 + n, markdown="result") for n in range(180)))
    await sender.wait(lambda api: len(api.calls_of("sendMessage")) == 242)
    calls = sender.api.calls_of("sendMessage")
    others = sorted((c.chat_id, c.at) for c in calls if c.text == "result")
    # First come, first served across chats, to within one round of grants (calls that
    # reach the sender in the same instant race for the free slots).
    latest = list(itertools.accumulate((at for _, at in others), max))
    assert all(latest[n] <= at + 1.0 for n, (_, at) in enumerate(others))
    live_at = next(c.at for c in calls if c.text == "working")
    # The progress message of chat 5 was waiting in front of chat 5's final, so it took the
    # final's urgency instead of waiting for the flood of other finals to pass.
    assert live_at < calls[-1].at - 3


async def test_a_final_is_not_held_back_by_a_waiting_progress_edit(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    await sender.put(UpdateLive(chat_id=5, slot="run-1", text="step 1"))
    await sender.wait(lambda api: any(c.text == "step 1" for c in api.calls))
    await sender.put(UpdateLive(chat_id=5, slot="run-1", text="step 2"))  # waits for spacing
    asked = trio.current_time()
    await sender.put(SendReply(chat_id=5, markdown="the answer"))
    await sender.wait(lambda api: any(c.text == "the answer" for c in api.calls))
    answer = next(c for c in sender.api.calls if c.text == "the answer")
    assert answer.at == asked  # not when the waiting edit's turn would have come
    await sender.put(CloseLive(chat_id=5, slot="run-1", final_text="done"))
    await sender.wait(lambda api: any(c.text == "done" for c in api.calls))
    texts = [c.text for c in sender.api.calls if c.chat_id == 5]
    assert texts == ["step 1", "the answer", "done"]  # step 2 waited, then the close won


async def test_a_final_is_not_held_back_by_a_progress_edit_being_retried(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    """An edit that keeps failing is retried with backoff (seconds, then minutes with real
    timeouts); a result that arrives meanwhile drops it and goes out at once."""
    await sender.put(UpdateLive(chat_id=5, slot="run-1", text="step 1"))
    await sender.wait(lambda api: any(c.text == "step 1" for c in api.calls))
    failing = [TelegramTransientError("Bad Gateway", 502) for _ in range(6)]
    sender.api.fail("editMessageText", *failing)
    await sender.put(UpdateLive(chat_id=5, slot="run-1", text="step 2"))
    await sender.wait(lambda api: len(api.calls_of("editMessageText")) >= 2)  # retrying
    asked = trio.current_time()
    await sender.put(SendReply(chat_id=5, markdown="the answer"))
    await sender.wait(lambda api: any(c.text == "the answer" for c in api.calls))
    answer = next(c for c in sender.api.calls if c.text == "the answer")
    assert answer.at - asked <= 1.5  # the chat's spacing at most, not the edit's retries
    assert sender.stats.shed_live >= 1


async def test_live_updates_coalesce_newest_wins(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    await sender.put(SendReply(chat_id=5, markdown="first"))
    await sender.put(*(UpdateLive(chat_id=5, slot="run-1", text=f"step {n}") for n in range(10)))
    await sender.wait(lambda api: any(c.text.startswith("step") for c in api.calls))
    await sender.put(CloseLive(chat_id=5, slot="run-1", final_text="done"))
    await sender.wait(lambda api: any(c.text == "done" for c in api.calls))
    live_calls = [c for c in sender.api.calls if c.text.startswith("step")]
    assert len(live_calls) <= 2
    assert live_calls[-1].text == "step 9"


async def test_live_message_is_edited_in_place_and_closed(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    cancel = ((Button("Cancel", "cancel:1"),),)
    await sender.put(UpdateLive(chat_id=5, slot="run-1", text="working", keyboard=cancel))
    await sender.wait(lambda api: len(api.calls_of("sendMessage")) == 1)
    await sender.put(UpdateLive(chat_id=5, slot="run-1", text="still working", keyboard=cancel))
    await sender.wait(lambda api: len(api.calls_of("editMessageText")) == 1)
    await sender.put(CloseLive(chat_id=5, slot="run-1", final_text="finished"))
    await sender.wait(lambda api: len(api.calls_of("editMessageText")) == 2)
    first, second = sender.api.calls_of("editMessageText")
    assert first.text == "still working"
    assert first.keyboard == cancel
    assert second.text == "finished"
    assert second.keyboard == ()
    message_id = sender.api.calls_of("sendMessage")[0].message_id
    assert {first.message_id, second.message_id} == {message_id}


async def test_429_mid_stream_delays_but_never_loses_the_final(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    sender.api.fail("editMessageText", TelegramRetryAfter("Too Many Requests: retry after 20", 20))
    await sender.put(UpdateLive(chat_id=5, slot="s", text="a"))
    await sender.wait(lambda api: len(api.calls_of("sendMessage")) == 1)
    await sender.put(UpdateLive(chat_id=5, slot="s", text="b"))
    await sender.wait(lambda api: bool(api.calls_of("editMessageText")))  # answered 429
    await sender.put(SendReply(chat_id=5, markdown="**final** answer"))
    await sender.wait(lambda api: "<b>final</b> answer" in sent_texts(api, 5))
    final = next(c for c in sender.api.calls_of("sendMessage") if "final" in c.text)
    first_edit = sender.api.calls_of("editMessageText")[0]
    assert final.at - first_edit.at >= 20
    assert final.parse_mode == "HTML"
    assert sender.stats.retries_after_429 == 1


async def test_huge_retry_after_sheds_live_updates_but_not_finals(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    sender.api.fail("sendMessage", TelegramRetryAfter("Too Many Requests: retry after 600", 600))
    await sender.put(SendReply(chat_id=5, markdown="result one"))
    await trio.testing.wait_all_tasks_blocked()
    await sender.put(UpdateLive(chat_id=5, slot="s", text="progress"))
    await sender.put(SendReply(chat_id=5, markdown="result two"))
    await sender.wait(lambda api: "result two" in sent_texts(api, 5))
    assert sent_texts(sender.api, 5) == ["result one", "result one", "result two"]
    assert sender.api.calls_of("sendMessage")[1].at >= 600


async def test_transient_errors_are_retried_then_given_up(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    sender.api.fail("sendMessage", *[TelegramTransientError("Bad Gateway", 502)] * 2)
    await sender.put(SendReply(chat_id=5, markdown="eventually"))
    await sender.wait(lambda api: len(api.calls_of("sendMessage")) == 3)
    assert sender.stats.undelivered == 0
    sender.api.fail("sendMessage", *[TelegramTransientError("Bad Gateway", 502)] * 6)
    await sender.put(SendReply(chat_id=6, markdown="lost cause"))
    await sender.put(SendReply(chat_id=6, markdown="next one"))
    await sender.wait(lambda api: "next one" in sent_texts(api, 6))
    assert sender.stats.undelivered == 1
    assert any(t.event == "delivery" and t.outcome == "failed" for t in sender.traces)


async def test_a_question_or_a_file_outlasts_an_outage_a_progress_text_does_not(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    """An approval question (a first showing with buttons), a file (``/get``) and a live
    message's close are tried through an outage: lost, the question would be denied unseen.
    A live text without buttons is given up after `TRANSIENT_RETRIES`, as before."""
    down = telegram_sender.TRANSIENT_RETRIES + 5
    sender.api.fail("sendMessage", *[TelegramTransientError("Bad Gateway", 502)] * down)
    sender.api.fail("sendDocument", *[TelegramTransientError("Bad Gateway", 502)] * down)
    buttons = ((Button("✅ Approve", "ap:t:a"), Button("⛔ Deny", "ap:t:d")),)
    await sender.put(UpdateLive(chat_id=5, slot="ask", text="Codex asks to run", keyboard=buttons))
    await sender.put(UpdateLive(chat_id=6, slot="file", text="", document=b"x", document_name="a"))
    await sender.wait(
        lambda api: (
            len(api.calls_of("sendMessage")) == len(api.calls_of("sendDocument")) == down + 1
        )
    )
    await trio.testing.wait_all_tasks_blocked()
    assert list(sender.api.messages[5].values()) == ["Codex asks to run"]
    assert list(sender.api.messages[6].values()) == ["[document a] "]
    assert sender.stats.undelivered == 0
    # A note without buttons: 1 + TRANSIENT_RETRIES tries, then the reply behind it.
    sender.api.fail("sendMessage", *[TelegramTransientError("Bad Gateway", 502)] * down)
    await sender.put(UpdateLive(chat_id=7, slot="note", text="a note"))
    await sender.put(SendReply(chat_id=7, markdown="after it"))
    await sender.wait(lambda api: len([c for c in api.calls if c.chat_id == 7]) == down + 1)
    await trio.testing.wait_all_tasks_blocked()
    assert list(sender.api.messages[7].values()) == ["after it"]
    assert sender.stats.undelivered == 1
    # The question's close (its buttons replaced by the decision) gets through too.
    sender.api.fail("editMessageText", *[TelegramTransientError("Bad Gateway", 502)] * down)
    await sender.put(CloseLive(chat_id=5, slot="ask", final_text="✅ Approved: $ make"))
    await sender.wait(lambda api: len(api.calls_of("editMessageText")) == down + 1)
    await trio.testing.wait_all_tasks_blocked()
    assert list(sender.api.messages[5].values()) == ["✅ Approved: $ make"]
    assert sender.stats.undelivered == 1
    # A question whose call keeps failing for a reason of its own does not stop its chat for
    # good: after UNTIL_TAKEN_SECONDS it is given up, and what waits behind it goes.
    sender.api.fail("sendMessage", *[TelegramTransientError("Bad Gateway", 502)] * 1000)
    await sender.put(UpdateLive(chat_id=8, slot="ask", text="never", keyboard=buttons))
    await sender.wait(lambda api: any(c.chat_id == 8 for c in api.calls))
    began = trio.current_time()
    await trio.sleep(telegram_sender.UNTIL_TAKEN_SECONDS + 60)
    assert sender.stats.undelivered == 2
    tries = [c for c in sender.api.calls if c.chat_id == 8]
    assert tries[-1].at - began == pytest.approx(telegram_sender.UNTIL_TAKEN_SECONDS, abs=15)


async def test_a_waiting_retry_goes_as_soon_as_an_outage_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Backing off towards ``telegram.retry_backoff_max`` (60 s), a question does not wait
    out its pause once the poller got through again (`Recovery`)."""
    api = FakeTelegramApi()
    recovery = Recovery()
    send, receive = trio.open_memory_channel[SenderMsg](8)
    api.fail("sendMessage", *[TelegramTransientError("Bad Gateway", 502)] * 7)
    buttons = ((Button("✅ Approve", "ap:t:a"),),)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(
                telegram_sender.run,
                receive,
                api,
                max_chunks=3,
                rng=random.Random(3),
                trace=lambda record: None,
                retry_backoff_max=60.0,
                recovery=recovery,
            )
        )
        await send.send(UpdateLive(chat_id=5, slot="ask", text="Codex asks", keyboard=buttons))
        await api.wait_for(lambda api: len(api.calls_of("sendMessage")) == 7)
        await trio.sleep(0.1)  # into a pause of 15 s or more
        recovery.ended()  # the poller's getUpdates went through
        await api.wait_for(lambda api: len(api.calls_of("sendMessage")) == 8)
        tries = [call.at for call in api.calls_of("sendMessage")]
        assert tries[7] - tries[6] == pytest.approx(0.1)
        send.close()


async def test_not_modified_is_success_and_missing_message_is_resent(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    await sender.put(UpdateLive(chat_id=5, slot="s", text="one"))
    await sender.wait(lambda api: len(api.calls_of("sendMessage")) == 1)
    sender.api.fail(
        "editMessageText",
        TelegramBadRequest("Bad Request: message is not modified: specified new message", 400),
    )
    await sender.put(UpdateLive(chat_id=5, slot="s", text="one"))
    await sender.wait(lambda api: len(api.calls_of("editMessageText")) == 1)
    sender.api.messages[5].clear()  # the user deleted the progress message
    await sender.put(UpdateLive(chat_id=5, slot="s", text="two"))
    await sender.wait(lambda api: len(api.calls_of("sendMessage")) == 2)
    assert sent_texts(sender.api, 5) == ["one", "two"]
    assert sender.stats.undelivered == 0


async def test_unparseable_html_is_resent_as_plain_text(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    sender.api.fail(
        "sendMessage", TelegramBadRequest("Bad Request: can't parse entities: bad tag", 400)
    )
    await sender.put(SendReply(chat_id=5, markdown="a **b** & c"))
    await sender.wait(lambda api: len(api.calls_of("sendMessage")) == 2)
    retry = sender.api.calls_of("sendMessage")[1]
    assert retry.text == "a b & c"
    assert retry.parse_mode is None


async def test_blocked_chat_goes_inactive_until_reactivated(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    sender.api.fail("sendMessage", TelegramForbidden("Forbidden: bot was blocked by the user", 403))
    await sender.put(SendReply(chat_id=5, markdown="to a blocked user"))
    await sender.wait(lambda api: len(api.calls_of("sendMessage")) == 1)
    await trio.testing.wait_all_tasks_blocked()
    await sender.put(SendReply(chat_id=5, markdown="also dropped"))
    await sender.put(SendReply(chat_id=9, markdown="other chat fine"))
    await sender.wait(lambda api: "other chat fine" in sent_texts(api, 9))
    assert sent_texts(sender.api, 5) == ["to a blocked user"]
    events = [(t.event, t.outcome, t.preview) for t in sender.traces]
    assert ("chat_inactive", "blocked", "to a blocked user") in events
    assert ("delivery", "chat_inactive", "also dropped") in events
    await sender.put(ChatReactivated(chat_id=5), SendReply(chat_id=5, markdown="welcome back"))
    await sender.wait(lambda api: "welcome back" in sent_texts(api, 5))


async def test_migrated_group_switches_ids(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    sender.api.fail(
        "sendMessage", TelegramChatMigrated("Bad Request: group chat was upgraded", -1009)
    )
    await sender.put(SendReply(chat_id=-5, markdown="hello group"))
    await sender.wait(lambda api: len(api.calls_of("sendMessage")) == 2)
    assert [c.chat_id for c in sender.api.calls_of("sendMessage")] == [-5, -1009]
    await sender.put(SendReply(chat_id=-5, markdown="still the group"))
    await sender.wait(lambda api: len(api.calls_of("sendMessage")) == 3)
    assert sender.api.calls_of("sendMessage")[2].chat_id == -1009


async def test_long_replies_are_chunked_or_attached(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    paragraph = "word " * 700 + "\n\n"
    await sender.put(SendReply(chat_id=5, markdown=paragraph * 2))
    await sender.wait(lambda api: len(api.calls_of("sendMessage")) >= 2)
    await trio.testing.wait_all_tasks_blocked()
    chunks = sent_texts(sender.api, 5)
    assert 2 <= len(chunks) <= 3
    assert all(len(chunk) <= 4096 for chunk in chunks)
    await sender.put(SendReply(chat_id=6, markdown=paragraph * 20))
    await sender.wait(lambda api: bool(api.calls_of("sendDocument")))
    document = sender.api.calls_of("sendDocument")[0]
    assert document.extra["content"] == (paragraph * 20).encode()
    assert "attached" in document.text


@pytest.mark.parametrize("plain", [False, True])
async def test_megabytes_of_reply_become_one_document(
    sender: Sender, autojump_clock: trio.testing.MockClock, plain: bool
) -> None:
    """Rendering is bounded (tests/unit/test_rendering.py): the file carries everything."""
    huge = "# Title\n\nline with **markup** and `code`\n" * 100_000
    await sender.put(SendReply(chat_id=7, markdown=huge, plain=plain))
    await sender.wait(lambda api: bool(api.calls_of("sendDocument")))
    await trio.testing.wait_all_tasks_blocked()
    assert sender.api.calls_of("sendDocument")[0].extra["content"] == huge.encode()
    assert sent_texts(sender.api, 7) == []


async def test_a_reply_sent_as_a_document_keeps_its_buttons_and_its_silence(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    """A long result goes as a file: its Stop and Show diff buttons go with it (they were
    dropped, and the buttons of a long answer were out of reach)."""
    keyboard = ((Button("⏹ Stop background commands", "bg:t1"),),)
    long = "a paragraph of the answer\n\n" * 3000
    await sender.put(SendReply(chat_id=7, markdown=long, keyboard=keyboard, silent=True))
    await sender.wait(lambda api: bool(api.calls_of("sendDocument")))
    (document,) = sender.api.calls_of("sendDocument")
    assert document.keyboard == keyboard
    assert document.extra["silent"] is True


async def test_the_buttons_of_a_remembered_reply_change_and_its_text_stays(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    """`SendReply.keyboard_slot` names the message that carries the buttons (the last part);
    a `CloseLive` with `keep_text` changes only them (``editMessageReplyMarkup``), once. An
    unknown slot without a message id changes nothing, and a message Telegram no longer has
    is left alone."""
    stop, diff = Button("⏹ Stop", "bg:t1"), Button("📝 Show diff", "df:x")
    keyboard = ((stop,), (diff,))
    two_parts = "word " * 1000
    await sender.put(
        SendReply(chat_id=5, markdown=two_parts, keyboard=keyboard, keyboard_slot="s1")
    )
    await sender.wait(lambda api: len(api.calls_of("sendMessage")) == 2)
    last = sender.api.calls_of("sendMessage")[-1]
    await sender.put(CloseLive(chat_id=5, slot="s1", keep_text=True, keyboard=((diff,),)))
    await sender.put(CloseLive(chat_id=5, slot="s1", keep_text=True))  # forgotten: nothing
    await sender.put(CloseLive(chat_id=5, slot="unknown", keep_text=True))
    await sender.put(CloseLive(chat_id=5, slot="", keep_text=True, message_id=999))  # gone
    await sender.put(SendReply(chat_id=5, markdown="after"))
    await sender.wait(lambda api: "after" in sent_texts(api, 5))
    edits = sender.api.calls_of("editMessageReplyMarkup")
    assert [(e.message_id, e.keyboard) for e in edits] == [(last.message_id, ((diff,),)), (999, ())]
    assert last.message_id is not None
    assert sender.api.messages[5][last.message_id] == last.text  # the text is the same
    assert not sender.api.calls_of("editMessageText")


async def test_a_remembered_reply_s_note_is_rewritten_with_its_buttons(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    """A `CloseLive` with `text_from` edits the reply's last part, formatting and all, with
    that part rewritten and the new buttons, in one ``editMessageText``. A note it cannot
    find (a reply sent as a document; a note the answer's open code block swallowed) or an
    edit Telegram refuses leaves the text and changes only the buttons."""
    note, stopped = "\n\n⏳ Still running: `sleep 9` & more", "\n\n⏹ Stopped: `sleep 9`."
    diff = Button("📝 Show diff", "df:x")
    keyboard = ((Button("⏹ Stop", "bg:t1"),), (diff,))
    answers = {
        "s1": "**Done**." + note + "\n\n🧵 `codex resume t1`",
        "s2": "a paragraph of the answer\n\n" * 3000 + note,  # sent as a document
        "s3": "```\nstill in the block" + note,
        "s4": "Refused." + note,
    }
    for slot, markdown in answers.items():
        await sender.put(
            SendReply(chat_id=5, markdown=markdown, keyboard=keyboard, keyboard_slot=slot)
        )
    await sender.wait(lambda api: len(api.calls_of("sendMessage")) == 3)
    sender.api.fail("editMessageText", TelegramBadRequest("Bad Request: MESSAGE_TOO_LONG", 400))
    for slot in ("s4", "s1", "s2", "s3"):
        await sender.put(
            CloseLive(
                chat_id=5,
                slot=slot,
                keep_text=True,
                keyboard=((diff,),),
                text_from=note,
                text_to=stopped,
            )
        )
    await sender.put(SendReply(chat_id=5, markdown="after"))
    await sender.wait(lambda api: "after" in sent_texts(api, 5))
    first, third, refused, _after = sender.api.calls_of("sendMessage")
    (document,) = [m for m, text in sender.api.messages[5].items() if "[document" in text]
    refused_edit, edit = sender.api.calls_of("editMessageText")
    assert refused_edit.message_id == refused.message_id  # refused: its buttons only, below
    assert edit.message_id == first.message_id
    assert edit.text == (
        "<b>Done</b>.\n\n⏹ Stopped: <code>sleep 9</code>.\n\n🧵 <code>codex resume t1</code>"
    )
    assert (edit.parse_mode, edit.keyboard) == ("HTML", ((diff,),))
    markups = sender.api.calls_of("editMessageReplyMarkup")
    assert [(m.message_id, m.keyboard) for m in markups] == [
        (refused.message_id, ((diff,),)),
        (document, ((diff,),)),
        (third.message_id, ((diff,),)),
    ]


async def test_buttons_go_on_the_last_chunk_and_callbacks_are_answered(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    keyboard = ((Button("Approve", "a:1"), Button("Deny", "d:1")),)
    await sender.put(SendReply(chat_id=5, markdown="run `rm -rf build`?", keyboard=keyboard))
    await sender.put(AnswerCallback(callback_query_id="q1", text="Approved"))
    await sender.wait(lambda api: bool(api.calls_of("answerCallbackQuery")))
    await sender.wait(lambda api: bool(api.calls_of("sendMessage")))
    assert sender.api.calls_of("sendMessage")[0].keyboard == keyboard
    assert sender.api.calls_of("answerCallbackQuery")[0].text == "Approved"


async def test_chat_action_is_best_effort(
    sender: Sender, autojump_clock: trio.testing.MockClock
) -> None:
    sender.api.fail("sendChatAction", TelegramTransientError("timeout"))
    await sender.put(SendChatAction(chat_id=5))
    await sender.put(SendReply(chat_id=5, markdown="result"))
    await sender.wait(lambda api: "result" in sent_texts(api, 5))
    assert len(sender.api.calls_of("sendChatAction")) <= 1


async def test_chat_actions_do_not_pile_up_behind_a_saturated_limiter(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Typing actions wait for the global budget like everything else; while one of a chat
    waits, newer ones of that chat add nothing and are dropped (no task per action)."""
    api = FakeTelegramApi()
    send, receive = trio.open_memory_channel[SenderMsg](256)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: telegram_sender.run(
                receive,
                api,
                max_chunks=3,
                rng=random.Random(3),
                trace=lambda record: None,
                commands=[("start", "help")],
                global_rate=1,
                task_status=task_status,
            )
        )
        with send:
            for chat_id in (5, 6, 7):  # the budget is taken by other chats first
                await send.send(SendReply(chat_id=chat_id, markdown=f"result {chat_id}"))
            for _ in range(50):
                await send.send(SendChatAction(chat_id=8))
            await send.send(SendReply(chat_id=8, markdown="done"))
            with trio.fail_after(3600):
                await api.wait_for(lambda api: "done" in sent_texts(api, 8))
    assert len(api.calls_of("sendChatAction")) == 1
