"""Server-sent events (`text/event-stream`), reassembled one event at a time so that each event is scanned whole.

Parsing follows the WHATWG HTML Living Standard, "Server-sent events" (html.spec.whatwg.org/multipage/
server-sent-events.html), sections "Parsing an event stream" and "Interpreting an event stream":

* a line ends with CRLF, a lone LF or a lone CR; a CR that ends one network chunk may be the first half of a CRLF
  whose LF starts the next chunk, so that LF is skipped rather than read as a second (blank) line;
* a blank line dispatches the event; a line starting with ":" is a comment; otherwise the field name runs to the
  first ":" (the whole line when there is none) and one space after the colon is dropped from the value;
* each `data` field appends its value and an LF to the data buffer, and the final LF is removed at dispatch; an
  event whose data buffer is empty is not dispatched (a client never sees it), so there is nothing to scan;
* a UTF-8 byte order mark at the start of the stream is ignored (otherwise `\\ufeffdata:` would not read as a
  data line here while a browser reads it as one); bytes are decoded as UTF-8 with replacement, as clients do.

An event's bytes are held until its blank line arrives, so a secret split across network chunks inside one event
is seen complete. The held bytes are bounded: past `max_event` bytes without a blank line `too_large` turns true
(after the events completed so far were returned) and the caller falls back to hold-back streaming redaction or
ends the stream, as configured.

Rewriting: an event whose data was redacted is re-serialised with its non-data lines kept as they were, in order,
and the new data written as one `data:` line per line at the place of the first data line; an event left alone is
forwarded byte for byte.
"""

from __future__ import annotations

import re
from typing import Final

_EOL: Final = re.compile(rb"\r\n|\r|\n")
_BOM: Final = b"\xef\xbb\xbf"


class SseEvent:
    """One event as received: its raw bytes (terminators included), its lines, its data and its other lines."""

    __slots__ = ("complete", "data", "lines", "others", "raw")

    def __init__(self, raw: bytes, lines: list[bytes], *, complete: bool = True) -> None:
        self.raw = raw
        self.lines = lines
        self.complete = complete  # False for bytes left when the stream ended without a blank line
        data: list[str] = []
        others: list[int] = []
        for i, line in enumerate(lines):
            value = _data_value(line)
            if value is None:
                others.append(i)
            else:
                data.append(value)
        self.data: str | None = "\n".join(data) if data else None
        # Lines other than data (event, id, retry, comments, unknown fields): clients expose `event` and `id`, and
        # raw readers see everything, so they are scanned too, as text.
        self.others = others

    def other_text(self) -> str:
        return "\n".join(self.lines[i].decode("utf-8", errors="replace") for i in self.others)

    def render(self, data: str | None, others: str | None = None) -> bytes:
        """This event with `data` in place of its data fields and `others` (as `other_text`) in place of the rest.

        Non-data lines keep their order; the new data goes where the first data line was, one `data:` per line.
        """
        replaced: dict[int, str] = {}
        if others is not None:
            parts = others.split("\n")
            if len(parts) != len(self.others):  # a redaction spanned lines: keep the text, on one line
                parts = [others.replace("\n", " ")]
            replaced = dict(zip(self.others, parts, strict=False))  # lines without a part are dropped
        out: list[bytes] = []
        written = False
        for i, line in enumerate(self.lines):
            if others is not None and i in self.others:
                part = replaced.get(i, "")
                if part:  # never an empty line: that would end the event early
                    out.append(part.encode("utf-8"))
            elif _data_value(line) is None:
                out.append(line)
            elif not written and data is not None:
                out.extend(b"data: " + part.encode("utf-8") for part in data.split("\n"))
                written = True
        rendered = b"\n".join(out) + b"\n"
        return rendered + b"\n" if self.complete else rendered


def _data_value(line: bytes) -> str | None:
    """The value of a `data` field line, else None (comments, other fields)."""
    if not line.startswith(b"data"):
        return None
    rest = line[4:]
    if not rest:
        return ""  # "data" alone: a field with an empty value
    if rest[:1] != b":":
        return None  # a longer field name such as "database"
    value = rest[1:]
    if value[:1] == b" ":
        value = value[1:]
    return value.decode("utf-8", errors="replace")


class SseSplitter:
    """Feed bytes, get back the events they complete; `finish()` returns what is left when the stream ends."""

    __slots__ = ("_buf", "_first", "_lines", "_pos", "_skip_lf", "max_event")

    def __init__(self, *, max_event: int) -> None:
        if max_event < 1:
            raise ValueError("max_event must be positive")
        self.max_event = max_event
        self._buf = bytearray()  # bytes of the event being assembled
        self._pos = 0  # where its unfinished line starts
        self._lines: list[bytes] = []
        self._skip_lf = False
        self._first = True  # the stream's first line: may start with a BOM

    def feed(self, data: bytes) -> list[SseEvent]:
        buf = self._buf
        searched = len(buf)  # everything before this was already searched for line ends
        buf += data
        pos = self._pos
        if self._skip_lf and len(buf) > pos:
            self._skip_lf = False
            if buf[pos] == 0x0A:  # the LF of a CRLF whose CR ended the previous chunk
                pos += 1
                searched = max(searched, pos)
        events: list[SseEvent] = []
        while (match := _EOL.search(buf, searched)) is not None:
            line = bytes(buf[pos : match.start()])
            end = match.end()
            if end == len(buf) and buf[end - 1] == 0x0D:
                self._skip_lf = True  # a lone CR so far: an LF may follow in the next chunk
            pos = searched = end
            if self._first:
                self._first = False
                line = line.removeprefix(_BOM)
            if line:
                self._lines.append(line)
                continue
            events.append(SseEvent(bytes(buf[:pos]), self._lines))
            del buf[:pos]
            pos = searched = 0
            self._lines = []
        self._pos = pos
        return events

    @property
    def too_large(self) -> bool:
        """The event being assembled is past the limit without its blank line."""
        return len(self._buf) > self.max_event

    def pending(self) -> bytes:
        """The bytes of the event not yet complete (to hand to a fallback)."""
        return bytes(self._buf)

    def finish(self) -> SseEvent | None:
        """The incomplete event left at the end of the stream, if any (its last line may be unterminated)."""
        if not self._buf:
            return None
        lines = list(self._lines)
        tail = bytes(self._buf[self._pos :])
        if self._first:
            tail = tail.removeprefix(_BOM)
        if tail:
            lines.append(tail)
        event = SseEvent(bytes(self._buf), lines, complete=False)
        self._buf = bytearray()
        self._lines = []
        self._pos = 0
        return event
