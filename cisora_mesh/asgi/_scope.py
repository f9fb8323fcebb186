"""Reading an ASGI scope: who is calling, and what kind of body this is.

Headers are read for routing decisions only (content type, length, the approval header). They are never put into
an event's scanned contents and never logged: they carry credentials (Authorization, cookies, API keys).
"""

from __future__ import annotations

from typing import Final

from starlette.datastructures import Headers
from starlette.types import Scope

from cisora_mesh.events import ANONYMOUS, Subject

SUBJECT_SCOPE_KEY: Final = "cisora.subject"


def subject_from_scope(scope: Scope) -> Subject:
    """The `Subject` an upstream authentication layer stored at `scope["cisora.subject"]`, else anonymous."""
    subject = scope.get(SUBJECT_SCOPE_KEY)
    return subject if isinstance(subject, Subject) else ANONYMOUS


def media_type(headers: Headers) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_json(media: str) -> bool:
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def is_text(media: str) -> bool:
    return media.startswith("text/")


def declared_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def with_content_length(scope: Scope, length: int) -> Scope:
    """A copy of `scope` whose Content-Length header is `length` (after the body was rewritten)."""
    raw = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
    raw.append((b"content-length", str(length).encode("ascii")))
    return {**scope, "headers": raw}
