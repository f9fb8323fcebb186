"""Revocation by token id (``jti``). A chain is refused when any of its links is revoked, so revoking a token
revokes every token delegated from it.

A :class:`RevocationList` can be exported as a signed list: a compact JWS (``typ: cisora-rev+jws``, EdDSA, ``kid``
of a trust anchor) over ``{"iat": ..., "iss": kid, "jtis": [sorted], "seq": n}``. :meth:`RevocationList.load`
verifies it against a :class:`KeySet` and refuses a list older than ``min_seq`` (rollback).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import ClassVar, Final

import msgspec

from capability._reasons import Reason
from capability.errors import InvalidCapability
from capability.keys import KeySet, SigningKey
from capability.model import REVOCATION_TYP, Header
from capability.tokens import ALG, DecodeError, check_canonical, decode_jws, encode_jws

__all__ = ["RevocationList"]

MAX_LIST_BYTES: Final = 4 * 1024 * 1024
_log: Final = logging.getLogger("capability.revocation")


class _RevocationClaims(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    iat: int
    iss: str
    jtis: tuple[str, ...]
    seq: int

    __jcs_plain__: ClassVar[bool] = True  # only strings and bounded ints: msgspec output is JCS

    def __post_init__(self) -> None:
        if not (0 <= self.iat <= 2**53 and 0 <= self.seq <= 2**53):
            raise ValueError("iat/seq out of range")


class RevocationList:
    """A set of revoked token ids (in memory)."""

    def __init__(self, jtis: Iterable[str] = (), *, seq: int = 0) -> None:
        self._jtis: set[str] = set(jtis)
        self.seq = seq

    def revoke(self, jti: str) -> None:
        """Revoke ``jti`` (and so every chain that contains it)."""
        self._jtis.add(jti)
        self.seq += 1

    def is_revoked(self, jti: str) -> bool:
        """Whether ``jti`` is revoked."""
        return jti in self._jtis

    def any_revoked(self, jtis: Iterable[str]) -> bool:
        """Whether any of ``jtis`` is revoked."""
        return not self._jtis.isdisjoint(jtis)

    def __len__(self) -> int:
        return len(self._jtis)

    def export(self, key: SigningKey, *, now: int) -> str:
        """Sign the list with a trust-anchor key."""
        claims = _RevocationClaims(iat=int(now), iss=key.kid, jtis=tuple(sorted(self._jtis)), seq=self.seq)
        return encode_jws(Header(alg=ALG, typ=REVOCATION_TYP, kid=key.kid), claims, key)

    @classmethod
    def load(cls, text: object, trust: KeySet, *, min_seq: int = 0) -> RevocationList:
        """Verify and load a signed list.

        Raises:
            InvalidCapability: malformed, unknown signer, bad signature, non-canonical or older than ``min_seq``.
        """
        reason = Reason.OK
        try:
            if not isinstance(text, str) or len(text) > MAX_LIST_BYTES or not text.isascii():
                raise DecodeError("malformed")
            header, claims, hb, pb, signing_input, sig = decode_jws(text, _RevocationClaims, REVOCATION_TYP)
        except DecodeError:
            _log.info("revocation list rejected: reason=%s", Reason.MALFORMED.value)
            raise InvalidCapability from None
        key = trust.get(header.kid or "")
        if key is None or header.kid != claims.iss or not trust.valid_at(claims.iss, claims.iat):
            reason = Reason.UNKNOWN_ISSUER
        elif not check_canonical(header, hb, claims, pb) or list(claims.jtis) != sorted(set(claims.jtis)):
            reason = Reason.NON_CANONICAL
        elif not key.verify(sig, signing_input):
            reason = Reason.BAD_SIGNATURE
        elif claims.seq < min_seq:
            reason = Reason.STALE_REVOCATION_LIST
        if reason is not Reason.OK:
            _log.info("revocation list rejected: reason=%s", reason.value)
            raise InvalidCapability
        return cls(claims.jtis, seq=claims.seq)
