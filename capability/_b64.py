"""Strict base64url without padding (RFC 7515 section 2). Non-canonical encodings are refused."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final

_ALPHABET: Final = re.compile(r"[A-Za-z0-9_-]*")
_TO_STANDARD: Final = bytes.maketrans(b"-_", b"+/")
_VALUE: Final = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}
# unused low bits of the last character: 4 when len % 4 == 2 (one byte), 2 when len % 4 == 3 (two bytes)
_SPARE_BITS_MASK: Final = {0: 0, 2: 0x0F, 3: 0x03}


def b64e(data: bytes) -> str:
    """Encode bytes as base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    """Decode base64url without padding, rejecting padding, other alphabets and non-zero trailing bits.

    Raises:
        ValueError: the text is not the one canonical encoding of some byte string.
    """
    rem = len(text) % 4
    if rem == 1 or _ALPHABET.fullmatch(text) is None:
        raise ValueError("not base64url")
    if rem and _VALUE[text[-1]] & _SPARE_BITS_MASK[rem]:
        raise ValueError("non-canonical base64url")  # e.g. "AB" vs "AA"
    try:
        return binascii.a2b_base64(text.encode("ascii").translate(_TO_STANDARD) + b"=" * (-rem % 4))
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc
