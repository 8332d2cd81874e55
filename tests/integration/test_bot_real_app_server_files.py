"""A photo through the whole bot on the real Codex 0.171.0 (``codex app-server``) and the mock
model: the fake Telegram serves the file, the bot keeps it privately under state_dir and
passes it as a ``localImage`` input, and the model's request carries it as an
``input_image`` next to the caption; an album's photos go in one request. The working
directory never sees them. An image file Codex cannot decode (which it drops without a word)
goes as a file, and the user is told why; `unreadable_image` agrees with Codex itself on the
damage measured (orchestrator.image_bytes)."""

from __future__ import annotations

import base64
import signal
from typing import TYPE_CHECKING, Any

import trio

from orchestrator.codex_runs import JobDone
from orchestrator.image_bytes import unreadable_image
from tests.bot_process import polling
from tests.fakes.mock_model import open_mock_model, write_codex_home
from tests.integration.app_server_fixtures import app_server_codex
from tests.integration.test_bot_real_app_server import CEILING, MODEL, app_server_edges
from tests.integration.test_bot_real_codex import ALICE, TOKEN, has_text
from tests.integration.test_real_app_server import deny, job_in, open_real
from tests.pictures import GIF, JPEG, WEBP, tiny_png

if TYPE_CHECKING:
    from pathlib import Path

    from orchestrator.edges.codex_app_server import CodexAppServer

__all__ = ["app_server_codex"]


OMITTED = "image content omitted because it could not be processed"
"""What Codex 0.171.0 gives the model in place of an image it cannot decode."""


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


async def test_an_image_file_codex_cannot_decode_is_passed_on_as_a_file(
    app_server_codex: Path, tmp_path: Path
) -> None:
    cut = tiny_png()[:30]
    with trio.fail_after(CEILING):
        async with app_server_edges(app_server_codex, tmp_path, sandbox="workspace-write") as edges:
            model, tg, config = edges
            async with polling(tg, config, TOKEN) as bot:
                sent = tg.add_file(cut, "documents/chart.png")
                document = {**sent, "file_name": "chart.png", "mime_type": "image/png"}
                tg.push_message(
                    chat_id=ALICE,
                    user_id=ALICE,
                    extra={"document": document, "caption": "what does the chart say"},
                )
                await tg.wait_for(lambda t: has_text(t, "MOCK-REPLY"))
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    told = (
        "“chart.png” is not a picture Codex can look at (the PNG file is cut short or damaged: "
        "its picture does not end), so it goes as a file. Saved as inbox/chart.png."
    )
    texts = tg.sent_texts(ALICE)
    result = next(index for index, text in enumerate(texts) if "MOCK-REPLY" in text)
    assert texts.index(told) < result  # said before the answer
    (request,) = model.requests
    assert input_images(request) == []
    assert OMITTED not in str(request["input"])
    assert "(The file is inbox/chart.png in the working directory.)" in str(request["input"])
    assert (tmp_path / "work" / "inbox" / "chart.png").read_bytes() == cut


async def test_what_unreadable_image_turns_away_codex_cannot_read(
    app_server_codex: Path, tmp_path: Path
) -> None:
    """Each picture, whole and damaged as measured, in a turn of its own on the real Codex:
    what `unreadable_image` turns away Codex drops, and what Codex reads it lets through."""
    pictures = {"png": tiny_png(), "jpeg": JPEG, "gif": GIF, "webp": WEBP}
    cases = {
        **{f"{kind} whole": data for kind, data in pictures.items()},
        **{f"{kind} less its last 2 bytes": data[:-2] for kind, data in pictures.items()},
        **{f"{kind} with bytes after it": data + b"junk" for kind, data in pictures.items()},
        **{f"{kind} cut in half": data[: len(data) // 2] for kind, data in pictures.items()},
        "png without IEND": tiny_png()[:-12],
        "text": b"not a picture at all",
        "bmp": b"BM" + b"\x00" * 60,
    }
    read: dict[str, bool] = {}
    with trio.fail_after(CEILING):
        async with open_mock_model() as model:
            home = write_codex_home(tmp_path / "home", model.base_url, model=MODEL)
            codex: CodexAppServer
            async with open_real(app_server_codex, home, tmp_path) as codex:
                for number, (name, data) in enumerate(cases.items()):
                    path = tmp_path / f"picture-{number}"
                    path.write_bytes(data)
                    job = job_in(tmp_path, name, images=(str(path),))
                    outcome = await codex.run_turn(job, on_event=lambda _e: None, on_approval=deny)
                    assert isinstance(outcome, JobDone), (name, outcome)
                    read[name] = OMITTED not in str(model.requests[-1]["input"])
    turned_away = {name for name, data in cases.items() if unreadable_image(data) is not None}
    assert {name for name, ok in read.items() if not ok} >= turned_away  # none Codex reads
    assert turned_away == {"png cut in half", "png without IEND", "text", "bmp"}
    assert all(read[name] for name in cases if "whole" in name or "bytes" in name)
