"""Strict base64url without padding (RFC 7515 section 2). Non-canonical encodings are refused."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final

_ALPHABET: Final = re.compile(r"[A-Za-z0-9_-]*")


def b64e(data: bytes) -> str:
    """Encode bytes as base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    """Decode base64url without padding, rejecting padding, other alphabets and non-zero trailing bits.

    Raises:
        ValueError: the text is not the one canonical encoding of some byte string.
    """
    if len(text) % 4 == 1 or _ALPHABET.fullmatch(text) is None:
        raise ValueError("not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc
    if b64e(data) != text:  # non-zero trailing bits, e.g. "AB" vs "AA"
        raise ValueError("non-canonical base64url")
    return data
