"""Projects in parallel, on the router and chat actors with in-memory Codex workers in
virtual time: sessions to pick up (``/sessions``, the thread line), topics bound to profiles
(``/bind``). Branch worktrees need a real git: tests/system/test_projects_process.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
import trio
import trio.testing

from actors import chat_sessions
from orchestrator.config import Config, Profile
from orchestrator.errors import GitError
from orchestrator.messages import InboundCallback, RepliedTo, SessionKey, UpdateLive
from orchestrator.prompts import instructions_digest
from tests.actors.test_chats import ALICE, BOB, make_config, running_bot
from tests.fakes.codex_process import FakeProcesses
from tests.fakes.git import FakeGit

if TYPE_CHECKING:
    from pathlib import Path

    from orchestrator.codex_runs import CodexJob
    from orchestrator.ports import Worktree
    from tests.actors.test_chats import Bot

GROUP = -100123
TOPIC = 7


def _calls(bot: Bot) -> list[CodexJob]:
    return [job for process in bot.fakes.started for job in process.calls]


def _call(bot: Bot, prompt: str) -> CodexJob:
    """The one Codex call that ran `prompt`."""
    (job,) = [job for job in _calls(bot) if job.prompt == prompt]
    return job


async def _press(bot: Bot, user: int, data: str, *, chat: int, topic: int | None = None) -> str:
    assert bot.inbox is not None
    query = f"q-{data}-{len(bot.sent)}"
    await bot.inbox.send(
        InboundCallback(
            update_id=10_000 + len(bot.sent),
            callback_query_id=query,
            chat_id=chat,
            chat_type="private" if chat > 0 else "supergroup",
            user_id=user,
            message_id=1,
            data=data,
            thread_id=topic,
        )
    )
    return query


async def test_sessions_lists_threads_and_a_pick_continues_the_old_one(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_bot(tmp_path) as bot:
        await bot.say(ALICE, "first project question")
        await bot.wait_reply(ALICE, "FAKE: first project question")
        first = _call(bot, "first project question")
        first_thread = bot.replies(ALICE)[-1].rpartition("codex resume ")[2].rstrip("`")
        assert bot.replies(ALICE)[-1].endswith(f"\n\n🧵 `codex resume {first_thread}`")
        assert first.thread_id is None
        await bot.say(ALICE, "/new")
        await bot.wait_reply(ALICE, "new conversation")
        # Sent as a reply: the list shows the user's words, not the note for Codex.
        await bot.say(ALICE, "second topic", replied_to=RepliedTo(text="an answer", by="bot"))
        await bot.wait_reply(ALICE, "```\n\nsecond topic")
        second_thread = bot.replies(ALICE)[-1].rpartition("codex resume ")[2].rstrip("`")
        assert second_thread != first_thread
        await bot.say(ALICE, "/sessions")
        await bot.wait(lambda: bool(bot.buttons(ALICE, "ss:")))
        listing = [m for m in bot.sent if isinstance(m, UpdateLive) and m.slot == "sessions"][-1]
        lines = listing.text.splitlines()
        assert lines[1].endswith(": ↩ second topic (current)")
        assert "first project question" in lines[2]
        assert str(tmp_path) not in listing.text  # folder names only
        buttons = bot.buttons(ALICE, "ss:")
        assert [b.callback_data for b in buttons] == [f"ss:{second_thread}", f"ss:{first_thread}"]
        query = await _press(bot, ALICE, buttons[1].callback_data, chat=ALICE)
        await bot.wait(lambda: bot.callback_answer(query) is not None)
        await bot.wait_told(ALICE, "Continuing the session of")
        await bot.say(ALICE, "back to the first")
        await bot.wait_reply(ALICE, "FAKE: back to the first")
        back = _call(bot, "back to the first")
        assert back.thread_id == first_thread
        # The thread has its developer instructions: they are not sent to it once more.
        assert back.thread_instructions == instructions_digest(first.developer_instructions)
        # A thread id that is not in this chat's history is refused.
        query = await _press(bot, ALICE, "ss:someone-elses-thread", chat=ALICE)
        await bot.wait(lambda: bot.callback_answer(query) is not None)
        assert bot.callback_answer(query) == "That session is no longer in this chat's list."
    state = (await bot.store.load(SessionKey(ALICE, ALICE))).state
    assert state is not None
    assert [record.thread_id for record in state.threads] == [first_thread, second_thread]
    assert state.threads[0].prompt == "first project question"


async def test_the_history_is_bounded(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_bot(tmp_path) as bot:
        for number in range(chat_sessions.HISTORY_LIMIT + 2):
            await bot.say(ALICE, f"question {number}")
            await bot.wait_reply(ALICE, f"FAKE: question {number}")
            await bot.say(ALICE, "/new")
            await bot.wait_reply(ALICE, "new conversation", count=number + 1)
    state = (await bot.store.load(SessionKey(ALICE, ALICE))).state
    assert state is not None
    assert len(state.threads) == chat_sessions.HISTORY_LIMIT
    assert state.threads[0].prompt == f"question {chat_sessions.HISTORY_LIMIT + 1}"


async def test_a_pick_on_app_server_resumes_a_thread_its_worker_no_longer_holds(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fakes = FakeProcesses(app_server=True)
    async with running_bot(tmp_path, fakes) as bot:
        await bot.say(ALICE, "old work")
        await bot.wait_reply(ALICE, "FAKE: old work")
        old = bot.replies(ALICE)[-1].rpartition("codex resume ")[2].rstrip("`")
        await bot.say(ALICE, "/new")
        await bot.wait_reply(ALICE, "new conversation")
        for process in list(fakes.started):
            process.die()  # every worker is replaced: the old thread is only on "disk"
        await trio.sleep(30)
        await bot.say(ALICE, "/sessions")
        await bot.wait(lambda: bool(bot.buttons(ALICE, f"ss:{old}")))
        await _press(bot, ALICE, f"ss:{old}", chat=ALICE)
        await bot.wait_told(ALICE, "Continuing the session of")
        await bot.say(ALICE, "more on it")
        await bot.wait_reply(ALICE, "FAKE: more on it")
    assert [thread for _, thread in fakes.resumed] == [old]
    assert bot.replies(ALICE)[-1].endswith(f"codex resume {old}`")


def _team_config(tmp_path: Path) -> Config:
    config = make_config(tmp_path)
    profiles = dict(config.profiles)
    profiles["other"] = msgspec.structs.replace(profiles["other"], users=(ALICE,))
    return msgspec.structs.replace(config, profiles=profiles)


async def test_a_topic_bound_to_a_profile_runs_there_for_its_users_only(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    config = _team_config(tmp_path)
    async with running_bot(tmp_path, config=config) as bot:
        await bot.say(BOB, "/sessions", chat=GROUP, thread_id=TOPIC)
        await bot.wait_reply(GROUP, "No Codex sessions yet in this topic: the first request")
        await bot.say(BOB, "/bind other", chat=GROUP, thread_id=TOPIC)
        await bot.wait_reply(GROUP, "No profile named “other”. Profiles: default")
        await bot.say(ALICE, "/bind other", chat=GROUP, thread_id=TOPIC)
        await bot.wait_reply(GROUP, "This topic is now bound to profile other (other)")
        await bot.say(ALICE, "/mode single", chat=GROUP, thread_id=TOPIC)
        await bot.wait_reply(GROUP, "Mode set to single")
        await bot.say(ALICE, "alice in the topic", chat=GROUP, thread_id=TOPIC)
        await bot.wait_reply(GROUP, "FAKE: alice in the topic")
        assert _call(bot, "alice in the topic").cwd == str(tmp_path / "other")
        await bot.say(BOB, "bob in the topic", chat=GROUP, thread_id=TOPIC)
        await bot.wait_reply(GROUP, "which you may not use, so your message was not run")
        await bot.say(BOB, "/bind off", chat=GROUP, thread_id=TOPIC)
        await bot.wait_reply(GROUP, "only someone who may use that profile can change it")
        await bot.say(BOB, "bob in another topic", chat=GROUP, thread_id=TOPIC + 1)
        await bot.wait_reply(GROUP, "FAKE: bob in another topic")
        assert _call(bot, "bob in another topic").cwd == str(tmp_path / "work")
        await bot.say(ALICE, "/profile default", chat=GROUP, thread_id=TOPIC)
        await bot.wait_reply(GROUP, "so /profile does not change it here")
        await bot.say(ALICE, "/status", chat=GROUP, thread_id=TOPIC)
        await bot.wait_reply(GROUP, "Bound topic: profile other (for everyone here)")
        await bot.say(ALICE, "/bind off", chat=GROUP, thread_id=TOPIC)
        await bot.wait_reply(GROUP, "This topic is no longer bound")
        await bot.say(BOB, "bob again", chat=GROUP, thread_id=TOPIC)
        await bot.wait_reply(GROUP, "FAKE: bob again")
    assert not any("bob in the topic" in job.prompt for job in _calls(bot))
    assert (tmp_path / "topics.json").exists()


async def test_bind_off_puts_each_user_back_on_their_own_profile_and_mode(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A binding moves each user onto its profile (and that profile's mode); unbinding puts
    them back where they were, not on the profile the binding left them on."""
    async with running_bot(tmp_path) as bot:
        await bot.say(ALICE, "/bind other")
        await bot.wait_reply(ALICE, "Whoever comes from another profile runs in its mode, plan")
        await bot.say(ALICE, "/status")
        await bot.wait_reply(ALICE, "Mode: plan\nProfile: other")
        await bot.say(ALICE, "/bind off")
        await bot.wait_reply(ALICE, "each of you goes back to your own profile and mode")
        await bot.say(ALICE, "/status")
        await bot.wait_reply(ALICE, "Mode: single\nProfile: default")
        # In a group: Bob keeps his own choice through Alice's binding and back.
        await bot.say(BOB, "/profile other", chat=GROUP)
        await bot.wait_reply(GROUP, "Switched to profile other")
        await bot.say(BOB, "/mode single", chat=GROUP)
        await bot.wait_reply(GROUP, "Mode set to single")
        await bot.say(ALICE, "/bind default", chat=GROUP)
        await bot.wait_reply(GROUP, "now bound to profile default")
        await bot.say(BOB, "bob while bound", chat=GROUP)
        await bot.wait_reply(GROUP, "FAKE: bob while bound")
        await bot.say(ALICE, "/bind off", chat=GROUP)
        await bot.wait_reply(GROUP, "no longer bound")
        await bot.say(BOB, "bob after", chat=GROUP)
        await bot.wait_reply(GROUP, "FAKE: bob after")
        await bot.say(BOB, "/status", chat=GROUP)
        await bot.wait_reply(GROUP, "Mode: single\nProfile: other")
    assert _call(bot, "bob while bound").cwd == str(tmp_path / "work")
    assert _call(bot, "bob after").cwd == str(tmp_path / "other")


async def test_bindings_survive_a_restart(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    config = _team_config(tmp_path)
    async with running_bot(tmp_path, config=config) as bot:
        await bot.say(ALICE, "/bind other", chat=GROUP, thread_id=TOPIC)
        await bot.wait_reply(GROUP, "now bound to profile other")
    async with running_bot(tmp_path, config=config) as bot:
        await bot.say(ALICE, "/bind", chat=GROUP, thread_id=TOPIC)
        await bot.wait_reply(GROUP, "This topic is bound to profile other")
        await bot.say(ALICE, "/bind", chat=GROUP, thread_id=TOPIC + 1)
        await bot.wait_reply(GROUP, "This topic is not bound")


async def test_damaged_bindings_are_set_aside(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    (tmp_path / "topics.json").write_text("{not json")
    config = _team_config(tmp_path)
    async with running_bot(tmp_path, config=config) as bot:
        await bot.say(ALICE, "/bind", chat=GROUP, thread_id=TOPIC)
        await bot.wait_reply(GROUP, "This topic is not bound")
    assert list(tmp_path.glob("topics.json.corrupt-*"))


def test_profile_worktrees_folder_defaults_next_to_the_repository() -> None:
    profile = Profile(working_directory="/srv/repo")
    assert str(profile.worktrees_folder()) == "/srv/repo.worktrees"
    custom = Profile(working_directory="/srv/repo", worktrees_dir="/srv/trees")
    assert str(custom.worktrees_folder()) == "/srv/trees"


async def test_one_worktree_serves_one_request_at_a_time_and_worktrees_run_in_parallel(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fakes = FakeProcesses()
    fakes.rule("slow", delay=100)
    fakes.rule("quick", delay=10)
    git = FakeGit()
    trees = tmp_path / "work.worktrees"
    async with running_bot(tmp_path, fakes, git=git) as bot:
        for topic, branch in ((1, "shared"), (2, "shared"), (3, "own")):
            await bot.say(ALICE, f"/branch {branch}", chat=GROUP, thread_id=topic)
            await bot.wait_reply(GROUP, "now works on branch", count=topic)
        started = trio.current_time()
        await bot.say(ALICE, "slow one in topic 1", chat=GROUP, thread_id=1)
        await bot.wait(lambda: any(job.prompt.startswith("slow one") for job in _calls(bot)))
        await bot.say(BOB, "slow two in topic 2", chat=GROUP, thread_id=2)
        await bot.say(BOB, "quick three in topic 3", chat=GROUP, thread_id=3)
        await bot.wait_reply(GROUP, "Another chat is running a request in shared")
        await bot.wait_reply(GROUP, "FAKE: quick three in topic 3")
        assert trio.current_time() - started < 50  # another worktree: in parallel
        assert not any(job.prompt.startswith("slow two") for job in _calls(bot))
        await bot.wait_reply(GROUP, "FAKE: slow one in topic 1")
        await bot.wait_reply(GROUP, "FAKE: slow two in topic 2")
        assert trio.current_time() - started >= 200  # the same worktree: one after the other
        assert _call(bot, "slow two in topic 2").cwd == str(trees / "shared")
        assert _call(bot, "quick three in topic 3").cwd == str(trees / "own")
        # Removing: refused while dirty, else after the button.
        git.dirty.add(trees / "own")
        await bot.say(ALICE, "/branch rm own", chat=GROUP, thread_id=3)
        await bot.wait_reply(GROUP, "has uncommitted changes, so it stays")
        git.dirty.clear()
        await bot.say(ALICE, "/branch rm own", chat=GROUP, thread_id=3)
        await bot.wait(lambda: bool(bot.buttons(GROUP, "br:")))
        remove = bot.buttons(GROUP, "br:")[0].callback_data
        await _press(bot, BOB, remove, chat=GROUP, topic=3)  # not Bob's question
        await _press(bot, ALICE, remove, chat=GROUP, topic=3)
        await bot.wait_told(GROUP, "Removed the worktree of own")
        assert not (trees / "own").exists()
        await bot.say(ALICE, "/branch", chat=GROUP, thread_id=3)
        await bot.wait_reply(GROUP, "Branches of profile default")
        listing = bot.replies(GROUP)[-1]
    assert "• main (the repository itself): clean (here)" in listing
    assert "◦ shared: clean" in listing
    assert "own" not in listing.replace("/branch", "")


async def test_a_pick_on_mcp_whose_worker_is_gone_continues_with_its_recap(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    fakes = FakeProcesses()  # MCP: a thread lives only in its process
    async with running_bot(tmp_path, fakes) as bot:
        await bot.say(ALICE, "the old question")
        await bot.wait_reply(ALICE, "FAKE: the old question")
        old = bot.replies(ALICE)[-1].rpartition("codex resume ")[2].rstrip("`")
        await bot.say(ALICE, "/new")
        await bot.wait_reply(ALICE, "new conversation")
        for process in list(fakes.started):
            process.die()
        await trio.sleep(30)
        await bot.say(ALICE, "/sessions")
        await bot.wait(lambda: bool(bot.buttons(ALICE, f"ss:{old}")))
        await _press(bot, ALICE, f"ss:{old}", chat=ALICE)
        await bot.wait_told(ALICE, "Continuing the session of")
        await bot.say(ALICE, "follow-up")
        await bot.wait_reply(ALICE, "FAKE: follow-up")
    job = _call(bot, "follow-up")
    assert job.thread_id is None  # a fresh thread ...
    assert "User asked: the old question" in job.context_preamble  # ... with the old recap
    assert "continued in a new one with a summary" in bot.replies(ALICE)[-1]


async def test_a_pick_of_a_session_from_another_folder_says_how_to_get_there(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A Codex thread keeps its folder: a session of a branch worktree goes on only there
    (else Codex would work in one folder while /status, /diff and /get look at another)."""
    trees = tmp_path / "work.worktrees"
    async with running_bot(tmp_path, FakeProcesses(app_server=True), git=FakeGit()) as bot:
        await bot.say(ALICE, "/branch feature-z")
        await bot.wait_reply(ALICE, "now works on branch feature-z")
        await bot.say(ALICE, "hello on z")
        await bot.wait_reply(ALICE, "FAKE: hello on z")
        on_z = bot.replies(ALICE)[-1].rpartition("codex resume ")[2].rstrip("`")
        await bot.say(ALICE, "/branch off")
        await bot.wait_reply(ALICE, "works in the repository itself again")
        await bot.say(ALICE, "/sessions")
        await bot.wait(lambda: bool(bot.buttons(ALICE, f"ss:{on_z}")))
        query = await _press(bot, ALICE, f"ss:{on_z}", chat=ALICE)
        await bot.wait_reply(ALICE, "That session worked in the worktree of branch feature-z")
        assert bot.callback_answer(query) == "That session worked in another folder."
        refused = bot.replies(ALICE)[-1]
        assert "now works in the repository itself" in refused
        assert "Switch with /branch feature-z first" in refused
        await bot.say(ALICE, "in the repository")
        await bot.wait_reply(ALICE, "FAKE: in the repository")
        assert _call(bot, "in the repository").thread_id != on_z  # not bound to it
        in_repo = bot.replies(ALICE)[-1].rpartition("codex resume ")[2].rstrip("`")
        # The way the message says, and the reverse direction.
        await bot.say(ALICE, "/branch feature-z")
        await bot.wait_reply(ALICE, "now works on branch feature-z", count=2)
        await bot.say(ALICE, "/sessions")
        await bot.wait(lambda: bool(bot.buttons(ALICE, f"ss:{in_repo}")))
        await _press(bot, ALICE, f"ss:{in_repo}", chat=ALICE)
        await bot.wait_reply(ALICE, "Switch with /branch off first")
        await _press(bot, ALICE, f"ss:{on_z}", chat=ALICE)
        await bot.wait_told(ALICE, "Continuing the session of")
        await bot.say(ALICE, "back on z")
        await bot.wait_reply(ALICE, "FAKE: back on z")
    job = _call(bot, "back on z")
    assert (job.thread_id, job.cwd) == (on_z, str(trees / "feature-z"))


async def test_a_branch_alone_does_not_leave_a_private_chat_bound_to_its_profile(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_bot(tmp_path, git=FakeGit()) as bot:
        await bot.say(ALICE, "/branch feat/z")
        await bot.wait_reply(ALICE, "now works on branch feat/z")
        assert "your requests here run in its worktree" in bot.replies(ALICE)[-1]
        # the folder whole: its last part alone ("z") reads as anything but a folder
        folder = tmp_path / "work.worktrees" / "feat" / "z"
        assert f"new worktree {folder}" in bot.replies(ALICE)[-1]
        await bot.say(ALICE, "/status")
        await bot.wait_reply(ALICE, "Branch: feat/z")
        assert "for everyone" not in bot.replies(ALICE)[-1]
        await bot.say(ALICE, "/profile other")
        await bot.wait_reply(ALICE, "/branch off goes back to the repository; then /profile")
        await bot.say(ALICE, "/branch off")
        await bot.wait_reply(ALICE, "works in the repository itself again")
        await bot.say(ALICE, "/profile other")
        await bot.wait_reply(ALICE, "Switched to profile other")
        await bot.say(ALICE, "/mode single")
        await bot.wait_reply(ALICE, "Mode set to single")
        await bot.say(ALICE, "in the other profile")
        await bot.wait_reply(ALICE, "FAKE: in the other profile")
    assert _call(bot, "in the other profile").cwd == str(tmp_path / "other")


async def test_a_branch_in_a_topic_bound_with_bind_keeps_the_profile_after_branch_off(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_bot(tmp_path, git=FakeGit()) as bot:
        await bot.say(ALICE, "/bind default", chat=GROUP, thread_id=TOPIC)
        await bot.wait_reply(GROUP, "now bound to profile default")
        await bot.say(ALICE, "/branch feat", chat=GROUP, thread_id=TOPIC)
        await bot.wait_reply(GROUP, "everyone's requests here run in its worktree")
        await bot.say(ALICE, "/branch off", chat=GROUP, thread_id=TOPIC)
        await bot.wait_reply(GROUP, "works in the repository itself again")
        await bot.say(ALICE, "/status", chat=GROUP, thread_id=TOPIC)
        await bot.wait_reply(GROUP, "Bound topic: profile default (for everyone here)")


async def test_branch_commands_in_a_topic_bound_to_a_profile_the_user_may_not_use_are_refused(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Profiles are permissions: Bob, kept out of `other`, can neither list nor remove the
    worktrees of a topic bound to it."""
    git = FakeGit()
    trees = tmp_path / "other.worktrees"
    async with running_bot(tmp_path, git=git, config=_team_config(tmp_path)) as bot:
        await bot.say(ALICE, "/bind other", chat=GROUP, thread_id=TOPIC)
        await bot.wait_reply(GROUP, "now bound to profile other")
        await bot.say(ALICE, "/branch alices", chat=GROUP, thread_id=TOPIC)
        await bot.wait_reply(GROUP, "now works on branch alices")
        assert (trees / "alices").exists()
        for command in ("/branch", "/branch rm alices"):
            await bot.say(BOB, command, chat=GROUP, thread_id=TOPIC)
        await bot.wait_reply(GROUP, "only someone who may use that profile can change it", 2)
        assert not bot.buttons(GROUP, "br:")
        assert not any("Branches of profile" in r for r in bot.replies(GROUP))
    assert (trees / "alices").exists()


async def test_branch_outside_a_git_repository_says_so_in_words(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    class NoRepository(FakeGit):
        async def worktrees(self, repository: Path) -> list[Worktree]:
            raise GitError("fatal: not a git repository (or any of the parent directories): .git")

    async with running_bot(tmp_path, git=NoRepository()) as bot:
        await bot.say(ALICE, "/branch")
        await bot.wait_reply(ALICE, "Branch worktrees need a git repository, and work is not one.")
    assert not any("fatal" in reply for reply in bot.replies(ALICE))
    assert not any("`" in reply for reply in bot.replies(ALICE))  # plain text: shown as typed
