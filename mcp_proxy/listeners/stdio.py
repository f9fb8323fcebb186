"""The stdio front: JSON-RPC frames on our stdin/stdout, for clients that spawn the proxy (Claude Desktop, Cursor).

Our real stdout is the wire, so it is moved to a private descriptor and fd 1 is pointed at stderr: a stray
`print()` anywhere in the process (ours or a library's) then lands in the log instead of corrupting the protocol.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import threading
from collections.abc import AsyncIterator

import anyio

from mcp_proxy.framing import DEFAULT_MAX_FRAME, Oversized, frames


class StdioDownstream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | int, max_frame: int) -> None:
        self._reader = reader
        self._writer = writer
        self._max_frame = max_frame
        self._lock = anyio.Lock(fast_acquire=True)  # see StdioUpstream: no loop round trip per frame
        self.closed = False

    @classmethod
    async def open(cls, max_frame: int = DEFAULT_MAX_FRAME) -> StdioDownstream:
        in_fd = os.dup(0)
        out_fd = os.dup(1)
        os.dup2(2, 1)  # see the module docstring
        sys.stdout = sys.stderr
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)  # children we spawn must never read the client's frames
        os.close(devnull)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=max_frame + 1)
        if stat.S_ISREG(os.fstat(in_fd).st_mode):
            # stdin is a regular file (`proxy stdio < requests.jsonl`): feed the reader from a thread.
            _feed_from_file(reader, in_fd)
        else:
            await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(in_fd, "rb", buffering=0)
            )
        writer: asyncio.StreamWriter | int
        if stat.S_ISREG(os.fstat(out_fd).st_mode):
            writer = out_fd  # a regular file never blocks for long: write it directly
        else:
            transport, protocol = await loop.connect_write_pipe(
                asyncio.streams.FlowControlMixin, os.fdopen(out_fd, "wb", buffering=0)
            )
            writer = asyncio.StreamWriter(transport, protocol, None, loop)
        return cls(reader, writer, max_frame)

    def frames(self) -> AsyncIterator[bytes | Oversized]:
        return frames(self._reader, self._max_frame)

    async def send(self, frame: bytes) -> None:
        if self.closed:
            return
        async with self._lock:
            try:
                if isinstance(self._writer, int):
                    os.write(self._writer, frame + b"\n")
                    return
                self._writer.write(frame + b"\n")
                await self._writer.drain()
            except (ConnectionError, RuntimeError, OSError):
                self.closed = True  # the client went away; the session ends when its input does


def _feed_from_file(reader: asyncio.StreamReader, fd: int) -> None:
    loop = asyncio.get_running_loop()

    def pump() -> None:
        with os.fdopen(fd, "rb", buffering=0) as f:
            while chunk := f.read(65536):
                loop.call_soon_threadsafe(reader.feed_data, chunk)
        loop.call_soon_threadsafe(reader.feed_eof)

    threading.Thread(target=pump, name="cisora-stdin", daemon=True).start()
