"""Ed25519 keys, key ids and the trust-anchor :class:`KeySet` (with rotation windows).

A key id (``kid``) is the base64url (no padding) SHA-256 of the raw 32-byte public key, so it is derived, never
asserted: two different keys cannot share a kid.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from capability._b64 import b64d, b64e
from capability.errors import CapabilityUsageError

__all__ = ["KeySet", "PublicKey", "SigningKey", "key_id"]

_RAW_LEN: Final = 32


def key_id(raw_public_key: bytes) -> str:
    """Return the kid of a raw Ed25519 public key: base64url(SHA-256(raw key))."""
    return b64e(hashlib.sha256(raw_public_key).digest())


class PublicKey:
    """An Ed25519 public key with its raw bytes and derived kid."""

    __slots__ = ("_key", "kid", "raw")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != _RAW_LEN:
            raise CapabilityUsageError("an Ed25519 public key is 32 bytes")
        self.raw: Final = bytes(raw)
        self._key: Final = Ed25519PublicKey.from_public_bytes(self.raw)
        self.kid: Final = key_id(self.raw)

    @classmethod
    def from_b64(cls, text: str) -> PublicKey:
        """Parse a base64url (no padding) raw public key."""
        try:
            return cls(b64d(text))
        except ValueError as exc:
            raise CapabilityUsageError("public key is not base64url of 32 bytes") from exc

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> PublicKey:
        """Parse an OKP/Ed25519 JWK (RFC 8037)."""
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not isinstance(jwk.get("x"), str):
            raise CapabilityUsageError("expected an OKP Ed25519 JWK")
        return cls.from_b64(jwk["x"])

    def b64(self) -> str:
        """The raw key as base64url without padding."""
        return b64e(self.raw)

    def to_jwk(self) -> dict[str, str]:
        """The key as a public JWK with our kid."""
        return {"kty": "OKP", "crv": "Ed25519", "x": self.b64(), "kid": self.kid}

    def verify(self, signature: bytes, message: bytes) -> bool:
        """Return True when ``signature`` is a valid Ed25519 signature of ``message``."""
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"PublicKey(kid={self.kid!r})"


class SigningKey:
    """An Ed25519 private key. Its repr never shows key material."""

    __slots__ = ("_key", "public")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key: Final = key
        self.public: Final = PublicKey(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    @classmethod
    def generate(cls) -> SigningKey:
        """Create a new random key."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """Load a key from its 32-byte seed (the JWK ``d`` value)."""
        if len(seed) != _RAW_LEN:
            raise CapabilityUsageError("an Ed25519 seed is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> SigningKey:
        """Load a private OKP/Ed25519 JWK; ``x`` must match ``d`` when present."""
        d = jwk.get("d")
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not isinstance(d, str):
            raise CapabilityUsageError("expected a private OKP Ed25519 JWK")
        try:
            key = cls.from_seed(b64d(d))
        except ValueError as exc:
            raise CapabilityUsageError("JWK d is not base64url of 32 bytes") from exc
        if "x" in jwk and jwk["x"] != key.public.b64():
            raise CapabilityUsageError("JWK x does not match d")
        return key

    @property
    def kid(self) -> str:
        """The kid of the public half."""
        return self.public.kid

    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` (Ed25519 is deterministic)."""
        return self._key.sign(message)

    def to_jwk(self) -> dict[str, str]:
        """Export as a private JWK (handle with care)."""
        seed = self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return {**self.public.to_jwk(), "d": b64e(seed)}

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r})"


@dataclass(frozen=True, slots=True)
class _Anchor:
    key: PublicKey
    not_before: float | None
    not_after: float | None


class KeySet:
    """Trust anchors: public keys allowed to sign root tokens and revocation lists.

    Rotation: add the new key, keep the old one with ``not_after`` set to the rotation time, so root tokens issued
    (``iat``) before the rotation keep verifying until they expire, while anything the old key signs afterwards is
    refused. ``remove`` drops a key at once (compromise).
    """

    def __init__(self, keys: Mapping[str, _Anchor] | None = None) -> None:
        self._anchors: dict[str, _Anchor] = dict(keys or {})

    @classmethod
    def of(cls, *keys: PublicKey | SigningKey) -> KeySet:
        """Build a KeySet from keys (private keys contribute their public half)."""
        ks = cls()
        for k in keys:
            ks.add(k.public if isinstance(k, SigningKey) else k)
        return ks

    def add(self, key: PublicKey, *, not_before: float | None = None, not_after: float | None = None) -> None:
        """Trust ``key`` for tokens whose ``iat`` falls inside ``[not_before, not_after]``."""
        self._anchors[key.kid] = _Anchor(key, not_before, not_after)

    def retire(self, kid: str, *, at: float) -> None:
        """Stop trusting ``kid`` for anything issued after ``at`` (rotation)."""
        anchor = self._anchors[kid]
        self._anchors[kid] = _Anchor(anchor.key, anchor.not_before, at)

    def remove(self, kid: str) -> None:
        """Stop trusting ``kid`` immediately."""
        self._anchors.pop(kid, None)

    def get(self, kid: str) -> PublicKey | None:
        """The key for ``kid`` or None."""
        anchor = self._anchors.get(kid)
        return anchor.key if anchor is not None else None

    def valid_at(self, kid: str, issued_at: float) -> bool:
        """Whether ``kid`` may have signed something issued at ``issued_at``."""
        a = self._anchors.get(kid)
        if a is None:
            return False
        return (a.not_before is None or issued_at >= a.not_before) and (a.not_after is None or issued_at <= a.not_after)

    def __contains__(self, kid: object) -> bool:
        return kid in self._anchors

    def __iter__(self) -> Iterator[str]:
        return iter(self._anchors)

    def __len__(self) -> int:
        return len(self._anchors)
