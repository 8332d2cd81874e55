"""Whether the bytes of an image sent as a file are a picture Codex can look at.

Codex 0.171.0 decodes a ``localImage`` before the turn, and one it cannot decode reaches the
model as the words "image content omitted because it could not be processed", with no sign to
the client: the user's question would be answered about a picture the model never saw.
Measured on the mock model (a 4 by 4 picture saved by Pillow, each way damaged; 2026-12-02):

- it goes by the bytes, not the name or the MIME type (a PNG named ``.jpg`` is read);
- a file that is no picture at all (text under ``image/png``) is omitted, and so are a BMP
  and a TIFF, whole;
- PNG, JPEG, GIF and WebP cut in half are omitted; the same cut by their last two bytes are
  read (a missing JPEG end marker, GIF trailer or PNG end checksum does not matter), and so
  are they with bytes after their end; a PNG without its ``IEND`` chunk is omitted.

`unreadable_image` says only what is certain from the structure, so that no picture Codex
could read is turned away: a file that does not start as a PNG, JPEG, GIF or WebP does, and
a PNG whose chunks run past the end of the file or that ends before ``IEND``. A JPEG,
GIF or WebP cut inside its compressed data cannot be told from a whole one without decoding
it, and still goes to Codex.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = ["unreadable_image"]

PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"

PNG_CHUNKS_READ: Final = 50_000
"""Chunks of a PNG `unreadable_image` walks at most: the walk runs on the event loop, and a
20 MB file of empty chunks (1.7 million) took 0.57 s; a real picture of that size holds a few
thousand (image data comes in chunks of 8 KB and more)."""

SIGNATURES: Final = (b"\xff\xd8\xff", b"GIF87a", b"GIF89a")
"""How a JPEG and a GIF start (a PNG: `PNG_SIGNATURE`; a WebP: `_is_webp`)."""


def unreadable_image(data: bytes) -> str | None:
    """Why Codex cannot look at the picture file `data`, in a user's words; None when it
    may (see the module docstring for what is checked)."""
    if data.startswith(PNG_SIGNATURE):
        return _png_problem(data)
    if _is_webp(data) or data.startswith(SIGNATURES):
        return None
    return "its bytes are not a PNG, JPEG, GIF or WebP picture"


def _is_webp(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def _png_problem(data: bytes) -> str | None:
    """Walk the chunks (length, type, data, checksum): each must fit in the file, up to
    ``IEND``. A PNG of more than `PNG_CHUNKS_READ` chunks goes to Codex unchecked."""
    at = len(PNG_SIGNATURE)
    for _ in range(PNG_CHUNKS_READ):
        if at + 8 > len(data):
            break
        (length,) = struct.unpack_from(">I", data, at)
        kind = data[at + 4 : at + 8]
        if kind == b"IEND":
            return None
        at += 8 + length + 4
        if at > len(data):
            break
    else:
        return None  # Codex decides
    return "the PNG file is cut short or damaged: its picture does not end"
