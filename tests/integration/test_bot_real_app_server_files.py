"""A photo through the whole bot on the real Codex 0.171.0 (``codex app-server``) and the mock
model: the fake Telegram serves the file, the bot keeps it privately under state_dir and
passes it as a ``localImage`` input, and the model's request carries it as an
``input_image`` next to the caption; an album's photos go in one request. The working
directory never sees them."""

from __future__ import annotations

import base64
import signal
import struct
import zlib
from typing import TYPE_CHECKING, Any

import trio

from tests.bot_process import polling
from tests.integration.app_server_fixtures import app_server_codex
from tests.integration.test_bot_real_app_server import CEILING, app_server_edges
from tests.integration.test_bot_real_codex import ALICE, TOKEN, has_text

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["app_server_codex"]


def tiny_png() -> bytes:
    """A valid 2 by 2 red PNG (Codex decodes the image before it sends it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def input_images(body: dict[str, Any]) -> list[str]:
    """The ``image_url`` of every ``input_image`` in the request's user messages."""
    found = []
    for item in body.get("input", []):
        for part in item.get("content", []) if isinstance(item.get("content"), list) else []:
            if part.get("type") == "input_image":
                found.append(part.get("image_url", ""))
    return found


async def test_a_photo_reaches_the_model_as_an_input_image(
    app_server_codex: Path, tmp_path: Path
) -> None:
    png = tiny_png()
    with trio.fail_after(CEILING):
        async with app_server_edges(app_server_codex, tmp_path, sandbox="workspace-write") as edges:
            model, tg, config = edges
            async with polling(tg, config, TOKEN) as bot:
                sent = tg.add_file(png, "photos/file_0.jpg")
                small = {**sent, "file_size": 10, "width": 1, "height": 1, "file_id": "thumb"}
                photo = [small, {**sent, "width": 2, "height": 2}]
                tg.push_message(
                    chat_id=ALICE,
                    user_id=ALICE,
                    extra={"photo": photo, "caption": "what colour is this square"},
                )
                await tg.wait_for(lambda t: has_text(t, "MOCK-REPLY"))
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    assert tg.downloads == ["photos/file_0.jpg"]  # the largest size, not the thumbnail
    images = [url for body in model.requests for url in input_images(body)]
    assert images, model.requests[-1].get("input")
    kind, _, data = images[0].partition(";base64,")
    assert kind.startswith("data:image/")
    assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "what colour is this square" in str(model.requests[0].get("input"))
    kept = list((tmp_path / "state" / "images").iterdir())
    assert len(kept) == 1
    assert kept[0].read_bytes() == png
    assert not any(path.suffix == ".jpg" for path in (tmp_path / "work").rglob("*"))


async def test_an_album_reaches_the_model_as_one_request_with_every_photo(
    app_server_codex: Path, tmp_path: Path
) -> None:
    """Telegram sends an album as three messages (the caption on the first): one turn, one
    model request with the three images and the caption, and no "send it again"."""
    with trio.fail_after(CEILING):
        async with app_server_edges(app_server_codex, tmp_path, sandbox="workspace-write") as edges:
            model, tg, config = edges
            async with polling(tg, config, TOKEN) as bot:
                for n in range(3):
                    sent = tg.add_file(tiny_png(), f"photos/file_{n}.jpg")
                    extra: dict[str, Any] = {
                        "photo": [{**sent, "width": 2, "height": 2}],
                        "media_group_id": "album-1",
                    }
                    if n == 0:
                        extra["caption"] = "what differs between these"
                    tg.push_message(chat_id=ALICE, user_id=ALICE, extra=extra)
                await tg.wait_for(lambda t: has_text(t, "MOCK-REPLY"))
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    assert sorted(tg.downloads) == [f"photos/file_{n}.jpg" for n in range(3)]
    assert len(model.requests) == 1
    assert len(input_images(model.requests[0])) == 3
    assert "what differs between these" in str(model.requests[0].get("input"))
    assert not any("send it again" in text.lower() for text in tg.sent_texts(ALICE))
