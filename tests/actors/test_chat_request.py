"""One request's life on its own: the outcome it returns and what the user sees on the way.

Virtual time (``autojump_clock``); a scripted pool stands in for the workers, and the sender
is a memory channel the test drains.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from actors.chat_approvals import Approvals
from actors.chat_output import ChatOutput
from actors.chat_progress import (
    WAITING_FOR_CODEX,
    WAITING_FOR_RELEASE,
    Progress,
    follow_progress,
    live_text,
)
from actors.chat_request import (
    TYPING_INTERVAL,
    CancelledByUser,
    Completed,
    Interrupted,
    Request,
    RequestOutcome,
    _Reporter,
    serve_request,
    stopped_outcome,
)
from orchestrator.codex_runs import (
    AgentMessageDelta,
    ApprovalAsk,
    ApprovalDecision,
    ApprovalRequest,
    CodexNotice,
    CodexProgress,
    CommandFinished,
    CommandStarted,
    JobDone,
    PatchApplied,
    Reasoning,
    RunStarted,
    WaitingForWorker,
)
from orchestrator.config import Profile
from orchestrator.messages import (
    CloseLive,
    SendChatAction,
    SenderMsg,
    SendReply,
    SessionKey,
    TraceRecord,
    UpdateLive,
)
from orchestrator.ports import (
    ModelChoice,
    PoolStatistics,
    RateLimits,
    SteerResult,
    StopResult,
)
from orchestrator.session_store import SessionState
from orchestrator.workflow_types import NO_PLAN, UNREADABLE_REVIEW

if TYPE_CHECKING:
    from pathlib import Path

    from orchestrator.codex_runs import CodexJob, JobOutcome

KEY = SessionKey(chat_id=5, user_id=7)
CEILING = 3600


class ScriptedPool:
    """Answers every call after `delay` seconds, patching ``app.py`` on the way."""

    def __init__(self, delay: float, *, patch_applies: bool = True) -> None:
        self.delay = delay
        self.patch_applies = patch_applies
        self.extra: list[CodexProgress] = []
        self.ask_after: float | None = None
        """Seconds into the call at which it asks one approval question and waits for it."""

    async def run(
        self,
        job: CodexJob,
        *,
        progress: trio.MemorySendChannel[CodexProgress],
        approvals: trio.MemorySendChannel[ApprovalRequest],
    ) -> JobOutcome:
        progress.send_nowait(RunStarted(worker_id=1))
        progress.send_nowait(PatchApplied(files=("app.py",), success=self.patch_applies))
        for event in self.extra:
            await trio.sleep(2)
            progress.send_nowait(event)
        if self.ask_after is not None:
            await trio.sleep(self.ask_after)
            decide, decision = trio.open_memory_channel[ApprovalDecision](1)
            ask = ApprovalAsk(kind="exec", message="run it?", command="make deploy")
            await approvals.send(ApprovalRequest(ask=ask, reply_to=decide))
            async for _ in decision:
                break  # a decision, or the channel closed: denied
        await trio.sleep(self.delay)
        return JobDone(text=f"did: {job.prompt}", thread_id="thread-1", worker_id=1)

    def statistics(self) -> PoolStatistics:
        return PoolStatistics()

    async def release(self, thread_id: str, worker_id: int | None) -> tuple[str, ...]:
        return ()

    async def steer(self, conversation: str, text: str) -> SteerResult:
        return "unsupported"

    async def models(self) -> tuple[ModelChoice, ...] | None:
        return None

    async def rate_limits(self) -> RateLimits | None:
        return None

    async def stop_background(self, thread_id: str, worker_id: int | None) -> StopResult:
        return None


class Harness:
    def __init__(self, tmp_path: Path, delay: float) -> None:
        self.sent: list[SenderMsg] = []
        self.sent_at: list[float] = []
        self.traces: list[TraceRecord] = []
        self.send, self.receive = trio.open_memory_channel[SenderMsg](100)
        self.out = ChatOutput(KEY, self.send, self.traces.append)
        self.pool = ScriptedPool(delay)
        self.profile = Profile(working_directory=str(tmp_path))
        self.request = Request(
            number=1, prompt="fix it", mode="single", token="tok", started=trio.current_time()
        )

    async def collect(self) -> None:
        async for message in self.receive:
            self.sent.append(message)
            self.sent_at.append(trio.current_time())

    async def serve(self) -> RequestOutcome:
        return await serve_request(
            self.request,
            out=self.out,
            approvals=Approvals(self.out, timeout=600),
            pool=self.pool,
            profile=self.profile,
            session=SessionState(mode="single", profile="default"),
            conversation="5-7",
        )

    async def serve_to_the_end(self) -> RequestOutcome:
        """Serve the request with the sender recorded, until every task is idle after it."""
        with trio.fail_after(CEILING):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.collect)
                outcome = await self.serve()
                await trio.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
        return outcome

    def replies(self) -> list[str]:
        return [m.markdown for m in self.sent if isinstance(m, SendReply)]


async def test_a_quick_answer_returns_its_result_without_a_progress_message(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    bot = Harness(tmp_path, delay=0.2)
    outcome = await bot.serve_to_the_end()
    assert isinstance(outcome, Completed)
    assert outcome.result.developer_thread_id == "thread-1"
    assert bot.replies() == ["did: fix it\n\nFiles changed: `app.py`\n\n🧵 `codex resume thread-1`"]
    assert not any(isinstance(m, UpdateLive | CloseLive | SendChatAction) for m in bot.sent)
    [role] = [t for t in bot.traces if t.event == "role"]
    assert (role.chat_id, role.user_id, role.role, role.outcome) == (5, 7, "developer", "succeeded")


async def test_a_long_request_types_shows_progress_and_closes_it(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    bot = Harness(tmp_path, delay=60)
    outcome = await bot.serve_to_the_end()
    assert isinstance(outcome, Completed)
    typing = [m for m in bot.sent if isinstance(m, SendChatAction)]
    assert len(typing) == pytest.approx(60 / TYPING_INTERVAL, abs=1)
    live = [m for m in bot.sent if isinstance(m, UpdateLive)]
    assert live[0].slot == "request-1"
    assert all(m.silent for m in live)  # progress never notifies
    assert live[-1].text.startswith("⏳ Working on your request… ")
    assert "• changed app.py" in live[-1].text
    assert not any("Worker" in m.text or "Phase:" in m.text for m in live)
    assert live[0].keyboard[0][0].callback_data == "cx:tok"
    # No leftover "Done" message: the progress message goes, the result says how long.
    closes = [m for m in bot.sent if isinstance(m, CloseLive)]
    assert [(m.final_text, m.delete) for m in closes] == [(None, True)]
    assert bot.replies() == [
        "did: fix it\n\nFiles changed: `app.py`\n\nTook 1:00.\n\n🧵 `codex resume thread-1`"
    ]
    assert not any(m.silent for m in bot.sent if isinstance(m, SendReply))


async def test_a_file_patched_again_and_again_is_one_counted_line(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    bot = Harness(tmp_path, delay=5)
    again = PatchApplied(files=("app.py",), success=True)
    bot.pool.extra = [again, again, again, PatchApplied(files=("lib.py",), success=True), again]
    await bot.serve_to_the_end()
    live = [m.text for m in bot.sent if isinstance(m, UpdateLive)]
    assert live[-1].endswith(
        "\n\n• changed app.py (4 times)\n• changed lib.py\n• changed app.py"
    ), live[-1]


@pytest.mark.parametrize(
    ("waiting", "shown"),
    [
        (WaitingForWorker(worker_id=0), WAITING_FOR_CODEX),
        (WaitingForWorker(releasing=True), WAITING_FOR_RELEASE),
    ],
    ids=["busy", "releasing"],
)
async def test_waiting_for_a_worker_is_shown_until_the_run_starts_on_one(
    waiting: WaitingForWorker, shown: str
) -> None:
    """Seen from outside: "waiting for Codex: other requests are using it" stayed above
    "Codex is writing:" once a worker had been free for seconds. A wait for a stopping
    process to let go of the conversation's thread says so, not that others use Codex."""
    progress = Progress(phase="developing")
    send, receive = trio.open_memory_channel[CodexProgress](8)
    for event in (waiting, CommandStarted(command="ls")):
        send.send_nowait(event)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow_progress, progress, receive, "/w")
        await trio.testing.wait_all_tasks_blocked()
        assert progress.actions == [shown, "$ ls"]
        changed = progress.changed = trio.Event()
        send.send_nowait(RunStarted(worker_id=1))
        send.send_nowait(WaitingForWorker(worker_id=1))  # a later role's wait: said once
        send.close()
    assert progress.actions == ["$ ls"]
    assert changed.is_set()
    assert progress.worker == 1


async def test_what_the_model_thinks_is_shown_until_its_next_step() -> None:
    """The part of the reasoning summary being written, headline markup removed, on one line;
    a new part replaces it, and a step (a command) ends it."""
    progress = Progress(phase="developing")
    send, receive = trio.open_memory_channel[CodexProgress](16)
    events = (
        Reasoning(part_start=True),
        Reasoning(text="**Weighing** the"),
        Reasoning(text=" options."),
    )
    for event in events:
        send.send_nowait(event)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow_progress, progress, receive, "/w")
        await trio.testing.wait_all_tasks_blocked()
        shown = [live_text(progress, trio.current_time()).splitlines()[-1]]
        send.send_nowait(Reasoning(part_start=True))
        send.send_nowait(Reasoning(text="**Running**\n the tests"))
        await trio.testing.wait_all_tasks_blocked()
        shown.append(live_text(progress, trio.current_time()).splitlines()[-1])
        send.send_nowait(CommandStarted(command="pytest"))
        send.close()
    shown.append(live_text(progress, trio.current_time()).splitlines()[-1])
    assert shown == ["💭 Weighing the options.", "💭 Running the tests", "• $ pytest"]


async def test_a_message_of_codex_after_a_command_starts_on_its_own_line(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Seen from outside: "Codex is writing: Working.The command ended." """
    bot = Harness(tmp_path, delay=5)
    bot.pool.extra = [
        AgentMessageDelta(text="Working"),
        AgentMessageDelta(text="."),
        CommandStarted(command="make"),
        CommandFinished(command="make", exit_code=0),
        AgentMessageDelta(text="The command "),
        AgentMessageDelta(text="ended."),
    ]
    await bot.serve_to_the_end()
    live = [m.text for m in bot.sent if isinstance(m, UpdateLive)]
    assert live[-1].endswith("Codex is writing:\nWorking.\nThe command ended."), live[-1]


async def test_no_typing_while_codex_waits_for_the_users_answer(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Asked at 20 s, unanswered until the approval timeout (600 s) denies it, then 20 s more:
    "typing…" before and after the question, none while it is open."""
    bot = Harness(tmp_path, delay=20)
    bot.pool.ask_after = 20
    started = trio.current_time()
    outcome = await bot.serve_to_the_end()
    assert isinstance(outcome, Completed)
    typing = [
        at - started
        for at, m in zip(bot.sent_at, bot.sent, strict=True)
        if isinstance(m, SendChatAction)
    ]
    asked = [m for m in bot.sent if isinstance(m, UpdateLive) and "make deploy" in m.text]
    assert asked  # the question went out
    assert [at for at in typing if 21 < at < 620] == []
    assert len([at for at in typing if at <= 20]) == pytest.approx(20 / TYPING_INTERVAL, abs=1)
    assert len([at for at in typing if at >= 620]) == pytest.approx(20 / TYPING_INTERVAL, abs=1)


async def test_a_patch_that_did_not_apply_is_not_reported_as_changed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    bot = Harness(tmp_path, delay=5)
    bot.pool.patch_applies = False  # denied by the user: Codex reports it failed
    await bot.serve_to_the_end()
    assert bot.replies() == ["did: fix it\n\nTook 0:05.\n\n🧵 `codex resume thread-1`"]
    live = [m.text for m in bot.sent if isinstance(m, UpdateLive)]
    assert "• did not change app.py" in live[-1]


async def test_a_warning_shows_once_and_the_answer_streams_into_the_progress_message(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    bot = Harness(tmp_path, delay=10)
    warning = CodexNotice(level="warning", message="Reconnecting to the model")
    bot.pool.extra = [
        warning,
        AgentMessageDelta(text="First line.\nSecond "),
        warning,
        AgentMessageDelta(text="line.\nThird line.\nFourth line."),
    ]
    await bot.serve_to_the_end()
    last = [m.text for m in bot.sent if isinstance(m, UpdateLive)][-1]
    assert last.count("⚠️ Reconnecting to the model") == 1
    assert last.endswith("Codex is writing:\nSecond line.\nThird line.\nFourth line.")


async def test_typing_is_shed_when_the_sender_is_full() -> None:
    send, _receive = trio.open_memory_channel[SenderMsg](1)
    out = ChatOutput(KEY, send, lambda record: None)
    assert out.typing()
    assert not out.typing()
    assert not out.typing()
    assert out.typing_shed.shed == 2


@pytest.mark.parametrize("git", [True, False])
async def test_a_cancel_by_the_user_is_returned(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, git: bool
) -> None:
    """Outside a git work tree /diff cannot show the changes, so the cancel does not point
    to it."""
    if git:
        (tmp_path / ".git").mkdir()
        (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    bot = Harness(tmp_path, delay=600)
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bot.collect)
            nursery.start_soon(bot.serve)
            await trio.sleep(10)
            assert bot.request.cancel("/cancel")
            assert not bot.request.cancel("button")
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
    closes = [m.final_text for m in bot.sent if isinstance(m, CloseLive)]
    # A cancel undoes nothing: what Codex changed before it is said with it.
    shown = " (/diff shows it)" if git else ""
    assert closes == [
        f"🛑 Cancelled after 0:10. What Codex changed before it stays changed: app.py{shown}."
    ]
    assert not any("Cancelled" in reply for reply in bot.replies())  # said once
    stopped = stopped_outcome(bot.request)
    assert isinstance(stopped, CancelledByUser)
    assert stopped.reason == "/cancel"


async def test_a_stopped_chat_tells_the_user_and_lets_the_cancel_through(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    bot = Harness(tmp_path, delay=600)
    outcomes: list[RequestOutcome] = []

    async def serve() -> None:
        outcomes.append(await bot.serve())

    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bot.collect)
            async with trio.open_nursery() as chat:
                chat.start_soon(serve)
                await trio.sleep(30)
                chat.cancel_scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert outcomes == []
    closes = [m.final_text for m in bot.sent if isinstance(m, CloseLive)]
    assert closes == [
        "⏹ Interrupted: the bot is stopping. Codex had already begun to work on it (it "
        "changed app.py), so it does not run again by itself: when the bot is back, a button "
        "offers to run it again."
    ]
    assert bot.replies() == []
    assert isinstance(stopped_outcome(bot.request), Interrupted)


@pytest.mark.parametrize(
    ("phase", "shown"),
    [
        ("selecting", False),  # a route in JSON, for the bot
        ("reviewing round 1", False),  # a verdict in JSON
        ("planning", True),
        ("developing round 1", True),
    ],
)
async def test_the_answer_streams_only_where_it_is_for_the_user(phase: str, shown: bool) -> None:
    progress = Progress(phase=phase, answer='{"verdict": "approved",\n"feedback": "ok"}')
    text = live_text(progress, trio.current_time())
    assert ("Codex is writing" in text) is shown
    assert ('"feedback"' in text) is shown


async def test_a_new_phase_shows_only_its_own_steps(tmp_path: Path) -> None:
    """The reviewer's progress does not list the developer's commands as its own."""
    bot = Harness(tmp_path, delay=0)
    progress = Progress(phase="developing round 1", actions=["$ pytest", "changed app.py"])
    progress.files.append("app.py")
    await _Reporter(bot.out, progress).phase("reviewing round 1", "")
    assert progress.actions == []
    assert progress.files == ["app.py"]  # still the request's changes
    assert live_text(progress, trio.current_time()).startswith(
        "⏳ Reviewing the work (round 1 of 3)… "
    )


async def test_a_review_that_was_not_a_verdict_is_said_in_words() -> None:
    """Not "The reviewer asked for: The reviewer's answer could not be read as a verdict…"."""
    progress = Progress(phase="developing round 2", detail=UNREADABLE_REVIEW)
    assert live_text(progress, trio.current_time()).splitlines()[:2] == [
        "⏳ Going over the work again (round 2 of 3)… 0:00",
        UNREADABLE_REVIEW,
    ]


async def test_a_round_without_a_plan_says_why_no_plan_came() -> None:
    """Not "Carrying out the plan" nor "The reviewer asked for: The planner wrote no plan…"."""
    progress = Progress(phase="developing round 1", detail=NO_PLAN)
    assert live_text(progress, trio.current_time()).splitlines()[:2] == [
        "⏳ Working on your request (round 1 of 3)… 0:00",
        NO_PLAN,
    ]


@pytest.mark.parametrize(
    ("phase", "head"),
    [
        ("developing", ["⏸ Waiting for your answer to Codex's question… 0:00", ""]),
        (
            "developing round 2",
            [
                "⏸ Waiting for your answer to Codex's question… 0:00",
                "Making the changes the reviewer asked for (round 2 of 3)",
                "The reviewer asked for: add tests",
            ],
        ),
        (
            "reviewing round 1",
            [
                "⏸ Waiting for your answer to Codex's question… 0:00",
                "Reviewing the work (round 1 of 3)",
                "",
            ],
        ),
    ],
)
async def test_an_open_question_keeps_the_plan_phase_in_view(phase: str, head: list[str]) -> None:
    progress = Progress(phase=phase, detail="add tests" if "round 2" in phase else "", asking=1)
    progress.actions.append("$ ls")
    lines = live_text(progress, trio.current_time()).splitlines()
    assert lines[: len(head)] == head
