"""trio_floor_bot: the orchestrator's own edges on trio with nothing between them, for overhead.py.

The stdlib reference bot (bench/reference_bot.py) is the floor of any bot. This one is the
floor of *this* bot's building blocks: the same trio event loop, the same Telegram client
(`orchestrator.edges.telegram_http` over the lean HTTP/1.1 client) and the same Codex MCP edge
(`orchestrator.edges.codex_mcp`, its JSON-RPC line transport and reader task), but no actors,
no allow-list, no sessions, no durability, no rate limits and no rendering. One task long-polls
getUpdates and starts one task per text message (a bot must serve chats side by side), which
runs one Codex turn and sends its answer.

So overhead.py splits the orchestrator's gap to the reference in two: what trio and the edges
cost (this bot against the reference), and what the product adds on top of them (the
orchestrator against this bot).

    python bench/trio_floor_bot.py --api-base-url URL [--token T] [--cwd DIR] -- CODEX ARGV...
"""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import trio
from reference_bot import arguments  # bench/ is this script's folder: on sys.path

from orchestrator.codex_runs import ApprovalAsk, ApprovalDecision, CodexJob, CodexProgress, JobDone
from orchestrator.edges.codex_mcp import open_codex_process
from orchestrator.edges.telegram_http import HttpTelegramApi, open_telegram_api

if TYPE_CHECKING:
    from orchestrator.ports import CodexWorker

POLL_SECONDS = 30


class _Chat(msgspec.Struct):
    id: int


class _Message(msgspec.Struct):
    chat: _Chat
    text: str | None = None


class _Update(msgspec.Struct):
    update_id: int
    message: _Message | None = None


def _ignore(progress: CodexProgress) -> None:
    """Progress events are read and dropped, as the reference bot skips them."""


async def _deny(ask: ApprovalAsk) -> ApprovalDecision:
    return "denied"


async def _answer(
    telegram: HttpTelegramApi, codex: CodexWorker, message: _Message, cwd: str
) -> None:
    job = CodexJob(
        conversation=str(message.chat.id),
        prompt=message.text or "",
        cwd=cwd,
        approval_policy="never",
    )
    outcome = await codex.run_turn(job, on_event=_ignore, on_approval=_deny)
    text = outcome.text if isinstance(outcome, JobDone) else "failed"
    await telegram.send_message(message.chat.id, text[:4096])


async def serve(api_base_url: str, token: str, cwd: str, codex_argv: list[str]) -> None:
    """Until SIGTERM, which ends the poll and stops the Codex server with its tree."""
    with trio.open_signal_receiver(signal.SIGTERM) as signals, trio.CancelScope() as scope:

        async def stop_on_signal() -> None:
            async for _ in signals:
                scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_on_signal)
            await _poll(api_base_url, token, cwd, codex_argv)


async def _poll(api_base_url: str, token: str, cwd: str, codex_argv: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="trio-floor-") as folder:
        async with (
            open_telegram_api(token, base_url=api_base_url) as telegram,
            open_codex_process(
                codex_argv,
                env=dict(os.environ),
                worker_id=0,
                stderr_log=Path(folder) / "codex.log",
                cwd=cwd,
            ) as codex,
            trio.open_nursery() as nursery,
        ):
            offset: int | None = None
            while True:
                raws = await telegram.get_updates(
                    offset=offset,
                    poll_seconds=POLL_SECONDS,
                    limit=100,
                    allowed_updates=["message"],
                )
                for raw in raws:
                    update = msgspec.json.decode(raw, type=_Update)
                    offset = update.update_id + 1
                    if update.message is not None and update.message.text:
                        nursery.start_soon(_answer, telegram, codex, update.message, cwd)


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    trio.run(serve, args.api_base_url, args.token, args.cwd, args.codex)


if __name__ == "__main__":
    main()
