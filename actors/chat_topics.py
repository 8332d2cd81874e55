"""Topics as projects: ``/bind PROFILE`` binds a chat or forum topic to a profile.

In a supergroup with topics each topic is its own session per user (`SessionKey`). A
binding belongs to the topic, not to a user (`orchestrator.topic_bindings`): a team keeps one
topic per repository, and everyone who writes there runs on its profile (and on its branch
worktree, ``/branch``), whatever their own ``/profile`` says elsewhere. Profiles stay
permissions:

- Only a user allowed on a profile may bind a topic to it, and only a user allowed on the
  profile a topic is bound to may change or remove that binding (a user kept out of it
  cannot re-point the topic).
- A user not allowed on the bound profile gets a plain refusal in that topic and never runs
  there (no Codex call); their other chats are untouched.
- A topic without a binding runs each user's own profile (new topics start on the default).

Each user's session follows the binding when their next request starts (`follow`): a
changed profile or worktree starts a fresh Codex thread there (the old one stays in
``/sessions``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec

from actors import chat_commands
from orchestrator import disk
from orchestrator.messages import TraceRecord
from orchestrator.topic_bindings import Binding
from orchestrator.words import quoted

if TYPE_CHECKING:
    from actors.chat import Chat
    from orchestrator.config import Profile

__all__ = [
    "bind",
    "bound",
    "follow",
    "may_change",
    "place",
    "profile_is_bound",
    "set_binding",
    "status_lines",
    "worktree_of",
]

OFF: Final = "off"
"""``/bind off``: the topic runs each user's own profile again."""


def place(chat: Chat) -> str:
    """What a binding binds here, in words. A forum's General topic has no topic id, and is
    bound (and keeps its sessions) on its own, like any other topic, not as the whole
    chat."""
    if chat.key.thread_id is not None:
        return "topic"
    return "General topic" if chat.forum else "chat"


def bound(chat: Chat) -> Binding | None:
    """This chat's or topic's binding, if any."""
    topics = chat.deps.topics
    return None if topics is None else topics.get(chat.key.chat_id, chat.key.thread_id)


def may_change(chat: Chat) -> str:
    """Why this user may not change the binding here ("" when they may)."""
    binding = bound(chat)
    if binding is None:
        return ""
    profile = chat.config.profiles.get(binding.profile)
    if profile is None or profile.allows(chat.key.user_id):
        return ""
    return (
        f"This {place(chat)} is bound to profile {binding.profile}; only someone who may use "
        "that profile can change it."
    )


def worktree_of(profile: Profile, branch: str) -> Path:
    """Where the worktree of `branch` of `profile`'s repository lives."""
    return profile.worktrees_folder() / branch


async def set_binding(chat: Chat, binding: Binding | None) -> bool:
    """Store this chat's or topic's binding; False (and the user told) if the disk refused."""
    topics = chat.deps.topics
    if topics is None:
        await chat.out.say("Bindings are not available in this bot.", plain=True)
        return False
    try:
        await topics.set(chat.key.chat_id, chat.key.thread_id, binding)
    except OSError as error:
        await chat.out.say(
            f"The binding is kept until the bot restarts, but it could not be saved: "
            f"{error.strerror or error}.",
            plain=True,
        )
    chat.out.trace(
        TraceRecord(
            event="command",
            command="bind",
            detail=f"{binding.profile} {binding.branch}".strip() if binding else "off",
        )
    )
    return True


async def bind(chat: Chat, argument: str) -> None:
    """``/bind``: show; ``/bind PROFILE``: bind; ``/bind off``: unbind."""
    binding = bound(chat)
    where = place(chat)
    if not argument:
        if binding is None:
            await chat.out.say(
                f"This {where} is not bound: each of you runs on your own profile (/profile). "
                f"/bind PROFILE binds it for everyone here.",
                plain=True,
            )
        else:
            branch = f", branch {binding.branch}" if binding.branch else ""
            await chat.out.say(
                f"This {where} is bound to profile {binding.profile}{branch} for everyone "
                f"here. /bind off unbinds it.",
                plain=True,
            )
        return
    refusal = may_change(chat)
    if refusal:
        await chat.out.say(refusal, plain=True)
        return
    if chat.request is not None:
        await chat.out.say("Can't rebind while your request runs; /cancel it first.", plain=True)
        return
    if argument.lower() == OFF:
        if binding is None:
            await chat.out.say(f"This {where} is not bound.", plain=True)
            return
        if await set_binding(chat, None):
            await follow(chat)
            await chat.out.say(
                f"This {where} is no longer bound: each of you goes back to your own profile "
                "and mode, on a new Codex thread (yours now, everyone else's with their next "
                "request).",
                plain=True,
            )
        return
    names = chat.usable_profiles()
    if argument not in names:  # a profile the user may not use is answered as unknown
        await chat.out.say(
            f"No profile named {quoted(argument)}. Profiles: {', '.join(names)}", plain=True
        )
        return
    if await set_binding(chat, Binding(profile=argument, by=chat.key.user_id)):
        await follow(chat)
        profile = chat.config.profiles[argument]
        folder = Path(profile.working_directory).name
        await chat.out.say(
            f"This {where} is now bound to profile {argument} ({folder}): everyone's next "
            f"request here runs there, on a new Codex thread. Whoever comes from another "
            f"profile runs in its mode, {profile.default_mode} (/mode changes it); /bind off "
            "puts each of you back on your own profile and mode.",
            plain=True,
        )


async def follow(chat: Chat) -> bool:
    """Before a request starts: put the session on the binding's profile and worktree (a new
    Codex thread when they change). False, and the user told, when it must not run here."""
    binding = bound(chat)
    state = chat.state
    own_profile, own_mode = state.own_profile, state.own_mode
    if binding is None:
        target, workspace = state.profile, ""
        if own_profile:  # a binding had put this session elsewhere: back to the user's own
            usable = chat.usable_profiles()
            target = own_profile if own_profile in usable else chat.config.default_profile
        own_profile, own_mode = "", ""
    else:
        profile = chat.config.profiles.get(binding.profile)
        if profile is None:
            await chat.out.say(
                f"This {place(chat)} is bound to profile {binding.profile}, which no longer "
                "exists, so your message was not run. /bind another profile, or /bind off.",
                plain=True,
            )
            return False
        if not profile.allows(chat.key.user_id):
            chat.out.trace(TraceRecord(event="refusal", detail=f"bound to {binding.profile}"))
            await chat.out.say(
                f"This {place(chat)} is bound to profile {binding.profile}, which you may not "
                "use, so your message was not run. Ask the bot's owner for access, or write in "
                "another topic.",
                plain=True,
            )
            return False
        target = binding.profile
        workspace = str(worktree_of(profile, binding.branch)) if binding.branch else ""
        if workspace and not await disk.run_sync(os.path.isdir, workspace):
            await chat.out.say(
                f"The worktree of branch {binding.branch} is gone, so your message was not "
                f"run. /branch {binding.branch} makes it again; /branch off goes back to the "
                "repository itself.",
                plain=True,
            )
            return False
        if target != state.profile and not own_profile:
            own_profile, own_mode = state.profile, state.mode
    if (target, workspace) == (state.profile, state.workspace):
        if (own_profile, own_mode) != (state.own_profile, state.own_mode):
            chat.state = msgspec.structs.replace(state, own_profile="", own_mode="")
            await chat.save()
        return True
    await chat_commands.release_thread(chat)
    mode = state.mode if target == state.profile else chat.config.profiles[target].default_mode
    if binding is None and state.own_mode and target == state.own_profile:
        mode = state.own_mode
    chat.state = msgspec.structs.replace(
        state,
        profile=target,
        mode=mode,
        workspace=workspace,
        own_profile=own_profile,
        own_mode=own_mode,
        developer_thread_id=None,
        developer_worker_id=None,
        summary="",
    )
    await chat.save()
    return True


def status_lines(chat: Chat) -> list[str]:
    """/status: what this chat or topic is bound to."""
    binding = bound(chat)
    if binding is None:
        return []
    everyone = " (for everyone here)" if chat.key.chat_id < 0 else ""
    if binding.for_branch:
        return [f"Branch: {binding.branch}{everyone}"]
    branch = f", branch {binding.branch}" if binding.branch else ""
    return [f"Bound {place(chat)}: profile {binding.profile}{branch}{everyone}"]


def profile_is_bound(chat: Chat) -> str:
    """The answer to ``/profile NAME`` where a binding decides the profile."""
    binding = bound(chat)
    name = binding.profile if binding else chat.state.profile
    if binding is not None and binding.for_branch:
        return (
            f"This {place(chat)} works on branch {binding.branch} of profile {name} "
            "(/branch), so /profile does not change it here. /branch off goes back to the "
            "repository; then /profile works again."
        )
    return (
        f"This {place(chat)} is bound to profile {name} (/bind), so /profile does not change "
        "it here. Use /profile in another chat, or /bind to change the binding."
    )
