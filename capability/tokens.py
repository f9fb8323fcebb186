"""Compact JWS (RFC 7515) encoding of chain links, with a strict, canonical profile.

Each link is ``BASE64URL(header) "." BASE64URL(payload) "." BASE64URL(signature)``; a chain is its links joined
with ``~``, root first. The profile is stricter than JWS: ``alg`` must be ``EdDSA`` (Ed25519, RFC 8037), header and
payload must be the RFC 8785 canonical bytes of their JSON, and base64url must be unpadded and canonical. Any other
JOSE library can still read and verify a single link, because it is a valid JWS.

This module parses and signs; it makes no trust decisions.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Final, NamedTuple, TypeVar, cast

import msgspec

from capability._b64 import b64d, b64e
from capability.constraints import Exact, OneOf, Range
from capability.errors import CanonicalizationError
from capability.jcs import canonicalize
from capability.keys import SigningKey
from capability.model import LINK_TYP, Claims, Header

__all__ = ["CHAIN_SEPARATOR", "DecodeError", "Link", "decode_chain", "decode_jws", "encode_jws", "link_digest"]

CHAIN_SEPARATOR: Final = "~"
ALG: Final = "EdDSA"
_T = TypeVar("_T", bound=msgspec.Struct)


class DecodeError(ValueError):
    """Raised by the decoders; ``kind`` is ``malformed``, ``alg`` or ``noncanonical``."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Link(NamedTuple):
    """One decoded (not yet verified) link."""

    text: str
    digest: str
    header: Header
    claims: Claims
    header_bytes: bytes
    payload_bytes: bytes
    signing_input: bytes
    signature: bytes


def link_digest(link_text: str) -> str:
    """``sha256:`` + base64url SHA-256 of a link's compact serialisation (the ``prf`` value of its children)."""
    return "sha256:" + b64e(hashlib.sha256(link_text.encode("ascii")).digest())


def encode_jws(header: msgspec.Struct, payload: Any, key: SigningKey) -> str:
    """Sign ``payload`` (a Struct or JSON value) under ``header`` with canonical bytes."""
    h = b64e(canonicalize(msgspec.to_builtins(header)))
    p = b64e(canonicalize(msgspec.to_builtins(payload)))
    signing_input = f"{h}.{p}"
    return f"{signing_input}.{b64e(key.sign(signing_input.encode('ascii')))}"


_header_decoder: Final = msgspec.json.Decoder(Header)
_claims_decoder: Final = msgspec.json.Decoder(Claims)


def decode_jws(text: str, payload_type: type[_T], typ: str) -> tuple[Header, _T, bytes, bytes, bytes, bytes]:
    """Split and parse a compact JWS; returns header, payload, their raw bytes, signing input and signature.

    Canonical form is *not* checked here (see :func:`check_canonical`), so cheap checks can run first.

    Raises:
        DecodeError: malformed input or an algorithm other than EdDSA.
    """
    parts = text.split(".")
    if len(parts) != 3:
        raise DecodeError("malformed")
    try:
        hb, pb, sig = b64d(parts[0]), b64d(parts[1]), b64d(parts[2])
    except ValueError as exc:
        raise DecodeError("malformed") from exc
    try:
        header = _header_decoder.decode(hb)
    except (msgspec.ValidationError, msgspec.DecodeError):
        header = None
    if header is None or header.alg != ALG:
        try:
            raw_header = msgspec.json.decode(hb)
        except msgspec.DecodeError as exc:
            raise DecodeError("malformed") from exc
        if not isinstance(raw_header, dict) or raw_header.get("alg") != ALG:
            raise DecodeError("alg" if isinstance(raw_header, dict) else "malformed")
        raise DecodeError("malformed")
    try:
        payload = (
            cast("_T", _claims_decoder.decode(pb))
            if payload_type is Claims
            else msgspec.json.decode(pb, type=payload_type)
        )
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise DecodeError("malformed") from exc
    if len(sig) != 64:
        raise DecodeError("malformed")
    if header.typ != typ:
        raise DecodeError("header")
    return header, payload, hb, pb, f"{parts[0]}.{parts[1]}".encode("ascii"), sig


def check_canonical(header: msgspec.Struct, header_bytes: bytes, payload: Any, payload_bytes: bytes) -> bool:
    """Whether header and payload bytes are exactly the RFC 8785 forms of their decoded values."""
    return _is_canonical(header, header_bytes) and _is_canonical(payload, payload_bytes)


_MAX_SAFE: Final = 2**53
_ASTRAL_LEAD: Final = re.compile(rb"[\xf0-\xf4]")


def _safe_value(v: Any) -> bool:
    """No float and no integer beyond 2**53 inside ``v`` (where msgspec and JCS print numbers differently)."""
    if isinstance(v, str | bool) or v is None:
        return True
    if isinstance(v, int):
        return -_MAX_SAFE <= v <= _MAX_SAFE
    if isinstance(v, list | tuple):
        return all(map(_safe_value, v))
    if isinstance(v, dict):
        return all(map(_safe_value, v.values()))
    return False


def _numbers_print_alike(payload: Any) -> bool:
    """Whether every number in ``payload`` prints the same in msgspec and RFC 8785 (ints within 2**53).

    Integer fields of our Structs are bounded by their ``__post_init__``; only constraint values can hold floats.
    """
    if isinstance(payload, Claims):
        for cap in payload.caps:
            for cs in cap.args.values():
                for c in cs:
                    if isinstance(c, Range) and not (_safe_value(c.min) and _safe_value(c.max)):
                        return False
                    if isinstance(c, Exact) and not _safe_value(c.value):
                        return False
                    if isinstance(c, OneOf) and not _safe_value(c.values):
                        return False
        return True
    return isinstance(payload, Header) or getattr(payload, "__jcs_plain__", False) is True


def _is_canonical(value: msgspec.Struct, data: bytes) -> bool:
    """Whether ``data`` is exactly the RFC 8785 form of the Struct ``value``.

    Fast path: msgspec's sorted compact encoding escapes strings exactly like RFC 8785 and prints integers alike, so
    when it equals ``data``, every number prints alike, and no key holds a non-BMP character (UTF-8 lead bytes
    0xF0..0xF4, where code-point order and UTF-16 order differ), ``data`` is canonical. Otherwise run full JCS.
    """
    try:
        fast = msgspec.json.encode(value, order="sorted")
    except (TypeError, ValueError, OverflowError):
        fast = b""
    if fast == data and (data.isascii() or _ASTRAL_LEAD.search(data) is None) and _numbers_print_alike(value):
        return True
    try:
        return canonicalize(msgspec.to_builtins(value)) == data
    except CanonicalizationError:
        return False


def decode_link(text: str, digest: str | None = None) -> Link:
    """Decode one link of a chain (``digest``: its :func:`link_digest`, when the caller already has it)."""
    if not text.isascii():
        raise DecodeError("malformed")
    header, claims, hb, pb, signing_input, sig = decode_jws(text, Claims, LINK_TYP)
    return Link(text, digest or link_digest(text), header, claims, hb, pb, signing_input, sig)


def decode_chain(token: object) -> list[Link]:
    """Decode every link of a chain without verifying anything (for ``inspect``)."""
    if not isinstance(token, str) or not token:
        raise DecodeError("malformed")
    return [decode_link(part) for part in token.split(CHAIN_SEPARATOR)]


def encode_link(claims: Claims, key: SigningKey) -> str:
    """Sign one link with ``key``; the header ``kid`` is the signer's kid."""
    return encode_jws(Header(alg=ALG, typ=LINK_TYP, kid=key.kid), claims, key)
