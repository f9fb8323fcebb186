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
import itertools
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
    """Accept a provider token body that looks random (not a placeholder, enough entropy, not typed filler)."""
    counts = Counter(value)
    if is_placeholder(value, counts) or shannon_entropy(value, counts) < min_entropy:
        return 0.0
    if sequence_share(value) >= _TYPED_SHARE or _fake_uuid(value):
        return 0.0
    return 1.0


_CAMEL_RE: Final = re.compile(r"(?:[A-Z][a-z]+)+")


def generic_secret(value: str) -> float:
    """Accept the value of a `password=` / `secret=` style assignment only when it looks like a real credential.

    The key name gives weak evidence, so the value must carry the rest: at least 8 characters, two character
    classes, >= 3 bits/char of entropy, and not a reference to something else (variables, env lookups, calls).
    """
    stripped = value.strip("\"'`")
    if len(stripped) < 8:
        return 0.0
    # References rather than values: $VAR, \\$VAR, %VAR%, #id, /a/b, ./x, URLs, AWS ARNs, calls, env lookups.
    if _is_reference(stripped):
        return 0.0
    if stripped.lower() in {"true", "false", "null", "none", "password", "secret"}:
        return 0.0
    # Letters only in Capitalised or CamelCase words: a type or class name (`password: Optional`), not a secret.
    if _CAMEL_RE.fullmatch(stripped):
        return 0.0
    counts = Counter(stripped)
    if is_placeholder(stripped, counts):
        return 0.0
    entropy = shannon_entropy(stripped, counts)
    if _classes(stripped) < 2 or entropy < 3.0:
        return 0.0
    # Typed filler (`abcdefgh12345678`, `a1b2c3d4e5f6`): an example value, not a credential; partly typed values
    # are still reported, with less confidence.
    typed = _typed_factor(stripped)
    if typed == 0.0:
        return 0.0
    # Only lower-case letters and separators: an identifier or a route (`cms/sites/passwords#edit`), not a
    # generated credential.
    if not set(stripped) & (_UPPER | _DIGIT):
        return 0.0
    if typed < 1.0:
        return 0.5
    # Long, high-entropy values are much more likely to be machine-generated credentials than prose words.
    return 1.0 if entropy >= 3.5 and len(stripped) >= 16 else 0.8


# Typed filler: runs (`abcdef`, `12345`, `9876`) and interleaved ones (`a1b2c3d4`, `d4c3b2a1`) are how people invent
# example values. The share of characters that continue such a run (next char = previous +-1, or the one two back
# +-1) is ~10% in a random token over 36 folded symbols and close to 100% in `abcdef1234567890...`.
_TYPED_SHARE: Final = 0.8  # at or above: filler (rejected by the generic rules)
_TYPED_HINT: Final = 0.5  # at or above: reported with lowered confidence
_REPEAT_SHARE: Final = 0.5  # k-gram repeat share at or above which a value is one chunk repeated
_REPEAT_HINT: Final = 0.3


def sequence_share(value: str) -> float:
    """Fraction of positions that continue an ascending or descending run, directly or interleaved."""
    folded = "".join(c for c in value.lower() if c.isalnum())  # separators do not break a typed run
    n = len(folded)
    if n < 4:
        return 0.0
    codes = [ord(c) for c in folded]
    hits = sum(
        1
        for i in range(1, n)
        if abs(codes[i] - codes[i - 1]) == 1
        or (i >= 2 and abs(codes[i] - codes[i - 2]) == 1 and codes[i - 1] != codes[i - 2])
    )
    return hits / (n - 1)


def repeated_share(value: str, k: int = 3) -> float:
    """Fraction of the value's k-grams that repeat an earlier one (`abcd1234abcd1234` ~0.5, random ~0)."""
    grams = [value[i : i + k] for i in range(len(value) - k + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


_REFERENCE_PREFIXES: Final = ("env.", "os.", "process.", "self.", "this.", "config.", "settings.", "secrets.")


def _is_reference(value: str) -> bool:
    """Values that point at a credential rather than hold one: $VAR, %VAR%, paths, URLs, ARNs, calls, lookups."""
    lowered = value.lower()
    return (
        value[0] in "$%@&*#/.\\~"
        or "(" in value
        or "://" in value
        or lowered.startswith(("arn:", *_REFERENCE_PREFIXES))
        or "${" in value
    )


# An identifier, not a credential: every `_ - . :`-separated part is a word, a short number or a word with a short
# number (`api-key-v2`, `MY_APP_SECRET_2`, `user.settings.token`). Generated tokens mix cases and digits inside a part.
_SEPARATORS_RE: Final = re.compile(r"[_.\-:/]+")


def _wordy(part: str, several: bool) -> bool:
    if part.isalpha() or (part.isdigit() and len(part) <= 4):
        return True
    # Among several parts, a word with a short number (`v2`, `Prod01`) in one letter case is still a name part.
    # (map/filter keep the per-character loops in C: these run on every candidate key value.)
    if not several or sum(map(str.isdigit, part)) > 2:
        return False
    letters = "".join(filter(str.isalpha, part))
    return letters.islower() or letters.isupper() or letters.istitle()


def _is_identifier(value: str) -> bool:
    parts = [p for p in _SEPARATORS_RE.split(value) if p]
    several = len(parts) > 1
    return bool(parts) and all(_wordy(p, several) for p in parts)


_UUID_RE: Final = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_UUID_LAYOUT_RE: Final = re.compile(r"[0-9A-Za-z]{8}-(?:[0-9A-Za-z]{4}-){3}[0-9A-Za-z]{12}")


def _fake_uuid(value: str) -> bool:
    """RFC 9562 UUIDs are hexadecimal: the 8-4-4-4-12 layout with other letters is hand-typed imitation."""
    return any(_UUID_RE.fullmatch(m.group()) is None for m in _UUID_LAYOUT_RE.finditer(value))


def _typed_factor(value: str) -> float:
    """0 for typed filler, 0.4 for values that are largely typed runs or repeats, else 1."""
    seq, rep = sequence_share(value), repeated_share(value)
    if seq >= _TYPED_SHARE or rep >= _REPEAT_SHARE:
        return 0.0
    if seq >= _TYPED_HINT or rep >= _REPEAT_HINT or _has_sequence(value.lower()):
        return 0.4
    return 1.0


def generic_key(value: str) -> float:
    """Value assigned to a `*_key` / `*_token` / `auth` style name (no password semantics): must look generated.

    Thresholds (key names are weak evidence, so the value carries the rest):
    - length >= 16: provider API keys are 16-64+ characters; shorter values under such names are mostly ids, enum
      values or lengths;
    - letters and digits both present: random base62 of 16+ characters lacks a digit with p < 0.06, whereas
      identifiers and words (`ContentType`, `primary`) almost never hold one;
    - Shannon entropy >= 3.0 bits/char: random hex of length 16 scores ~3.5, base62 ~3.8+, while repetitive
      values (`aaaa1111aaaa1111`) and short-alphabet filler fall below;
    - not a placeholder, reference, identifier, typed sequence or repeated chunk.
    A UUID alone is a common key format (Heroku, many SaaS APIs) but also an ordinary record id: kept, lower.
    """
    stripped = value.strip("\"'`")
    if len(stripped) < 16 or _is_reference(stripped) or _is_identifier(stripped) or _fake_uuid(stripped):
        return 0.0
    chars = set(stripped)
    if not chars & _DIGIT or not chars & (_LOWER | _UPPER):
        return 0.0
    counts = Counter(stripped)
    if is_placeholder(stripped, counts) or shannon_entropy(stripped, counts) < 3.0:
        return 0.0
    typed = _typed_factor(stripped)
    if _UUID_RE.fullmatch(stripped):
        return min(typed, 0.6)
    return typed


def auth_header_token(value: str) -> float:
    """RFC 6750 bearer credential (b64token) or a scheme token (`token`, `SSWS`): must look generated."""
    counts = Counter(value)
    if len(value) < 12 or is_placeholder(value, counts) or _is_identifier(value):
        return 0.0
    if sequence_share(value) >= 0.5 or shannon_entropy(value, counts) < 3.0:
        return 0.0
    chars = set(value)
    # A random token mixes classes; a lower-case word run (`bearer token required`) does not.
    return 1.0 if _classes(value) >= 2 and chars & (_UPPER | _DIGIT) else 0.0


def basic_auth(value: str) -> float:
    """RFC 7617 Basic credentials: base64 of `user-id:password` (the colon is required)."""
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return 0.0
    _user, colon, password = decoded.partition(":")
    if not colon or not password or not decoded.isprintable() or is_placeholder(password):
        return 0.0
    return 1.0


def discord_bot_token(value: str) -> float:
    """Discord bot token: base64(bot user snowflake id) . timestamp . HMAC; the first part decodes to 17-20 digits."""
    first = value.split(".", 1)[0]
    try:
        decoded = _b64url_decode(first).decode("ascii")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return 0.0
    if not (decoded.isdigit() and 17 <= len(decoded) <= 20):
        return 0.0
    return random_token(value)


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
        return 13 <= n <= 19 or (n == 12 and digits[:4] in _MAESTRO_12)
    return False


# 12-digit numbers are Maestro-only (Mastercard's Maestro allows 12-19 digits). A bare 12-digit run is also an
# order number or an id, so the short length is accepted only under the published Maestro IINs (5018, 5020, 5038,
# 5893, 6304, 6759, 6761-6763), not the whole 50/56-69 range.
_MAESTRO_12: Final = frozenset({"5018", "5020", "5038", "5893", "6304", "6759", "6761", "6762", "6763"})


def payment_card(value: str) -> float:
    """Luhn-valid number of 12-19 digits with a known network prefix; separators are spaces or dashes."""
    digits = value.replace(" ", "").replace("-", "")
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
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


# Dates written with the separators phone numbers use (2024-05-01, 01.02.2023, 12/05/24): day <= 31, month <= 12.
_DATE_RE: Final = re.compile(r"(\d{1,4})[./\-](\d{1,2})[./\-](\d{2,4})")


_CC_PREFIX_RE: Final = re.compile(r"(?:\+|00)\d{1,3}[ .\-]?")


def _is_date(number: str) -> bool:
    """The whole number (after any `+cc` / `00cc` prefix) reads as a calendar date."""
    number = number.strip()
    return _date_like(number) or _date_like(_CC_PREFIX_RE.sub("", number, count=1))


def _date_like(number: str) -> bool:
    match = _DATE_RE.fullmatch(number)
    if match is None:
        return False
    a, b, c = (int(g) for g in match.groups())
    if len(match.group(1)) == 4:
        return 1 <= b <= 12 and 1 <= c <= 31
    return 1 <= a <= 31 and 1 <= b <= 31 and min(a, b) <= 12


def _phone_digits(number: str) -> str:
    return "".join(c for c in number if c.isdigit())


_DIGIT_GROUP_RE: Final = re.compile(r"\d+")


def _counting(number: str) -> bool:
    """Groups that count (`01 02 03 04`, `10 20 30`): a table header or a list, not a subscriber number."""
    groups = [int(g) for g in _DIGIT_GROUP_RE.findall(number)]
    if len(groups) < 3:
        return False
    steps = {b - a for a, b in itertools.pairwise(groups)}
    return len(steps) == 1 and steps != {0}


def _phone_shape_ok(number: str, digits: str) -> bool:
    """Shared look-alike filters: dates, a single repeated digit, typed runs (`0123 4567 89`), counting groups.

    Digit-to-digit steps of +-1 make up ~35% of a random number's transitions; typed ones score 0.7 and above.
    """
    if _is_date(number) or len(set(digits)) < 3 or _counting(number):
        return False
    return not _has_sequence(digits) and sequence_share(digits) < 0.7


def intl_phone(value: str) -> float:
    """ITU-T E.164 number written with `+` (or the `00` international prefix): country code + national number.

    E.164 caps the full number at 15 digits; no country's numbers are shorter than 8 with the country code. The
    `(0)` national trunk digit that some countries print (`+44 (0)20 ...`) is not part of the number. `+1` numbers
    that satisfy the NANP structure are left to the US rule (so each is reported once); those that do not (an
    exchange starting with 1, as generators print) are still phone numbers once written with `+1`.
    """
    number = value.lower().split("x", 1)[0].split("ext", 1)[0]
    body = number.replace("(0)", "")
    digits = _phone_digits(body)
    if body.lstrip().startswith("00"):
        digits = digits[2:]
        if not any(c in body for c in " .-()"):
            return 0.0  # a bare 00-prefixed digit run is an id, not a dialled number
    if not 8 <= len(digits) <= 15 or digits[0] == "0" or not _phone_shape_ok(number, digits):
        return 0.0
    if digits[0] == "1" and body.lstrip().startswith("+") and nanp_phone(body) > 0:
        return 0.0
    return 1.0


_ZIP4_RE: Final = re.compile(r"\d{5}-\d{4}")


def national_phone(value: str) -> float:
    """A national number with its trunk prefix `0` (ITU-T E.164 national format, as printed across Europe and
    Oceania): 9-11 digits in separated groups, the second digit not 0 (`00` is the international prefix)."""
    digits = _phone_digits(value)
    if not 9 <= len(digits) <= 11 or digits[0] != "0" or digits[1] == "0":
        return 0.0
    if _ZIP4_RE.fullmatch(value.strip()):
        return 0.0  # a US ZIP+4 code (5-4 digits), a grouping no national numbering plan prints
    if not any(c in value for c in " .-()") or not _phone_shape_ok(value, digits):
        return 0.0
    return 1.0


def labelled_phone(value: str) -> float:
    """A number right after a `phone:` / `tel` / `mobile` / `fax` label: 7-15 digits (E.164 maximum; 7 is the
    shortest subscriber number still in common use), not a date."""
    number = value.lower().split("x", 1)[0]
    digits = _phone_digits(number)
    if not 7 <= len(digits) <= 15 or not _phone_shape_ok(number, digits):
        return 0.0
    return 1.0


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
