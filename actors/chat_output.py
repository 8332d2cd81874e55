"""Where one chat's words and traces go: the sender and the tracer, addressed to one session key.

The chat actor, the request it serves and its approvals all speak through one `ChatOutput`,
so every message carries the chat's ids and every trace record its chat, user and topic.

- Messages go to the sender's inbox with ``send``: when the sender is full, only this chat
  waits (the router never waits for a chat).
- A reply (`say`: a result, a failure, a question, a notice) is kept in the durable outbox
  (`actors.telegram_outbox`) until Telegram took it, so a SIGKILL while it waits in the
  sender's inbox loses nothing: the next start sends it. Without `write_behind` it is
  written (and fsync'd) before it is handed over. With `write_behind` (the chat's) it is
  handed over at once and its entry written while the sender sends it, then synced
  (`actors.chat_sync`): the entry's number is taken first, and the sender's deletion of a
  delivered entry waits for its write. Progress, typing and callback answers stay lossy:
  they are not replies.
- A typing action is best effort: it is handed over only if the sender's inbox has room at
  once, and shed (counted in `typing_shed`) otherwise, so a typing tick never waits and never
  piles up behind a busy sender on the chat's side.
- Trace records are built by the caller as `TraceRecord` (so mypy checks their fields);
  `trace` fills in the session key's ids and hands the record over without blocking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import msgspec

from orchestrator.channels import ShedCounter, try_send
from orchestrator.messages import (
    AnswerCallback,
    CloseLive,
    SendChatAction,
    SenderMsg,
    SendReply,
    UpdateLive,
)
from orchestrator.recent import Recent

if TYPE_CHECKING:
    from collections.abc import Callable

    import trio

    from actors.telegram_outbox import Outbox
    from orchestrator.messages import InboundCallback, Keyboard, SessionKey, TraceRecord
    from orchestrator.ports import TraceEmit

    WriteBehind = Callable[[Outbox, int, SendReply], None]
    """Writes the outbox entry (a reserved number) of a reply already handed to the sender."""

__all__ = ["KEYBOARDS_KEPT", "ChatOutput", "send_durably"]

KEYBOARDS_KEPT: Final = 16
"""Replies per chat whose buttons `ChatOutput.change_buttons` can still change."""


@dataclass
class ChatOutput:
    """The sender and the tracer as one chat uses them (a handle: a channel and a callback).
    Only `quoting` changes: the chat sets it from each message in a group."""

    key: SessionKey
    sender: trio.MemorySendChannel[SenderMsg]
    emit: TraceEmit
    typing_shed: ShedCounter[SenderMsg] = field(default_factory=ShedCounter)
    """Typing actions not handed over because the sender's inbox was full."""
    outbox: Outbox | None = None
    """Where replies are kept until Telegram took them (None: the sender keeps them)."""
    quoting: int | None = None
    """In a group, the user's latest message: what the chat's answers quote, so everyone in
    the group sees whose they are (None in a private chat: nobody to tell apart)."""
    write_behind: WriteBehind | None = None
    """Writes a reply's reserved outbox entry while the sender already has the reply, and
    syncs it (the chat: `actors.chat_sync.SyncBehind`); None: every entry is on disk and
    fsync'd before its reply is handed over."""
    keyboards: Recent[str, Keyboard] = field(default_factory=lambda: Recent(KEYBOARDS_KEPT))
    """The buttons of the replies said with a `keyboard_slot`, by slot (the last
    `KEYBOARDS_KEPT`): what `change_buttons` starts from."""
    rewrites: Recent[str, tuple[str, str]] = field(default_factory=lambda: Recent(KEYBOARDS_KEPT))
    """The `rewrite` of the replies said with one, by `keyboard_slot`."""

    async def say(
        self,
        markdown: str,
        *,
        plain: bool = False,
        silent: bool = False,
        keyboard: Keyboard = (),
        quoting: int | None = None,
        keyboard_slot: str = "",
        rewrite: tuple[str, str] = ("", ""),
    ) -> None:
        """Send a message that must arrive (a result, an answer to a command, a notice);
        `silent`: without a notification on the phone; `keyboard`: buttons under it;
        `quoting`: the user's message it answers (default: `ChatOutput.quoting`);
        `keyboard_slot`: a name to change its buttons by later (`change_buttons`), which
        also rewrites the part `rewrite[0]` of `markdown` as `rewrite[1]` (a note about
        what the buttons act on). On disk (the outbox) before it is handed over; a disk that
        refuses leaves it to the sender (which says so)."""
        if keyboard_slot:
            self.keyboards.remember(keyboard_slot, keyboard)
            if rewrite[0]:
                self.rewrites.remember(keyboard_slot, rewrite)
        reply = SendReply(
            chat_id=self.key.chat_id,
            thread_id=self.key.thread_id,
            markdown=markdown,
            plain=plain,
            silent=silent,
            keyboard=keyboard,
            reply_to_message_id=self.quoting if quoting is None else quoting,
            keyboard_slot=keyboard_slot,
        )
        await send_durably(self.sender, self.outbox, reply, write_behind=self.write_behind)

    async def answer(self, press: InboundCallback, text: str) -> None:
        """Answer a button press (stops its spinner; `text` shows as a toast)."""
        await self.sender.send(AnswerCallback(callback_query_id=press.callback_query_id, text=text))

    async def show(
        self,
        slot: str,
        text: str,
        keyboard: Keyboard = (),
        *,
        silent: bool = False,
        shown_to: trio.MemorySendChannel[int] | None = None,
        document: bytes = b"",
        document_name: str = "",
        document_caption: str = "",
    ) -> None:
        """Show or update the live message `slot` (the sender coalesces the edits); edits never
        notify, and `silent` makes its first showing silent too (progress). `shown_to` is told
        the message's id whenever it is sent anew. With `document`, that file is sent first,
        and the message only once it was delivered. In a group, its first showing quotes the
        user's latest message (`quoting`)."""
        await self.sender.send(
            UpdateLive(
                chat_id=self.key.chat_id,
                thread_id=self.key.thread_id,
                slot=slot,
                text=text,
                keyboard=keyboard,
                silent=silent,
                shown_to=shown_to,
                document=document,
                document_name=document_name,
                document_caption=document_caption,
                reply_to_message_id=self.quoting,
            )
        )

    async def close(self, slot: str, text: str | None, *, message_id: int | None = None) -> None:
        """Give the live message `slot` its final text (and take its buttons away); None
        deletes it. `message_id`: the message, when it was shown before a restart."""
        await self.sender.send(
            CloseLive(
                chat_id=self.key.chat_id,
                slot=slot,
                final_text=text,
                delete=text is None,
                message_id=message_id,
            )
        )

    async def change_buttons(self, slot: str, keyboard: Keyboard) -> None:
        """Give the reply said with `keyboard_slot` `slot` the buttons `keyboard` (its text
        stays, but for the part it was said to `rewrite`), and forget the slot."""
        self.keyboards.pop(slot, None)
        text_from, text_to = self.rewrites.pop(slot, ("", ""))
        await self.sender.send(
            CloseLive(
                chat_id=self.key.chat_id,
                slot=slot,
                keep_text=True,
                keyboard=keyboard,
                text_from=text_from,
                text_to=text_to,
            )
        )

    def typing(self) -> bool:
        """Hand one "typing…" action to the sender if it has room now; False if shed."""
        action = SendChatAction(chat_id=self.key.chat_id, thread_id=self.key.thread_id)
        return try_send(self.sender, action, self.typing_shed)

    def trace(self, record: TraceRecord) -> None:
        """Emit `record` with this chat's chat, user and topic ids filled in."""
        self.emit(
            msgspec.structs.replace(
                record,
                chat_id=self.key.chat_id,
                user_id=self.key.user_id,
                thread_id=self.key.thread_id,
            )
        )


async def send_durably(
    sender: trio.MemorySendChannel[SenderMsg],
    outbox: Outbox | None,
    reply: SendReply,
    *,
    write_behind: WriteBehind | None = None,
) -> None:
    """Hand `reply` to the sender once it is in `outbox` (a kill while it waits in the
    sender's inbox then loses nothing); a disk that refuses leaves it to the sender, which
    tries to keep it itself and says so. With `write_behind`, the reply is handed over with
    a reserved entry number at once, and `write_behind` writes the entry meanwhile (see
    `ChatOutput.write_behind`)."""
    number = None
    if outbox is not None and write_behind is not None:
        number = outbox.reserve()
        write_behind(outbox, number, reply)
    elif outbox is not None:
        number = await outbox.put(reply)
    if number is not None:
        reply = msgspec.structs.replace(reply, outbox_entry=number)
    await sender.send(reply)
