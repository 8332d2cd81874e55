"""`unreadable_image` against the damage measured on Codex 0.171.0 (orchestrator.image_bytes):
it turns away only what Codex drops, and never a picture Codex reads."""

from __future__ import annotations

import struct

import pytest

from orchestrator.image_bytes import PNG_CHUNKS_READ, unreadable_image
from tests.pictures import GIF, JPEG, WEBP, tiny_png

PICTURES = {"png": tiny_png(), "jpeg": JPEG, "gif": GIF, "webp": WEBP}
CUT_SHORT = "the PNG file is cut short or damaged: its picture does not end"


@pytest.mark.parametrize("kind", PICTURES)
def test_what_codex_reads_is_never_turned_away(kind: str) -> None:
    picture = PICTURES[kind]
    assert unreadable_image(picture) is None
    assert unreadable_image(picture[:-2]) is None  # its end marker or checksum missing
    assert unreadable_image(picture + b"bytes after the end") is None


def test_a_png_cut_short_or_without_its_end_is_turned_away() -> None:
    png = tiny_png()
    assert unreadable_image(png[: len(png) // 2]) == CUT_SHORT
    assert unreadable_image(png[:-12]) == CUT_SHORT  # the IEND chunk gone
    assert unreadable_image(png[:8]) == CUT_SHORT  # the signature alone


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, this is not a picture\n",
        b"\x89PN",
        b"RIFF\x00\x00\x00\x00WAVE",
        b"BM" + b"\x00" * 40,  # a BMP and a TIFF: Codex omits them too
        b"II*\x00" + b"\x00" * 40,
    ],
)
def test_bytes_that_are_no_picture_codex_reads_are_turned_away(data: bytes) -> None:
    assert unreadable_image(data) == "its bytes are not a PNG, JPEG, GIF or WebP picture"


def test_a_png_of_too_many_chunks_goes_to_codex_unchecked() -> None:
    """The walk runs on the event loop: a file made of empty chunks is not walked to its end
    (Codex decides), while one just within the bound still is."""
    png = tiny_png()
    empty = struct.pack(">I", 0) + b"tEXt" + struct.pack(">I", 0)
    without_end = png[:33] + empty * PNG_CHUNKS_READ  # the signature, IHDR, then no IEND
    assert unreadable_image(without_end) is None
    assert unreadable_image(png[:33] + empty * (PNG_CHUNKS_READ - 2)) == CUT_SHORT
