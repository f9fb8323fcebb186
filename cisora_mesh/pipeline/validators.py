"""Validators for DLP candidates: checksums, structure rules and placeholder filters.

A regex finds text of the right *shape*; a validator decides whether that text is plausibly the real thing. They
run only on regex candidates (never over the whole text), so they may be written in plain Python.

Every validator takes the candidate string and returns a confidence factor in `[0, 1]`: `0.0` rejects the
candidate, `1.0` keeps the rule's base confidence, anything in between lowers it (e.g. a private IP address is
less telling than a public one). Validators never raise on odd input and never log the value they look at.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
import re
import string
from collections import Counter
from collections.abc import Callable
from typing import Final, TypeAlias

Validator: TypeAlias = Callable[[str], float]

# --- generic helpers ---------------------------------------------------------------------------------------------


def shannon_entropy(value: str, counts: Counter[str] | None = None) -> float:
    """Shannon entropy in bits per character (0 for empty input). Random base64 scores ~5-6, English ~3-4.

    H = log2(n) - (1/n) * sum(c * log2(c)) over the character counts c, which avoids a division per term.
    """
    if not value:
        return 0.0
    length = len(value)
    counts = counts if counts is not None else Counter(value)
    return max(0.0, math.log2(length) - sum(c * math.log2(c) for c in counts.values()) / length)


# Substrings that mark documentation examples, templates and redacted values rather than live secrets.
_PLACEHOLDER_MARKERS: Final = (
    "example",
    "xxxx",
    "****",
    "....",
    "<",
    ">",
    "${",
    "#{",
    "$(",
    "{{",
    "%s",
    "your_",
    "your-",
    "yourkey",
    "redacted",
    "placeholder",
    "changeme",
    "dummy",
    "sample",
    "insert",
    "replace",
)


_PLACEHOLDER_RE: Final = re.compile("|".join(re.escape(m) for m in _PLACEHOLDER_MARKERS))


def is_placeholder(value: str, counts: Counter[str] | None = None) -> bool:
    """True for documentation/template values: `AKIAIOSFODNN7EXAMPLE`, `xxxx...`, `<your-key>`, `aaaa...`.

    A run of one repeated character over most of the value (`sk_live_0000000000...`) is also a placeholder.
    """
    if not value or _PLACEHOLDER_RE.search(value.lower()) is not None:
        return True
    most_common = max((counts if counts is not None else Counter(value)).values())
    return most_common >= max(8, int(len(value) * 0.6))


# detect-secrets' "sequential string" heuristic: runs like `abcdefgh` or `12345678` are typed, not generated.
# Used to lower confidence only: a real key that happens to contain such a run must still be reported.
_SEQUENCES: Final = ("abcdefghijklmnopqrstuvwxyz", "0123456789", "zyxwvutsrqponmlkjihgfedcba", "9876543210")
_SEQ_RUN: Final = 8


# All runs as one alternation of literals (compiled to a single automaton by `re`; literals cannot backtrack).
_SEQ_RE: Final = re.compile(
    "|".join(seq[i : i + _SEQ_RUN] for seq in _SEQUENCES for i in range(len(seq) - _SEQ_RUN + 1))
)


def _has_sequence(lowered: str) -> bool:
    return _SEQ_RE.search(lowered) is not None


_LOWER: Final = frozenset(string.ascii_lowercase)
_UPPER: Final = frozenset(string.ascii_uppercase)
_DIGIT: Final = frozenset(string.digits)


def _classes(value: str) -> int:
    """How many of lower/upper/digit/other character classes appear (set operations: no per-character loop)."""
    chars = set(value)
    lower, upper, digit = bool(chars & _LOWER), bool(chars & _UPPER), bool(chars & _DIGIT)
    other = bool(chars - _LOWER - _UPPER - _DIGIT)
    return lower + upper + digit + other


def random_token(value: str, *, min_entropy: float = 3.0) -> float:
    """Accept a provider token body that looks random (not a placeholder, enough entropy)."""
    counts = Counter(value)
    if is_placeholder(value, counts) or shannon_entropy(value, counts) < min_entropy:
        return 0.0
    return 1.0


def generic_secret(value: str) -> float:
    """Accept the value of a `password=` / `secret=` style assignment only when it looks like a real credential.

    The key name gives weak evidence, so the value must carry the rest: at least 8 characters, two character
    classes, >= 3 bits/char of entropy, and not a reference to something else (variables, env lookups, calls).
    """
    stripped = value.strip("\"'`")
    if len(stripped) < 8:
        return 0.0
    # References rather than values: $VAR, \\$VAR, %VAR%, #id, /a/b, ./x, URLs, AWS ARNs, calls, env lookups.
    if (
        stripped[0] in "$%@&*#/.\\"
        or "(" in stripped
        or "://" in stripped
        or stripped.startswith("arn:")
        or stripped.lower().startswith(("env.", "os.", "process."))
    ):
        return 0.0
    if stripped.lower() in {"true", "false", "null", "none", "password", "secret"}:
        return 0.0
    counts = Counter(stripped)
    if is_placeholder(stripped, counts):
        return 0.0
    entropy = shannon_entropy(stripped, counts)
    if _classes(stripped) < 2 or entropy < 3.0:
        return 0.0
    # Only lower-case letters and separators: an identifier or a route (`cms/sites/passwords#edit`), not a
    # generated credential.
    if not set(stripped) & (_UPPER | _DIGIT):
        return 0.0
    # A typed run (`abcdefgh`, `12345678`) suggests a made-up example value: still reported, with less confidence.
    if _has_sequence(stripped.lower()):
        return 0.5
    # Long, high-entropy values are much more likely to be machine-generated credentials than prose words.
    return 1.0 if entropy >= 3.5 and len(stripped) >= 16 else 0.8


def connection_password(value: str) -> float:
    """Password part of `scheme://user:password@host`; rejects templates like `${DB_PASS}` and `password`."""
    if is_placeholder(value) or value.lower() in {"password", "pass", "passwd", "pwd", "secret", "user"}:
        return 0.0
    if value.startswith(("$", "%", "{")):
        return 0.0
    return 1.0


# --- PII ------------------------------------------------------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    """ISO/IEC 7812-1 Annex B (Luhn mod 10) check over a string of ASCII digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _iin_ok(digits: str) -> bool:
    """Issuer identification number ranges of the major networks (ISO/IEC 7812 IINs as published by each)."""
    n = len(digits)
    two = int(digits[:2])
    four = int(digits[:4])
    three = int(digits[:3])
    if digits[0] == "4":  # Visa
        return n in (13, 16, 19)
    if 51 <= two <= 55 or 2221 <= four <= 2720:  # Mastercard
        return n == 16
    if two in (34, 37):  # American Express
        return n == 15
    if digits.startswith("6011") or two == 65 or 644 <= three <= 649:  # Discover
        return 16 <= n <= 19
    if 3528 <= four <= 3589:  # JCB
        return 16 <= n <= 19
    if four in (2131, 1800):  # JCB, legacy 15-digit ranges
        return n == 15
    if two in (36, 38, 39) or 300 <= three <= 305:  # Diners Club
        return 14 <= n <= 19
    if two == 62:  # UnionPay
        return 16 <= n <= 19
    if two in (50, 56, 57, 58) or digits[:2] in ("67", "63"):  # Maestro
        return 12 <= n <= 19
    return False


def payment_card(value: str) -> float:
    """Luhn-valid number of 13-19 digits with a known network prefix; separators are spaces or dashes."""
    digits = value.replace(" ", "").replace("-", "")
    if not digits.isdigit() or not 13 <= len(digits) <= 19:
        return 0.0
    if len(set(digits)) < 2 or not _iin_ok(digits) or not luhn_ok(digits):
        return 0.0
    return 1.0


# SSA: never issued (Woolworth wallet card 078-05-1120, and 219-09-9999 from an SSA advertisement).
_SSN_VOID: Final = frozenset({"078051120", "219099999"})


def us_ssn(value: str) -> float:
    """US SSN structure (SSA, since 2011 randomisation): area not 000/666/900-999, group not 00, serial not 0000."""
    digits = "".join(c for c in value if c.isdigit())
    if len(digits) != 9 or digits in _SSN_VOID:
        return 0.0
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return 0.0
    return 1.0


def nanp_phone(value: str) -> float:
    """North American Numbering Plan: NPA and NXX are [2-9]XX, and the NPA is not an N11 service code.

    A bare run of ten digits is also an order number or an id as often as a phone number, so it keeps less
    confidence than a number written with separators or parentheses.
    """
    number = value.lower().split("x", 1)[0]  # drop an extension ("x123", "ext. 123")
    digits = "".join(c for c in number if c.isdigit())
    if len(digits) == 11 and digits[0] == "1":
        digits = digits[1:]
    if len(digits) != 10:
        return 0.0
    area, exchange = digits[:3], digits[3:6]
    if area[0] in "01" or exchange[0] in "01" or area[1:] == "11":
        return 0.0
    if len(set(digits)) < 3:
        return 0.0
    return 1.0 if any(c in number for c in " .-()+") else 0.6


def ipv4(value: str) -> float:
    """A dotted-quad that `ipaddress` accepts (octets 0-255, no leading zeros); loopback and 0.0.0.0 carry no
    information and are rejected, private/link-local/documentation ranges keep less confidence."""
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        return 0.0
    if address.is_loopback or address.is_unspecified or address.is_multicast:
        return 0.0
    return 0.8 if (address.is_private or address.is_link_local or address.is_reserved) else 1.0


def ipv6(value: str) -> float:
    """RFC 4291 text form, validated by `ipaddress` (RFC 5952 variants accepted); `::`/`::1` rejected.

    Identifiers made only of hex letters (`add::beef`, `Cafe::Face` paths in code) parse as addresses but are
    almost never real ones, so a digit is required.
    """
    if not any(c.isdigit() for c in value):
        return 0.0
    try:
        address = ipaddress.IPv6Address(value)
    except ValueError:
        return 0.0
    if address.is_loopback or address.is_unspecified or address.is_multicast:
        return 0.0
    return 0.8 if (address.is_private or address.is_link_local) else 1.0


def email(value: str) -> float:
    """RFC 5321 limits (local part <= 64, labels <= 63 and not starting/ending with '-').

    RFC 2606 reserved domains (example.com, .test, .invalid, ...) cannot be real mailboxes, so they keep less
    confidence; they are still reported because a tenant may use them in tests.
    """
    local, _, domain = value.rpartition("@")
    if not local or len(local) > 64 or local.startswith(".") or local.endswith(".") or ".." in local:
        return 0.0
    labels = domain.lower().split(".")
    if any(not label or len(label) > 63 or label[0] == "-" or label[-1] == "-" for label in labels):
        return 0.0
    if labels[-1] in ("test", "invalid", "localhost", "example") or (
        len(labels) >= 2 and labels[-2] == "example" and labels[-1] in ("com", "org", "net")
    ):
        return 0.5
    return 1.0


def iban(value: str) -> float:
    """ISO 13616 IBAN: country code, two check digits, BBAN; valid when the mod-97 remainder is 1 (ISO 7064)."""
    compact = value.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return 0.0
    rearranged = compact[4:] + compact[:4]
    numeric = "".join(str(int(c, 36)) for c in rearranged)
    return 1.0 if int(numeric) % 97 == 1 else 0.0


# --- secrets --------------------------------------------------------------------------------------------------------


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def jwt(value: str) -> float:
    """JWS compact serialisation (RFC 7515 section 7.1, used by RFC 7519): the header is base64url JSON with `alg`.

    A payload that does not decode to a JSON object lowers the confidence (it may be a JWE or a truncated token).
    """
    parts = value.split(".")
    if len(parts) < 3:
        return 0.0
    header = _json_segment(parts[0])
    payload = _json_segment(parts[1])
    if header is None:
        # A header that no longer decodes (copy damage, truncation) next to a JSON payload is still token-shaped.
        return 0.6 if payload is not None else 0.0
    if not isinstance(header.get("alg"), str):  # RFC 7515 s4.1.1: "alg" MUST be present
        return 0.0
    return 1.0 if payload is not None else 0.7


def _json_segment(segment: str) -> dict[str, object] | None:
    try:
        value = json.loads(_b64url_decode(segment))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def base64_private_key(value: str) -> float:
    """Base64 of an RFC 7468 PEM block: decode the first bytes and look for a PRIVATE KEY header."""
    head = value[: min(len(value), 120) // 4 * 4]
    try:
        decoded = base64.b64decode(head)
    except (ValueError, binascii.Error):
        return 0.0
    return 1.0 if b"PRIVATE KEY-----" in decoded else 0.0


def private_key(value: str) -> float:
    """RFC 7468 PEM block (or its first part): the header alone is strong evidence; a body makes it certain."""
    parts = value.split("-----")
    body = parts[2] if len(parts) > 2 else ""
    body_chars = sum(c.isalnum() for c in body)
    if "example" in body.lower() or "..." in body:
        return 0.8
    return 1.0 if body_chars >= 40 else 0.9


def aws_access_key(value: str) -> float:
    """AWS access key id: rejects the documented example key ids (`AKIAIOSFODNN7EXAMPLE`) and fillers."""
    return 0.0 if is_placeholder(value) else 1.0


def aws_secret_key(value: str) -> float:
    """40-character AWS secret access key: 30 random bytes in base64, so entropy is high (> 4 bits/char)."""
    return random_token(value, min_entropy=4.0)
