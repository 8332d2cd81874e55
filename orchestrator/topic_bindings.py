"""What a chat or forum topic is bound to: ``state_dir/topics.json``.

A binding (``/bind PROFILE``, ``/branch NAME``) belongs to a chat or a forum topic, not to one
user: everyone who writes in the topic runs on its profile (and branch worktree), which is
what a team that keeps one topic per repository expects. Sessions stay per user; each one
follows the binding when its next request starts (`actors.chat_topics`).

The file is read once at start and kept in memory; every change is written atomically
(`orchestrator.disk`). A damaged file (or a symlink, folder or FIFO in its place) is set
aside (``.corrupt-<time>``) and logged, and the bot starts with no bindings: a topic then
falls back to its users' own profiles, never to a profile someone may not use.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final, final

import msgspec
import trio

from orchestrator import disk

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Binding", "TopicBindings"]

logger: Final = logging.getLogger(__name__)


class Binding(msgspec.Struct, frozen=True, kw_only=True):
    """A chat's or topic's binding.

    Attributes:
        profile: the profile everyone in the topic runs on.
        branch: the branch worktree of that profile's repository it runs in ("" for the
            profile's working directory itself).
        by: the Telegram user id who set it (shown by /status).
        for_branch: only ``/branch`` made it (no ``/bind``): going back to the repository
            removes it, instead of leaving the place bound to the profile.
    """

    profile: str
    branch: str = ""
    by: int = 0
    for_branch: bool = False


class _File(msgspec.Struct, frozen=True, kw_only=True):
    version: int = 1
    bindings: dict[str, Binding] = {}


_DECODER: Final = msgspec.json.Decoder(_File)
_ENCODER: Final = msgspec.json.Encoder()


def _place(chat_id: int, thread_id: int | None) -> str:
    return str(chat_id) if thread_id is None else f"{chat_id}-t{thread_id}"


@final
class TopicBindings:
    """The bindings of every chat and topic (one per process, shared by the chat actors).

    `load` once before the chats start; `get` is then a lookup in memory, and `set` writes
    the file before it returns. Raises `OSError` from `set` when the disk refuses the write
    (the binding is kept in memory all the same).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._bindings: dict[str, Binding] = {}
        self._writing = trio.Lock()
        """One write at a time; each writes the newest bindings (trio's locks are fair)."""

    async def load(self) -> None:
        """Read the file; a damaged one is set aside and logged, never raised."""
        self._bindings = await disk.run_sync(self._load_blocking)

    def _load_blocking(self) -> dict[str, Binding]:
        try:
            return dict(_DECODER.decode(disk.read_regular(self.path)).bindings)
        except FileNotFoundError:
            return {}
        except disk.DAMAGED as error:
            moved_to = disk.set_aside(self.path)
            logger.error(
                "topic bindings %s are damaged (%s); moved them to %s, no topic is bound",
                self.path,
                error,
                moved_to.name,
            )
            return {}

    def get(self, chat_id: int, thread_id: int | None) -> Binding | None:
        """The binding of the chat `chat_id` (topic `thread_id`), if any."""
        return self._bindings.get(_place(chat_id, thread_id))

    async def set(self, chat_id: int, thread_id: int | None, binding: Binding | None) -> None:
        """Bind the chat or topic (None: unbind) and write the file."""
        place = _place(chat_id, thread_id)
        if binding is None:
            self._bindings.pop(place, None)
        else:
            self._bindings[place] = binding
        async with self._writing:
            data = _ENCODER.encode(_File(bindings=dict(self._bindings)))
            await disk.run_sync(disk.write_atomically, self.path, data)
