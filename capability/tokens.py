"""Compact JWS (RFC 7515) encoding of chain links, with a strict, canonical profile.

Each link is ``BASE64URL(header) "." BASE64URL(payload) "." BASE64URL(signature)``; a chain is its links joined
with ``~``, root first. The profile is stricter than JWS: ``alg`` must be ``EdDSA`` (Ed25519, RFC 8037), header and
payload must be the RFC 8785 canonical bytes of their JSON, and base64url must be unpadded and canonical. Any other
JOSE library can still read and verify a single link, because it is a valid JWS.

This module parses and signs; it makes no trust decisions.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final, NamedTuple, TypeVar, cast

import msgspec

from capability._b64 import b64d, b64e
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
        raw_header = msgspec.json.decode(hb)
    except msgspec.DecodeError as exc:
        raise DecodeError("malformed") from exc
    if not isinstance(raw_header, dict) or raw_header.get("alg") != ALG:
        raise DecodeError("alg" if isinstance(raw_header, dict) else "malformed")
    try:
        header = msgspec.convert(raw_header, Header)
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
    try:
        return canonicalize(msgspec.to_builtins(header)) == header_bytes and (
            canonicalize(msgspec.to_builtins(payload)) == payload_bytes
        )
    except CanonicalizationError:
        return False


def decode_link(text: str) -> Link:
    """Decode one link of a chain."""
    if not text.isascii():
        raise DecodeError("malformed")
    header, claims, hb, pb, signing_input, sig = decode_jws(text, Claims, LINK_TYP)
    return Link(text, link_digest(text), header, claims, hb, pb, signing_input, sig)


def decode_chain(token: object) -> list[Link]:
    """Decode every link of a chain without verifying anything (for ``inspect``)."""
    if not isinstance(token, str) or not token:
        raise DecodeError("malformed")
    return [decode_link(part) for part in token.split(CHAIN_SEPARATOR)]


def encode_link(claims: Claims, key: SigningKey) -> str:
    """Sign one link with ``key``; the header ``kid`` is the signer's kid."""
    return encode_jws(Header(alg=ALG, typ=LINK_TYP, kid=key.kid), claims, key)
