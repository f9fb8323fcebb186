"""Private verification-failure reasons. Logged and audited, never put in an exception message."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a verification was denied (or ``OK``)."""

    OK = "ok"
    MALFORMED = "malformed"
    OVERSIZED = "oversized"
    DEPTH_EXCEEDED = "depth_exceeded"
    BAD_ALGORITHM = "bad_algorithm"
    BAD_HEADER = "bad_header"
    NON_CANONICAL = "non_canonical"
    UNKNOWN_ISSUER = "unknown_issuer"
    KID_MISMATCH = "kid_mismatch"
    ISSUER_KEY_NOT_VALID = "issuer_key_not_valid"
    BAD_SIGNATURE = "bad_signature"
    BROKEN_CHAIN = "broken_chain"
    WIDENED = "widened"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WRONG_AUDIENCE = "wrong_audience"
    REVOKED = "revoked"
    NOT_GRANTED = "not_granted"
    DESCRIPTOR_MISMATCH = "descriptor_mismatch"
    POP_MISSING = "pop_missing"
    POP_MALFORMED = "pop_malformed"
    POP_BAD_SIGNATURE = "pop_bad_signature"
    POP_MISMATCH = "pop_mismatch"
    POP_STALE = "pop_stale"
    POP_REPLAYED = "pop_replayed"
    REPLAY_CACHE_FULL = "replay_cache_full"
    BUDGET_EXHAUSTED = "budget_exhausted"
    AUDIT_FAILED = "audit_failed"
    STALE_REVOCATION_LIST = "stale_revocation_list"
