"""A chat's approvals on their own: the button codec, presses, the timeout, the request's end.

Virtual time (``autojump_clock``); the sender is a memory channel the test reads.
"""

from __future__ import annotations

import msgspec
import pytest
import trio
import trio.testing

from actors.button_data import (
    ApprovalButton,
    CancelButton,
    approval_data,
    cancel_data,
    decode_button,
)
from actors.chat_approvals import LATE_PRESS, STALE_QUESTION, Approvals
from actors.chat_output import ChatOutput
from orchestrator.codex_runs import ApprovalAsk, ApprovalDecision, ApprovalRequest
from orchestrator.messages import (
    AnswerCallback,
    CloseLive,
    InboundCallback,
    SenderMsg,
    SessionKey,
    TraceRecord,
    UpdateLive,
)

KEY = SessionKey(chat_id=5, user_id=7, thread_id=3)
CEILING = 3600
TOKEN = "A" * 12  # as long as secrets.token_urlsafe(9)


@pytest.mark.parametrize("decision", ["approved", "approved_for_session", "denied"])
def test_approval_data_round_trips_within_telegrams_64_bytes(decision: ApprovalDecision) -> None:
    data = approval_data(TOKEN, decision)
    assert len(data.encode()) <= 64
    assert decode_button(data) == ApprovalButton(TOKEN, decision)


def test_cancel_data_round_trips() -> None:
    assert decode_button(cancel_data(TOKEN)) == CancelButton(TOKEN)


def test_foreign_data_is_none_and_an_unknown_choice_decides_nothing() -> None:
    assert decode_button("zz:whatever") is None
    assert decode_button("ap:tok:x") == ApprovalButton("tok", None)


class Desk:
    """An `Approvals` with its sender and tracer recorded."""

    def __init__(self, *, timeout: float = 600) -> None:
        self.send, self.receive = trio.open_memory_channel[SenderMsg](100)
        self.traces: list[TraceRecord] = []
        self.approvals = Approvals(ChatOutput(KEY, self.send, self.traces.append), timeout=timeout)
        self.requests, self.incoming = trio.open_memory_channel[ApprovalRequest](4)

    def sent(self) -> list[SenderMsg]:
        messages: list[SenderMsg] = []
        while True:
            try:
                messages.append(self.receive.receive_nowait())
            except trio.WouldBlock:
                return messages

    async def ask(
        self, ask: ApprovalAsk | None = None
    ) -> trio.MemoryReceiveChannel[ApprovalDecision]:
        """Ask `ask` (by default: may ``make deploy`` run?); the channel of its decision."""
        reply_to, decision = trio.open_memory_channel[ApprovalDecision](1)
        ask = ask or ApprovalAsk(kind="exec", message="run?", command="make deploy", cwd="")
        await self.requests.send(ApprovalRequest(ask=ask, reply_to=reply_to))
        return decision


def press(data: str) -> InboundCallback:
    """A press of `data` on a question that shows its three buttons."""
    token = data.split(":")[1]
    return InboundCallback(
        update_id=1,
        callback_query_id="q1",
        chat_id=KEY.chat_id,
        chat_type="private",
        user_id=KEY.user_id,
        message_id=1,
        data=data,
        message_text="Codex asks to run:\n$ make deploy\nin /work",
        keyboard=tuple(f"ap:{token}:{choice}" for choice in "asd"),
    )


async def test_a_press_decides_once_and_later_presses_are_told_it_expired(
    autojump_clock: trio.testing.MockClock,
) -> None:
    desk = Desk()
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(desk.approvals.serve, desk.incoming, "/work")
            decision = await desk.ask()
            await trio.testing.wait_all_tasks_blocked()
            shown = desk.sent()
            assert isinstance(shown[0], UpdateLive)
            assert shown[0].text == "Codex asks to run:\n$ make deploy\nin /work"
            data = shown[0].keyboard[0][1].callback_data
            button = decode_button(data)
            assert isinstance(button, ApprovalButton)
            await desk.approvals.press(press(data), button)
            await desk.approvals.press(press(data), button)
            assert await decision.receive() == "approved_for_session"
            nursery.cancel_scope.cancel()
    sent = desk.sent()
    answers = [m.text for m in sent if isinstance(m, AnswerCallback)]
    assert answers == [
        "Approved",
        "That question is closed: answered, timed out, or its request ended.",
    ]
    assert [t.outcome for t in desk.traces] == ["approved_for_session"]
    assert {(t.chat_id, t.user_id, t.thread_id) for t in desk.traces} == {(5, 7, 3)}
    # The late press leaves the message saying how it ended (not that the bot stopped).
    closes = [m.final_text for m in sent if isinstance(m, CloseLive)]
    assert closes == ["✅ Approved for this session: $ make deploy"]


async def test_a_question_from_before_a_restart_loses_its_buttons_when_pressed() -> None:
    """Its token is unknown to this process, and it was not one this process ended: the
    press is told, and the message keeps its text, says why, and loses its buttons."""
    desk = Desk()
    button = decode_button("ap:before-restart:a")
    assert isinstance(button, ApprovalButton)
    await desk.approvals.press(press("ap:before-restart:a"), button)
    sent = desk.sent()
    answers = [m.text for m in sent if isinstance(m, AnswerCallback)]
    assert answers == ["That question is closed: answered, timed out, or its request ended."]
    [close] = [m for m in sent if isinstance(m, CloseLive)]
    assert close.message_id == 1
    assert close.final_text == (f"Codex asks to run:\n$ make deploy\nin /work\n\n{STALE_QUESTION}")
    assert not close.delete
    # A double tap, or a press on the message once closed, closes it only once.
    await desk.approvals.press(press("ap:before-restart:a"), button)
    other = decode_button("ap:other:a")
    assert isinstance(other, ApprovalButton)
    closed = msgspec.structs.replace(press("ap:other:a"), message_text=close.final_text or "")
    await desk.approvals.press(closed, other)
    assert not [m for m in desk.sent() if isinstance(m, CloseLive)]
    # Not on a message without text (a question sent as a file), nor on someone else's
    # (each its own token: one already closed proves nothing), nor on a message that does
    # not show that button (the progress message, pressed by a client that sends any data).
    as_file = msgspec.structs.replace(press("ap:file:a"), message_text="")
    theirs = msgspec.structs.replace(
        press("ap:theirs:a"), chat_id=-100, chat_type="group", owner_id=None
    )
    forged = msgspec.structs.replace(
        press("ap:forged:a"), message_text="⏳ Working on your request… 0:01", keyboard=("cx:1",)
    )
    for other_press in (as_file, theirs, forged):
        fresh = decode_button(other_press.data)
        assert isinstance(fresh, ApprovalButton)
        await desk.approvals.press(other_press, fresh)
    assert not [m for m in desk.sent() if isinstance(m, CloseLive)]


async def test_no_answer_in_time_is_a_denial(autojump_clock: trio.testing.MockClock) -> None:
    desk = Desk(timeout=90)
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(desk.approvals.serve, desk.incoming, "/work")
            decision = await desk.ask()
            assert await decision.receive() == "denied"
            assert trio.current_time() == pytest.approx(90 + LATE_PRESS)
            nursery.cancel_scope.cancel()
    closes = [m for m in desk.sent() if isinstance(m, CloseLive)]
    assert [m.final_text for m in closes] == ["⌛ Denied, no answer in time: $ make deploy"]
    assert [t.outcome for t in desk.traces] == ["timeout"]


async def test_a_press_that_was_waiting_when_the_timeout_fell_due_decides(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A bot stopped (Ctrl-Z) past the timeout wakes with the deadline passed and the press,
    made in time, in its socket: the press comes a few passes of the run loop later, and
    decides. (Before, the deadline denied first.)"""
    desk = Desk(timeout=90)
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(desk.approvals.serve, desk.incoming, "/work")
            decision = await desk.ask()
            await trio.testing.wait_all_tasks_blocked()
            [shown] = desk.sent()
            assert isinstance(shown, UpdateLive)
            data = shown.keyboard[0][0].callback_data
            button = decode_button(data)
            assert isinstance(button, ApprovalButton)
            await trio.sleep_until(90)  # woken with the deadline
            for _ in range(5):  # poller, router, chat: the press on its way
                await trio.lowlevel.checkpoint()
            await desk.approvals.press(press(data), button)
            assert await decision.receive() == "approved"
            nursery.cancel_scope.cancel()
    assert "timeout" not in [t.outcome for t in desk.traces]


async def test_the_end_of_the_request_closes_open_questions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    desk = Desk()
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(desk.approvals.serve, desk.incoming, "/work")
            decision = await desk.ask()
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        await desk.approvals.close_all()
    with pytest.raises(trio.EndOfChannel):  # a closed channel counts as denied
        await decision.receive()
    closes = [m for m in desk.sent() if isinstance(m, CloseLive)]
    assert [m.final_text for m in closes] == [
        "⏹ Not answered before the request ended: $ make deploy"
    ]
    assert desk.traces == []


async def test_a_patch_approval_shows_its_diff(autojump_clock: trio.testing.MockClock) -> None:
    desk = Desk()
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(desk.approvals.serve, desk.incoming, "/work")
            await desk.ask(
                ApprovalAsk(
                    kind="patch", message="ok?", changes=("a.txt",), diff="--- a.txt (add)\n+hi\n"
                )
            )
            await trio.testing.wait_all_tasks_blocked()
            shown = desk.sent()
            nursery.cancel_scope.cancel()
    assert isinstance(shown[0], UpdateLive)
    assert shown[0].text == "Codex asks to change files:\n• a.txt\n\n--- a.txt (add)\n+hi\n"


async def test_the_line_that_replaces_a_patch_question_names_its_files_as_it_did(
    autojump_clock: trio.testing.MockClock,
) -> None:
    desk = Desk()
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(desk.approvals.serve, desk.incoming, "/work")
            await desk.ask(
                ApprovalAsk(kind="patch", message="ok?", changes=("/work/a.txt", "/etc/b"))
            )
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        await desk.approvals.close_all()
    sent = desk.sent()
    [asked] = [m.text for m in sent if isinstance(m, UpdateLive)]
    assert asked == (
        "Codex asks to change files:\n• a.txt\n• /etc/b (outside the working directory)"
    )
    closes = [m.final_text for m in sent if isinstance(m, CloseLive)]
    assert closes == [
        "⏹ Not answered before the request ended: a.txt, /etc/b (outside the working directory)"
    ]


async def test_a_press_in_a_group_on_someone_else_s_question_says_so(
    autojump_clock: trio.testing.MockClock,
) -> None:
    desk = Desk(timeout=600)
    group_press = msgspec.structs.replace(press("ap:unknown:a"), chat_id=-100, chat_type="group")
    button = decode_button("ap:unknown:a")
    assert isinstance(button, ApprovalButton)
    await desk.approvals.press(group_press, button)
    answers = [m.text for m in desk.sent() if isinstance(m, AnswerCallback)]
    assert answers == ["That question is not yours, or it is closed."]


async def test_the_open_questions_are_put_on_record_when_shown_and_when_decided(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """What a kill would leave open is on record: each question once its message is shown
    (its id and text), and gone from the record once it is decided."""
    reported: list[tuple[tuple[int, str], ...]] = []

    async def on_open(questions: tuple[tuple[int, str], ...]) -> None:
        reported.append(questions)

    send, receive = trio.open_memory_channel[SenderMsg](100)
    approvals = Approvals(ChatOutput(KEY, send, lambda _: None), timeout=600, on_open=on_open)
    requests, incoming = trio.open_memory_channel[ApprovalRequest](4)
    reply_to, decision = trio.open_memory_channel[ApprovalDecision](1)
    ask = ApprovalAsk(kind="exec", message="run?", command="make deploy", cwd="")
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(approvals.serve, incoming, "/work")
            await requests.send(ApprovalRequest(ask=ask, reply_to=reply_to))
            shown = await receive.receive()
            assert isinstance(shown, UpdateLive)
            assert shown.shown_to is not None
            shown.shown_to.send_nowait(41)  # as the sender does once Telegram took it
            await trio.testing.wait_all_tasks_blocked()
            assert reported == [((41, shown.text),)]
            data = shown.keyboard[0][0].callback_data
            button = decode_button(data)
            assert isinstance(button, ApprovalButton)
            await approvals.press(press(data), button)
            assert await decision.receive() == "approved"
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert reported == [((41, shown.text),), ()]
