"""Newline-delimited JSON-RPC framing (the MCP stdio transport) with a hard frame-size limit.

`asyncio.StreamReader.readline` cannot recover from an over-long line (it clears its buffer and the tail of the
line then parses as garbage), so we split chunks ourselves: a frame longer than the limit is skipped up to its
newline and reported once as `Oversized`, carrying the first bytes so the caller can still find the request id.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

DEFAULT_MAX_FRAME: Final = 8 * 1024 * 1024
_CHUNK: Final = 256 * 1024
_PREFIX: Final = 4096


@dataclass(frozen=True, slots=True)
class Oversized:
    """A frame that exceeded the limit and was discarded. `head` is its first few KiB."""

    head: bytes
    size: int


async def frames(reader: asyncio.StreamReader, max_frame: int = DEFAULT_MAX_FRAME) -> AsyncIterator[bytes | Oversized]:
    """Yield each non-empty line (without the newline) or an `Oversized` marker, until EOF."""
    buf = bytearray()
    skipping: bytearray | None = None  # head of an oversized frame being discarded
    skipped = 0
    while True:
        chunk = await reader.read(_CHUNK)
        if not chunk:
            if skipping is not None:
                yield Oversized(bytes(skipping), skipped)
            elif buf.strip():
                yield bytes(buf)  # a last frame without its newline still counts
            return
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                rest = chunk[start:]
                if skipping is not None:
                    skipped += len(rest)
                elif len(buf) + len(rest) > max_frame:
                    skipping = bytearray((bytes(buf) + rest)[:_PREFIX])
                    skipped = len(buf) + len(rest)
                    buf.clear()
                else:
                    buf += rest
                break
            piece = chunk[start:nl]
            start = nl + 1
            if skipping is not None:
                yield Oversized(bytes(skipping), skipped + len(piece))
                skipping = None
                skipped = 0
                continue
            if buf:
                buf += piece
                line = bytes(buf)
                buf.clear()
            else:
                line = piece
            if len(line) > max_frame:
                yield Oversized(line[:_PREFIX], len(line))
            elif line.strip():
                yield line.rstrip(b"\r")
