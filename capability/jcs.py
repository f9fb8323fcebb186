"""RFC 8785 JSON Canonicalization Scheme (JCS).

Implements https://www.rfc-editor.org/rfc/rfc8785 :

* objects: members sorted by the UTF-16 code units of their names (section 3.2.3), no whitespace;
* strings: only ``"``, ``\\`` and U+0000..U+001F are escaped, with the short forms ``\\b \\t \\n \\f \\r`` and
  lower-case ``\\u00xx`` otherwise (section 3.2.2.2); lone surrogates are refused;
* numbers: IEEE 754 doubles printed with the ECMAScript ``Number.prototype.toString`` algorithm (section 3.2.2.3);
  NaN and the infinities are refused; ``-0`` prints as ``0``.

Python's ``repr(float)`` yields the shortest round-tripping digit string, the same digits ECMAScript picks, so only
the placement of the decimal point and exponent differs; :func:`_number` converts.
"""

from __future__ import annotations

import json.encoder
import math
from collections.abc import Callable
from typing import Any, Final

from capability.errors import CanonicalizationError

__all__ = ["canonicalize", "format_number"]

_encode_str: Callable[[str], str] = json.encoder.encode_basestring
_MAX_SAFE: Final = 2**53
_MAX_DEPTH: Final = 64


def format_number(value: float | int) -> str:
    """Serialise a JSON number the way ECMAScript ``Number.prototype.toString`` does."""
    if isinstance(value, bool):
        raise CanonicalizationError("bool is not a number")
    if isinstance(value, int):
        if -_MAX_SAFE <= value <= _MAX_SAFE:
            return str(value)
        try:
            value = float(value)
        except OverflowError as exc:
            raise CanonicalizationError("integer out of IEEE 754 double range") from exc
    if not math.isfinite(value):
        raise CanonicalizationError("NaN and Infinity have no JSON form")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    text = repr(abs(value))
    mantissa, _, exp_text = text.partition("e")
    exp = int(exp_text) if exp_text else 0
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    # position of the decimal point relative to the start of `digits` (ECMAScript's n)
    lead_zeros = len(int_part + frac_part) - len((int_part + frac_part).lstrip("0"))
    n = len(int_part) + exp - lead_zeros
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= n <= 21:
        out = digits + "0" * (n - k)
    elif 0 < n <= 21:
        out = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        e_text = f"+{e}" if e >= 0 else str(e)
        out = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + e_text
    return sign + out


def _utf16_key(name: str) -> bytes:
    return name.encode("utf-16-be", "surrogatepass")


def _write(value: Any, out: list[str], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise CanonicalizationError("nesting too deep")
    if isinstance(value, str):
        out.append(_encode_str(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int | float):
        out.append(format_number(value))
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for key in sorted(value, key=_utf16_key):
            if not isinstance(key, str):
                raise CanonicalizationError("object member names must be strings")
            if not first:
                out.append(",")
            first = False
            out.append(_encode_str(key))
            out.append(":")
            _write(value[key], out, depth + 1)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out, depth + 1)
        out.append("]")
    else:
        raise CanonicalizationError(f"{type(value).__name__} is not a JSON value")


def canonicalize(value: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of a parsed JSON value.

    Raises:
        CanonicalizationError: NaN/Infinity, lone surrogates, non-string keys or non-JSON types.
    """
    out: list[str] = []
    try:
        _write(value, out, 0)
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalizationError("lone surrogate in string") from exc
    except TypeError as exc:  # sorting mixed key types
        raise CanonicalizationError("object member names must be strings") from exc
