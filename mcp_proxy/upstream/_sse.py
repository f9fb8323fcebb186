"""Incremental `text/event-stream` parser over raw bytes (WHATWG HTML, "Server-sent events", §9.2.5-9.2.6).

The MCP streamable-HTTP transport (2025-11-25 "Streamable HTTP", "Sending Messages to the Server" item 5) answers
a POST, or the optional GET, with an SSE stream whose `message` events each carry one JSON-RPC message in `data`.
The proxy forwards frames as bytes, so this parser works on bytes too and never decodes an event's data: JSON is
UTF-8 already, and the joined `data:` lines are the exact frame the server wrote.

Bytes arrive in arbitrary chunks: a line, a CRLF pair or a UTF-8 BOM may be split between two `feed` calls. The
data of one event is capped (the proxy's frame limit): past it the event is reported once as `Oversized`, keeping
its first bytes so the caller can still find a request id, and the rest is counted but not kept.
"""

from __future__ import annotations

import re
from typing import Final

from mcp_proxy.framing import Oversized

_EOL: Final = re.compile(rb"\r\n|\r|\n")  # §9.2.5: a line ends at CRLF, a lone LF or a lone CR
_BOM: Final = b"\xef\xbb\xbf"
_HEAD: Final = 4096  # bytes of an oversized event kept for the caller (as framing.Oversized does)
_LINE_SLACK: Final = 64  # a data line may be this much longer than the data it adds ("data: " and the field name)

SseEvent = tuple[str, bytes | Oversized]  # (event type, data)


class SseParser:
    """Feed it bytes; it returns the events completed so far. `last_id` and `retry` follow §9.2.6."""

    def __init__(self, max_data: int) -> None:
        self.max_data = max_data
        self.last_id = ""  # the last event ID buffer: it survives events, and survives a reconnection
        self.retry: int | None = None  # milliseconds, from the last valid `retry:` field
        self.oversized = 0  # events reported as Oversized so far
        self._partial: list[bytes] = []  # pieces of a line not ended yet
        self._partial_size = 0
        self._cr = False  # the previous chunk ended with CR: a leading LF finishes that CRLF, not a new line
        self._started = False  # past the optional BOM at the very start of the stream
        self._event = b""
        self._data: list[bytes] = []
        self._size = 0  # length of the data buffer, newlines included
        self._over: bytearray | None = None  # the head of this event's data once it went over the cap
        self._skip_line = False  # discarding the rest of an over-long line
        self._skip_counts = False  # ... and that line's bytes count toward an oversized event's size

    def feed(self, chunk: bytes) -> list[SseEvent]:
        if not self._started:
            # §9.2.6: one leading U+FEFF is ignored. Wait until three bytes are in hand to tell.
            chunk = b"".join(self._partial) + chunk
            self._partial.clear()
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._partial.append(chunk)
                return []
            self._started = True
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
        if self._cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._cr = False
        events: list[SseEvent] = []
        end = len(chunk)
        pos = 0
        search = _EOL.search
        if self._skip_line:
            match = search(chunk)
            if match is None:
                self._count_skipped(end)
                return events
            self._count_skipped(match.start())
            self._skip_line = False
            pos = match.end()
            self._cr = pos == end and match.group() == b"\r"
        # Only the new bytes are searched for line ends, and a line's earlier pieces are joined once, when it
        # ends: a large event arriving in many small chunks costs linear time, not quadratic.
        while pos < end:
            match = search(chunk, pos)
            if match is None:
                break
            piece = chunk[pos : match.start()]
            if self._partial:
                self._partial.append(piece)
                piece = b"".join(self._partial)
                self._partial.clear()
                self._partial_size = 0
            self._line(piece, events)
            pos = match.end()
            if pos == end and match.group() == b"\r":
                self._cr = True  # its LF may be the first byte of the next chunk
        if pos < end:
            self._partial.append(chunk[pos:] if pos else chunk)
            self._partial_size += end - pos
            if self._partial_size > self.max_data + _LINE_SLACK:
                rest = b"".join(self._partial)
                self._partial.clear()
                self._partial_size = 0
                self._overlong(rest)
        return events

    # --- §9.2.6 "Interpreting an event stream" ------------------------------------------------------------------

    def _line(self, line: bytes, events: list[SseEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line[:1] == b":":
            return  # a comment (servers send them as keep-alives)
        colon = line.find(b":")
        if colon < 0:
            field, value = line, b""
        else:
            field = line[:colon]
            value = line[colon + 2 :] if line[colon + 1 : colon + 2] == b" " else line[colon + 1 :]
        if field == b"data":
            self._add_data(value)
        elif field == b"event":
            self._event = value
        elif field == b"id":
            if b"\x00" not in value:
                self.last_id = value.decode("utf-8", "replace")
        elif field == b"retry":
            if value and value.isdigit():
                self.retry = int(value)
        # Any other field name is ignored.

    def _add_data(self, value: bytes) -> None:
        self._size += len(value) + 1
        if self._over is not None:
            return
        if self._size - 1 > self.max_data:
            head = bytearray(b"\n".join(self._data))
            if self._data:
                head += b"\n"
            head += value[:_HEAD]
            self._over = head[:_HEAD]
            self._data.clear()
            return
        self._data.append(value)

    def _dispatch(self, events: list[SseEvent]) -> None:
        etype = self._event.decode("utf-8", "replace") if self._event else "message"
        self._event = b""
        if self._over is not None:
            self.oversized += 1
            # The trailing LF of the data buffer is not part of the data (§9.2.6, "dispatch the event", step 4).
            events.append((etype, Oversized(bytes(self._over), self._size - 1)))
        elif self._data:
            events.append((etype, self._data[0] if len(self._data) == 1 else b"\n".join(self._data)))
        # An empty data buffer dispatches nothing (step 3): e.g. a "priming" event that only sets an id.
        self._data = []
        self._size = 0
        self._over = None

    def _overlong(self, rest: bytes) -> None:
        """An unterminated line longer than any frame we accept: keep its head if it is data, drop the rest."""
        self._skip_line = True
        self._skip_counts = rest.startswith(b"data:")
        if not self._skip_counts:
            return  # a huge comment or unknown field: nothing of it is kept
        value = rest[6:] if rest[5:6] == b" " else rest[5:]
        if self._over is None:
            joined = b"\n".join(self._data)
            self._over = bytearray(((joined + b"\n") if self._data else b"") + value[:_HEAD])[:_HEAD]
            self._data.clear()
        self._size += len(value) + 1

    def _count_skipped(self, n: int) -> None:
        if self._skip_counts:
            self._size += n
