"""The chat's /model, /effort and /usage: which model and reasoning effort its turns use, and
what they cost.

This module owns the words and the session changes of those commands and of their buttons
(``md:`` and ``ef:``, `actors.button_data` holds the codec). A choice is kept in the
session (`SessionState.model`, `SessionState.effort`), so it survives restarts, and goes out
with every turn of this chat's next requests, every role of plan mode included
(`actors.role_caller`: ``CodexJob.model_choice`` and ``effort``; the app-server edge sends
them with ``turn/start``, where they persist on the thread, and sends the thread's own back
once the chat returns to the default). ``/model default`` and ``/effort default`` go back to
the profile's model and the model's own effort.

The models and their efforts come from Codex (``model/list`` through the pool); only
``codex app-server`` lists them, so on the MCP backend these commands say that they need it
and show the profile's configured model. /usage shows the tokens of the last run and of the
session (from the session counters that `actors.chat` keeps) and the account's rate limits
with their reset times where Codex reports them (``account/rateLimits/read``, else the last
``account/rateLimits/updated``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import msgspec

from actors.button_data import EffortButton, ModelButton, effort_data, model_data
from actors.chat_texts import context_line
from orchestrator.messages import Button
from orchestrator.words import plural, quoted

if TYPE_CHECKING:
    from actors.chat import Chat
    from orchestrator.messages import InboundCallback, Keyboard
    from orchestrator.ports import ModelChoice, RateLimits, RateLimitWindow

__all__ = ["NEEDS_APP_SERVER", "on_command", "press", "usage_text"]

NEEDS_APP_SERVER: Final = (
    'This needs the app-server backend (backend = "app-server" under [codex]).'
)

DEFAULT_WORDS: Final = ("default", "reset", "profile")
"""Arguments that go back to the default."""

_DATA_LIMIT: Final = 64
"""Bytes of a button's callback data (Telegram's limit)."""

_NOT_LISTED: Final = "Codex did not list its models just now; please try again in a moment."


async def on_command(chat: Chat, name: str, argument: str) -> None:
    """``/model [NAME|default]``, ``/effort [LEVEL|default]``, ``/usage``."""
    match name:
        case "model":
            await _model(chat, argument)
        case "effort":
            await _effort(chat, argument.lower())
        case _:
            await chat.out.say(await usage_text(chat), plain=True)


def _app_server(chat: Chat) -> bool:
    return chat.config.codex.backend == "app-server"


def _profile_model(chat: Chat) -> str:
    return chat.profile.model or "Codex's configured default"


def _profile_default(chat: Chat) -> str:
    """The model a chat without a choice runs, in words."""
    model = chat.profile.model
    return (
        f"the profile's, {model}"
        if model
        else "Codex's configured default, as the profile names none"
    )


def _current_model(chat: Chat, models: tuple[ModelChoice, ...]) -> ModelChoice | None:
    """The model the chat's next turn runs: its choice, the profile's, or Codex's default."""
    wanted = chat.state.model or chat.profile.model
    for model in models:
        if (wanted and model.id == wanted) or (not wanted and model.is_default):
            return model
    return None


def _later(chat: Chat) -> str:
    return " (from the next request)" if chat.request is not None else ""


async def _model(chat: Chat, argument: str) -> None:
    if not _app_server(chat):
        await chat.out.say(
            f"{NEEDS_APP_SERVER} This profile uses {_profile_model(chat)}.", plain=True
        )
        return
    models = await chat.deps.pool.models()
    if not argument:
        if models is None:
            await chat.out.say(_NOT_LISTED, plain=True)
            return
        await chat.out.say(_model_menu(chat, models), plain=True, keyboard=_model_keys(models))
        return
    await _set_model(chat, argument, models)


def _model_menu(chat: Chat, models: tuple[ModelChoice, ...]) -> str:
    chosen = chat.state.model
    now = f"{chosen} (chosen for this chat)" if chosen else _profile_default(chat)
    lines = [f"Model: {now}.", "Models Codex offers:"]
    lines += [
        f"{'•' if model is _current_model(chat, models) else '◦'} {model.id}"
        + (f" ({model.name})" if model.name and model.name != model.id else "")
        + (" (Codex's default)" if model.is_default else "")
        for model in models
    ]
    lines.append("Pick one, or /model NAME; /model default goes back to the profile's.")
    return "\n".join(lines)


def _model_keys(models: tuple[ModelChoice, ...]) -> Keyboard:
    buttons = [
        Button(model.id, model_data(model.id))
        for model in models
        if len(model_data(model.id).encode()) <= _DATA_LIMIT
    ]
    rows = [tuple(buttons[index : index + 2]) for index in range(0, len(buttons), 2)]
    return (*rows, (Button("↩ Profile's default", model_data("")),))


async def _set_model(chat: Chat, argument: str, models: tuple[ModelChoice, ...] | None) -> None:
    if argument.lower() in DEFAULT_WORDS or not argument:
        chat.state = msgspec.structs.replace(chat.state, model="", effort="")
        await chat.save()
        await chat.out.say(
            f"Model: back to {_profile_default(chat)}{_later(chat)}. "
            "Reasoning effort: the model's default.",
            plain=True,
        )
        return
    known = {model.id: model for model in models or ()}
    if models is not None and argument not in known:
        offered = ", ".join(known) or "none"
        await chat.out.say(
            f"Codex offers no model named {quoted(argument)}. Models: {offered}.", plain=True
        )
        return
    if models is None:
        await chat.out.say(_NOT_LISTED, plain=True)
        return
    effort = chat.state.effort
    note = ""
    if effort and effort not in known[argument].efforts:
        effort = ""
        note = " Reasoning effort: back to the model's default (it has no such effort)."
    chat.state = msgspec.structs.replace(chat.state, model=argument, effort=effort)
    await chat.save()
    await chat.out.say(f"Model set to {argument} for this chat{_later(chat)}.{note}", plain=True)


async def _effort(chat: Chat, argument: str) -> None:
    if not _app_server(chat):
        await chat.out.say(NEEDS_APP_SERVER, plain=True)
        return
    models = await chat.deps.pool.models()
    model = _current_model(chat, models) if models is not None else None
    if argument in DEFAULT_WORDS:
        chat.state = msgspec.structs.replace(chat.state, effort="")
        await chat.save()
        default = f" ({model.default_effort})" if model and model.default_effort else ""
        await chat.out.say(
            f"Reasoning effort: back to the model's default{default}{_later(chat)}.", plain=True
        )
        return
    if model is None:
        await chat.out.say(
            _NOT_LISTED if models is None else "Codex does not list the model this chat uses.",
            plain=True,
        )
        return
    if not model.efforts:
        await chat.out.say(f"{model.id} has no reasoning effort to choose.", plain=True)
        return
    if not argument:
        now = chat.state.effort or f"the model's default ({model.default_effort or 'its own'})"
        keys = tuple(
            (Button(("• " if effort == chat.state.effort else "") + effort, effort_data(effort)),)
            for effort in model.efforts
        )
        await chat.out.say(
            f"Reasoning effort of {model.id}: {now}. Pick one, or /effort LEVEL; "
            "/effort default goes back to the model's.",
            plain=True,
            keyboard=(*keys, (Button("↩ Model's default", effort_data("")),)),
        )
        return
    if argument not in model.efforts:
        await chat.out.say(
            f"{model.id} has no reasoning effort {quoted(argument)}. It has: "
            f"{', '.join(model.efforts)}.",
            plain=True,
        )
        return
    chat.state = msgspec.structs.replace(chat.state, effort=argument)
    await chat.save()
    await chat.out.say(f"Reasoning effort set to {argument}{_later(chat)}.", plain=True)


async def press(chat: Chat, pressed: InboundCallback, button: ModelButton | EffortButton) -> None:
    """A model or effort button: the same as the command with that argument."""
    if isinstance(button, ModelButton):
        await chat.out.answer(pressed, button.model or "Profile's default")
        if not _app_server(chat):
            await chat.out.say(NEEDS_APP_SERVER, plain=True)
            return
        await _set_model(chat, button.model, await chat.deps.pool.models())
        return
    await chat.out.answer(pressed, button.effort or "Model's default")
    await _effort(chat, button.effort or "default")


# --------------------------------------------------------------------- /usage


async def usage_text(chat: Chat) -> str:
    """Tokens of the last run and of the session, and the account's rate limits."""
    lines: list[str] = []
    usage = chat.state.last_usage
    if usage is None:
        lines.append("Last run: no tokens counted yet.")
    else:
        lines.append(
            f"Last run: {usage.input_tokens:,} tokens in ({usage.cached_input_tokens:,} "
            f"cached), {usage.output_tokens:,} out, {usage.total_tokens:,} in all."
        )
    context = chat.state.context_now
    if context is not None:
        lines.append(
            f"{context_line(context)} in this conversation's Codex session; /new starts a "
            "fresh one."
        )
    counters = chat.state.counters
    lines.append(
        f"In this chat, all told: {counters.input_tokens:,} tokens in, "
        f"{counters.output_tokens:,} out, over {plural(counters.runs, 'run')}."
    )
    if not _app_server(chat):
        lines.append(f"Rate limits: {NEEDS_APP_SERVER}")
        return "\n".join(lines)
    limits = await chat.deps.pool.rate_limits()
    lines += _limit_lines(limits)
    return "\n".join(lines)


def _limit_lines(limits: RateLimits | None) -> list[str]:
    if limits is None:
        return ["Rate limits: Codex reports none for this login."]
    title = f"Rate limits ({limits.name}):" if limits.name else "Rate limits:"
    windows = [w for w in (limits.primary, limits.secondary) if w is not None]
    return [title, *(f"• {_window_text(window)}" for window in windows)]


def _window_text(window: RateLimitWindow) -> str:
    span = _span(window.window_minutes)
    text = f"{window.used_percent}% used" + (f" of the {span} window" if span else "")
    if window.resets_at is not None:
        when = datetime.fromtimestamp(window.resets_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        text += f", resets {when}"
    return text


def _span(minutes: int | None) -> str:
    """``300`` → ``5-hour``, ``10080`` → ``7-day``."""
    if not minutes:
        return ""
    if minutes % 1440 == 0:
        return f"{minutes // 1440}-day"
    if minutes % 60 == 0:
        return f"{minutes // 60}-hour"
    return f"{minutes}-minute"
