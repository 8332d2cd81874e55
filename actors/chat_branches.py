"""Branch worktrees: ``/branch NAME`` runs a chat or topic in a git worktree of its own.

``/branch NAME`` makes a git worktree of the profile's repository on branch NAME (the
existing branch, else a new one from the repository's HEAD) in the profile's worktrees
folder (``profiles.NAME.worktrees_dir``: outside the repository and state_dir, checked at
start), and binds this chat or topic to it (`actors.chat_topics`): everyone's requests here
run with that folder as their working directory. ``/branch`` lists the worktrees with their
state; ``/branch off`` goes back to the repository itself; ``/branch rm NAME`` removes one
after a confirmation button, and refuses while it has uncommitted changes or a request runs
in it. Git is reached through the `GitWorktrees` port only.

Requests in different worktrees run in parallel; one worktree never serves two requests at
once (`exclusive`): a request whose worktree is busy with another chat's request says so and
waits for it (``/cancel`` still stops it while it waits).
"""

from __future__ import annotations

import os
import re
import secrets
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final

import trio

from actors import chat_topics
from orchestrator import disk
from orchestrator.errors import GitError
from orchestrator.messages import Button
from orchestrator.topic_bindings import Binding
from orchestrator.words import one_line, quoted

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from actors.chat import Chat
    from actors.chat_request import Request
    from orchestrator.messages import InboundCallback
    from orchestrator.ports import GitWorktrees, Worktree

__all__ = ["branch", "exclusive", "is_button", "press"]

WAIT_CHECK: Final = 1.0
"""Seconds between two looks at a cancel while a request waits for its worktree."""

_PREFIX: Final = "br:"
"""Callback data of the ``/branch rm`` buttons: ``br:<token>:yes|no``."""

_RESERVED: Final = frozenset({"rm", "off"})
"""Words of ``/branch`` itself, never taken as branch names."""


def is_button(data: str) -> bool:
    """Whether a button's callback data is one of this module's."""
    return data.startswith(_PREFIX)


@asynccontextmanager
async def exclusive(chat: Chat, request: Request) -> AsyncIterator[None]:
    """Hold the chat's worktree for `request` (nothing when it runs in the profile's own
    folder); when another chat's request runs there, say so and wait. A cancel while waiting
    ends the wait: the request then ends as cancelled at once."""
    workspace = chat.state.workspace
    if not workspace:
        yield
        return
    lock = chat.deps.worktree_locks.setdefault(workspace, trio.Lock())
    if lock.locked():
        await chat.out.say(
            f"Another chat is running a request in {Path(workspace).name}; yours starts when "
            "it has finished (/cancel to drop it).",
            plain=True,
        )
    acquired = False
    while not acquired and not request.cancel_reason:
        with trio.move_on_after(WAIT_CHECK):
            await lock.acquire()
            acquired = True
    try:
        yield
    finally:
        if acquired:
            lock.release()


def _git(chat: Chat) -> GitWorktrees | None:
    return chat.deps.git if chat.deps.topics is not None else None


def _describe(worktree: Worktree) -> str:
    words = ["dirty" if worktree.dirty else "clean"]
    if worktree.ahead:
        words.append(f"{worktree.ahead} ahead")
    if worktree.behind:
        words.append(f"{worktree.behind} behind")
    return ", ".join(words)


async def branch(chat: Chat, argument: str) -> None:
    """``/branch``, ``/branch NAME``, ``/branch off``, ``/branch rm NAME``."""
    git = _git(chat)
    if git is None:
        await chat.out.say("Branch worktrees are not available in this bot.", plain=True)
        return
    refusal = chat_topics.may_change(chat)
    if refusal:  # the bound profile's worktrees are its users' only, listing included
        await chat.out.say(refusal, plain=True)
        return
    word, _, rest = argument.partition(" ")
    try:
        if not argument:
            await _list(chat, git)
        elif word == "rm":
            await _ask_remove(chat, git, rest.strip())
        elif argument == "off":
            await _switch(chat, git, "")
        else:
            await _switch(chat, git, argument)
    except GitError as error:
        if "not a git repository" in str(error):
            folder = Path(chat.config.profiles[_profile_name(chat)].working_directory).name
            await chat.out.say(
                f"Branch worktrees need a git repository, and {folder} is not one. (Ask "
                "Codex to run “git init” and commit, and /branch works from then on.)",
                plain=True,
            )
            return
        await chat.out.say(_git_said(chat, error, argument), plain=True)


def _git_said(chat: Chat, error: GitError, argument: str) -> str:
    """What git refused, for the chat: a branch the repository itself has checked out said
    in words, and every path git names shortened to its last part (the server's folders are
    not the user's business: profiles are shown by folder name)."""
    said = str(error)
    repository = chat.config.profiles[_profile_name(chat)].working_directory
    folder = Path(repository).name
    if "is already checked out at" in said and said.rstrip("'").endswith(repository):
        return (
            f"{quoted(argument)} is the branch the repository itself ({folder}) has checked "
            "out, so it needs no worktree: /branch off works there."
        )
    said = _QUOTED_PATH.sub(lambda path: f"'{Path(path.group(1)).name}'", said)
    return f"Git said: {one_line(said, 300)}"


_QUOTED_PATH: Final = re.compile(r"'(/[^']*)'")
"""An absolute path as git quotes it in its messages."""


async def _has_worktree(chat: Chat, git: GitWorktrees, folder: Path) -> bool:
    """Whether `folder` is a worktree of the profile's repository (symlinks resolved)."""
    profile = chat.config.profiles[_profile_name(chat)]
    worktrees = await git.worktrees(Path(profile.working_directory))
    real = await disk.run_sync(os.path.realpath, folder)
    known = [await disk.run_sync(os.path.realpath, w.path) for w in worktrees]
    return real in known


def _profile_name(chat: Chat) -> str:
    binding = chat_topics.bound(chat)
    return binding.profile if binding is not None else chat.state.profile


async def _list(chat: Chat, git: GitWorktrees) -> None:
    name = _profile_name(chat)
    profile = chat.config.profiles[name]
    repository = Path(profile.working_directory)
    folder = profile.worktrees_folder()
    binding = chat_topics.bound(chat)
    current = binding.branch if binding is not None else ""
    lines = []
    for worktree in await git.worktrees(repository):
        path = Path(worktree.path)
        if path == repository:
            label = f"{worktree.branch} (the repository itself)"
            here = not current
        elif path.is_relative_to(folder):
            label = worktree.branch
            here = worktree.branch == current
        else:
            continue  # a worktree the bot did not make
        mark = "•" if here else "◦"
        lines.append(f"{mark} {label}: {_describe(worktree)}" + (" (here)" if here else ""))
    await chat.out.say(
        f"Branches of profile {name} ({repository.name}):\n"
        + "\n".join(lines)
        + "\n\n/branch NAME works on a branch here; /branch rm NAME removes its worktree.",
        plain=True,
    )


async def _switch(chat: Chat, git: GitWorktrees, name: str) -> None:
    """Bind this chat or topic to the worktree of branch `name` ("": the repository)."""
    if chat.request is not None:
        await chat.out.say(
            "Can't switch branches while your request runs; /cancel it first.", plain=True
        )
        return
    binding = chat_topics.bound(chat)
    if not name and (binding is None or not binding.branch):
        await chat.out.say(
            f"This {chat_topics.place(chat)} already works in the repository itself.", plain=True
        )
        return
    profile_name = _profile_name(chat)
    profile = chat.config.profiles[profile_name]
    created = ""
    if name:
        if name in _RESERVED or not await git.branch_name_valid(name):
            await chat.out.say(f"{quoted(name)} is not a valid branch name.", plain=True)
            return
        folder = chat_topics.worktree_of(profile, name)
        if not await _has_worktree(chat, git, folder):
            new = await git.add(Path(profile.working_directory), folder, name)
            created = "new branch, " if new else ""
            created += f"new worktree {folder}"
    if not await chat_topics.set_binding(chat, _branch_binding(chat, profile_name, name)):
        return
    await chat_topics.follow(chat)
    where = chat_topics.place(chat)
    if not name:
        await chat.out.say(
            f"This {where} works in the repository itself again (profile {profile_name}).",
            plain=True,
        )
        return
    made = f" ({created})" if created else ""
    whose = "your" if chat.key.chat_id > 0 else "everyone's"
    await chat.out.say(
        f"This {where} now works on branch {name}{made}: {whose} requests here run in its "
        "worktree, on a new Codex thread.",
        plain=True,
    )


def _branch_binding(chat: Chat, profile: str, branch: str) -> Binding | None:
    """The binding after a switch to `branch` ("": the repository itself): one ``/branch``
    made alone goes away with its branch; one ``/bind`` made keeps its profile."""
    binding = chat_topics.bound(chat)
    for_branch = binding is None or binding.for_branch
    if not branch and for_branch:
        return None
    return Binding(profile=profile, branch=branch, by=chat.key.user_id, for_branch=for_branch)


async def _ask_remove(chat: Chat, git: GitWorktrees, name: str) -> None:
    if not name:
        await chat.out.say("Which branch? /branch rm NAME", plain=True)
        return
    profile = chat.config.profiles[_profile_name(chat)]
    folder = chat_topics.worktree_of(profile, name)
    problem = await _removal_problem(chat, git, folder, name)
    if problem:
        await chat.out.say(problem, plain=True)
        return
    token = secrets.token_urlsafe(9)
    chat.confirmations = {token: name}  # one question at a time
    await chat.out.show(
        f"branch-rm-{token}",
        f"Remove the worktree of branch {name} ({folder})? The branch itself stays in "
        "the repository.",
        (
            (
                Button("🗑 Remove", f"{_PREFIX}{token}:yes"),
                Button("Keep it", f"{_PREFIX}{token}:no"),
            ),
        ),
    )


async def _removal_problem(chat: Chat, git: GitWorktrees, folder: Path, name: str) -> str:
    """Why the worktree at `folder` may not be removed now ("" when it may)."""
    if not await _has_worktree(chat, git, folder):
        return f"There is no worktree of branch {name}. /branch lists them."
    lock = chat.deps.worktree_locks.get(str(folder))
    if lock is not None and lock.locked():
        return f"A request is running in the worktree of {name}; try again when it has finished."
    if (await git.state(folder)).dirty:
        return (
            f"The worktree of {name} has uncommitted changes, so it stays. Commit or discard "
            "them first (ask Codex to), then /branch rm again."
        )
    return ""


async def press(chat: Chat, pressed: InboundCallback) -> None:
    """A press on a ``/branch rm`` button."""
    token, _, choice = pressed.data[len(_PREFIX) :].partition(":")
    name = chat.confirmations.pop(token, None)
    git = _git(chat)
    slot = f"branch-rm-{token}"
    if name is None or git is None or chat_topics.may_change(chat):
        await chat.out.answer(pressed, "That question is no longer open.")
        return
    profile = chat.config.profiles[_profile_name(chat)]
    folder = chat_topics.worktree_of(profile, name)
    if choice != "yes":
        await chat.out.answer(pressed, "Kept.")
        await chat.out.close(slot, f"Kept the worktree of {name}.", message_id=pressed.message_id)
        return
    await chat.out.answer(pressed, "Removing…")
    try:
        problem = await _removal_problem(chat, git, folder, name)
        if not problem:
            await git.remove(Path(profile.working_directory), folder)
    except GitError as error:
        problem = _git_said(chat, error, name)
    if problem:
        await chat.out.close(slot, problem, message_id=pressed.message_id)
        return
    binding = chat_topics.bound(chat)
    if binding is not None and binding.branch == name:
        await chat_topics.set_binding(chat, _branch_binding(chat, binding.profile, ""))
        await chat_topics.follow(chat)
    await chat.out.close(
        slot,
        f"Removed the worktree of {name}; the branch stays in the repository.",
        message_id=pressed.message_id,
    )
