"""Content codings (RFC 9110 section 8.4): decode gzip and deflate bodies so that they are scanned, within a cap.

A compressed body is not a way around the scanners. The middleware decodes it incrementally with a hard limit on
the decoded size (a few kilobytes of gzip can expand to gigabytes: the decoder never produces more than it is
asked for, and the caller stops at its cap), and what it forwards is what it scanned: the decoded bytes, with
`Content-Encoding` removed and `Content-Length` set. Forwarding the original compressed bytes would leave the app to
decode them again with its own decoder, whose idea of the body (multi-member gzip, trailing data) could differ.

Codings (RFC 9110 section 8.4.1):
* `gzip` (and `x-gzip`, which section 8.4.1.3 says to treat as gzip): RFC 1952. A gzip stream is "a series of
  members" (RFC 1952 section 2.2), so every member is decoded, not only the first: otherwise a harmless first
  member could hide a second one that a `gzip.decompress`-style decoder in the app would read.
* `deflate`: the zlib format (RFC 1950) holding deflate data (RFC 1951). Some implementations send raw deflate
  without the zlib wrapper (RFC 9110 section 8.4.1.2 notes it); both are accepted, told apart by the zlib header
  check (RFC 1950 section 2.2: CM = 8 and the 16-bit header a multiple of 31).
* `identity` means no coding. Anything else (`br`, `zstd`, `compress`, stacked codings) is unsupported: the request
  gets a 415 problem with `Accept-Encoding: gzip, deflate` (RFC 9110 section 15.5.16 and 12.5.3), unless the
  middleware is configured `unknown_encoding="unsafe_pass"`.
"""

from __future__ import annotations

import zlib
from typing import Final

GZIP: Final = frozenset({"gzip", "x-gzip"})
SUPPORTED: Final = frozenset({"gzip", "x-gzip", "deflate"})
ACCEPT_ENCODING: Final = "gzip, deflate"
_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS  # gzip header and trailer (RFC 1952)
_ZLIB_WBITS: Final = zlib.MAX_WBITS  # zlib wrapper (RFC 1950)
_RAW_WBITS: Final = -zlib.MAX_WBITS  # bare deflate (RFC 1951)


class DecodeError(ValueError):
    """The coded body is corrupt or truncated."""


def codings(value: str) -> list[str]:
    """The codings of a Content-Encoding value in the order applied (RFC 9110 section 8.4), identity dropped."""
    names = (c.strip().lower() for c in value.split(","))
    return [c for c in names if c and c != "identity"]


def decoder_for(value: str) -> Inflater | None:
    """None for an identity body; an `Inflater` for one supported coding; `LookupError` for anything else."""
    applied = codings(value)
    if not applied:
        return None
    if len(applied) > 1 or applied[0] not in SUPPORTED:
        raise LookupError(value)  # stacked codings are rare enough to refuse rather than to decode in a chain
    return Inflater(applied[0])


class Inflater:
    """Incremental gzip/deflate decoding: `feed` coded bytes, `read(n)` at most n decoded bytes, then `finish`."""

    __slots__ = ("_d", "_fed", "_gzip", "_tail")

    def __init__(self, coding: str) -> None:
        self._gzip = coding in GZIP
        self._tail = b""  # coded input not yet handed to zlib
        self._fed = False  # an empty body is empty in any coding (a HEAD response, a 200 with no content)
        # gzip: one decompressor per member; deflate: created once the first two bytes show which format it is.
        self._d: zlib._Decompress | None = zlib.decompressobj(_GZIP_WBITS) if self._gzip else None

    def feed(self, data: bytes) -> None:
        if data:
            self._fed = True
            self._tail = self._tail + data if self._tail else data

    def read(self, limit: int) -> bytes:
        """Up to `limit` (> 0) decoded bytes from what was fed; fewer means the input is used up for now."""
        out: list[bytes] = []
        produced = 0
        try:
            while produced < limit:
                d = self._decompressor()
                if d is None:
                    break
                # max_length bounds the output of this call: the rest of the input waits in unconsumed_tail.
                piece = d.decompress(self._tail, limit - produced)
                self._tail = d.unconsumed_tail
                if piece:
                    out.append(piece)
                    produced += len(piece)
                if d.eof:
                    # Everything after the end of the stream is in unused_data (unconsumed_tail repeats part of it).
                    rest = d.unused_data
                    self._tail = b""
                    if not self._gzip:
                        if rest:
                            raise DecodeError("data after the end of the deflate stream")
                        break
                    self._d = None  # the next member, if any, starts at `rest`
                    self._tail = rest
                    if not rest:
                        break
                elif not piece and not self._tail:
                    break  # all input consumed, nothing more until more arrives
        except zlib.error as exc:
            raise DecodeError(str(exc)) from None
        return b"".join(out) if len(out) != 1 else out[0]

    def finish(self) -> None:
        """Check that the coded body ended where a stream (or gzip member) ends: a truncated body is malformed."""
        d = self._d
        if not self._fed:
            return
        if self._tail or (d is not None and not d.eof) or (d is None and not self._gzip):
            raise DecodeError("the coded body is truncated")

    def _decompressor(self) -> zlib._Decompress | None:
        if self._d is not None:
            if self._d.eof and not self._gzip:
                return None
            return self._d
        if not self._tail:
            return None  # between gzip members, or deflate waiting for its first bytes
        if self._gzip:
            self._d = zlib.decompressobj(_GZIP_WBITS)
        else:
            if len(self._tail) < 2:
                return None
            cmf, flg = self._tail[0], self._tail[1]
            wrapped = cmf & 0x0F == 8 and ((cmf << 8) | flg) % 31 == 0
            self._d = zlib.decompressobj(_ZLIB_WBITS if wrapped else _RAW_WBITS)
        return self._d
