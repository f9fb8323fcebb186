"""Reading an ASGI scope: who is calling, and what kind of body this is.

Headers are read for routing decisions only (content type, length, coding, the approval header). They are never put
into an event's scanned contents and never logged: they carry credentials (Authorization, cookies, API keys).

The raw header list is walked once per message, by hand rather than through Starlette's `Headers` (whose `get`
lowercases and rescans the whole list on every call): this runs on every request and every response. Names are
lowercased here whatever the server did, so `Content-Encoding` spelled in capitals cannot slip past.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from starlette.types import Scope

from cisora_mesh.events import ANONYMOUS, Subject

SUBJECT_SCOPE_KEY: Final = "cisora.subject"

RawHeaders = Iterable[tuple[bytes, bytes]]


def subject_from_scope(scope: Scope) -> Subject:
    """The `Subject` an upstream authentication layer stored at `scope["cisora.subject"]`, else anonymous."""
    subject = scope.get(SUBJECT_SCOPE_KEY)
    return subject if isinstance(subject, Subject) else ANONYMOUS


class BodyHeads:
    """What the middleware needs from one message's headers, read in one pass."""

    __slots__ = ("approval", "content_encoding", "content_length", "media")

    def __init__(self, raw: RawHeaders, approval_name: bytes = b"") -> None:
        media = b""
        length: bytes | None = None
        codings: list[bytes] = []
        approval: bytes | None = None
        for name, value in raw:
            name = name.lower()
            if name == b"content-type":
                if not media:  # the first one wins, as in Starlette's Headers.get (what the app will read)
                    media = value
            elif name == b"content-length":
                if length is None:
                    length = value
            elif name == b"content-encoding":
                # RFC 9110 section 5.3: repeated fields are one comma-separated list. Combining them matters:
                # reading only the first `Content-Encoding: identity` would let a second `gzip` pass unscanned.
                codings.append(value)
            elif name == approval_name and approval is None:
                approval = value
        self.media = media.split(b";", 1)[0].strip().lower().decode("latin-1")
        stripped = length.strip() if length is not None else b""
        self.content_length = int(stripped) if stripped.isdigit() else None
        self.content_encoding = b",".join(codings).decode("latin-1")
        self.approval = approval.decode("latin-1") if approval is not None else None


def is_json(media: str) -> bool:
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def is_text(media: str) -> bool:
    return media.startswith("text/")


def replace_headers(
    raw: RawHeaders, drop: frozenset[bytes], add: Iterable[tuple[bytes, bytes]] = ()
) -> list[tuple[bytes, bytes]]:
    """A new header list without the names in `drop` (lowercase), followed by `add`."""
    headers = [(k, v) for k, v in raw if k.lower() not in drop]
    headers.extend(add)
    return headers


def with_headers(scope: Scope, drop: frozenset[bytes], add: Iterable[tuple[bytes, bytes]] = ()) -> Scope:
    """A copy of `scope` with headers dropped and added (the original scope is never mutated)."""
    return {**scope, "headers": replace_headers(scope["headers"], drop, add)}
