"""JSON-RPC 2.0 framing for the hot path: msgspec envelopes, error objects, problem types.

Frames are decoded into `Envelope`, whose `params`/`result`/`error` stay `msgspec.Raw` (undecoded bytes): a
message nobody inspects is forwarded as the exact bytes that arrived, and only inspected messages are decoded
into Python objects. This is what keeps the proxy's added latency in microseconds (a pydantic round trip through
the SDK's models costs ~15x more per frame).
"""

from __future__ import annotations

import re
from typing import Any, Final, TypeAlias

import msgspec
from msgspec import UNSET, Raw, UnsetType

RequestId: TypeAlias = int | str

# JSON-RPC 2.0 codes.
PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INTERNAL_ERROR: Final = -32603
# Implementation-defined server errors (-32000..-32099), stable and documented in docs/mcp-proxy.md.
POLICY_DENIED: Final = -32010
REVIEW_REQUIRED: Final = -32011
TOOL_NOT_APPROVED: Final = -32012
UPSTREAM_UNAVAILABLE: Final = -32020
FRAME_TOO_LARGE: Final = -32021
UNKNOWN_SERVER: Final = -32022
TOO_MANY_SERVER_REQUESTS: Final = -32023

PROBLEM_PREFIX: Final = "urn:cisora:problem:"


class Envelope(msgspec.Struct, omit_defaults=True):
    """One JSON-RPC message with its payload left undecoded."""

    jsonrpc: str | UnsetType = UNSET
    id: int | str | UnsetType | None = UNSET
    method: str | UnsetType = UNSET
    params: Raw = Raw()
    result: Raw = Raw()
    error: Raw = Raw()

    @property
    def is_request(self) -> bool:
        return self.method is not UNSET and self.id is not UNSET and self.id is not None

    @property
    def is_notification(self) -> bool:
        return self.method is not UNSET and self.id is UNSET

    @property
    def is_response(self) -> bool:
        return self.method is UNSET and (len(self.result) > 0 or len(self.error) > 0)


_decoder: Final = msgspec.json.Decoder(Envelope)
_encoder: Final = msgspec.json.Encoder()
_any_decoder: Final = msgspec.json.Decoder()


class FrameError(Exception):
    """A frame is not a usable JSON-RPC message. `code` is the JSON-RPC error to answer with."""

    def __init__(self, code: int, message: str, request_id: RequestId | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id


def decode(frame: bytes) -> Envelope:
    """Decode a frame, or raise `FrameError` with the JSON-RPC code that fits (-32700 or -32600)."""
    try:
        env = _decoder.decode(frame)
    except msgspec.ValidationError:
        # Valid JSON but not a message object (a batch, a bare value, a wrongly typed field).
        raise FrameError(INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message object") from None
    except msgspec.DecodeError:
        raise FrameError(PARSE_ERROR, "Parse error: frame is not valid JSON") from None
    if env.jsonrpc != "2.0":
        rid = env.id if isinstance(env.id, int | str) else None
        raise FrameError(INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"', rid)
    if env.method is UNSET and not (len(env.result) or len(env.error)):
        rid = env.id if isinstance(env.id, int | str) else None
        raise FrameError(INVALID_REQUEST, "Invalid Request: no method, result or error", rid)
    return env


_ID_IN_HEAD: Final = re.compile(rb'"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")')


def id_in_head(head: bytes) -> RequestId | None:
    """The request id found in the first bytes of a frame too large to decode (`framing.Oversized.head`)."""
    match = _ID_IN_HEAD.search(head)
    if match is None:
        return None
    try:
        value = msgspec.json.decode(match.group(1))
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, int | str) else None


def load(raw: Raw) -> Any:
    """Decode an undecoded payload into plain Python objects (None when absent)."""
    return _any_decoder.decode(raw) if len(raw) else None


def dumps(value: Any) -> bytes:
    return _encoder.encode(value)


def error_frame(request_id: RequestId | None, code: int, message: str, data: dict[str, Any] | None = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return _encoder.encode({"jsonrpc": "2.0", "id": request_id, "error": error})


def result_frame(request_id: RequestId | None, result: Any) -> bytes:
    return _encoder.encode({"jsonrpc": "2.0", "id": request_id, "result": result})


def request_frame(request_id: RequestId, method: str, params: Any) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return _encoder.encode(message)


def notification_frame(method: str, params: Any) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return _encoder.encode(message)


def problem(slug: str, title: str, **fields: Any) -> dict[str, Any]:
    """`data` for a JSON-RPC error: the same fields an RFC 9457 problem carries at HTTP boundaries."""
    return {"type": PROBLEM_PREFIX + slug, "title": title, **fields}
