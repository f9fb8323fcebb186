"""A2A Agent Card signing and verification (A2A specification section 8.4).

The signed bytes are the RFC 8785 (JCS) form of the card with its top-level ``signatures`` member removed
(section 8.4.1). Each signature is a JWS with a detached payload (RFC 7515 appendix F):
``{"protected": BASE64URL(header), "signature": BASE64URL(sig)}`` where the signing input is
``protected "." BASE64URL(JCS(card without signatures))``. Every protected header must be a JSON object whose
``alg`` and ``kid`` are non-empty strings (section 8.4.2). We sign and verify only ``alg: EdDSA`` (Ed25519);
a card whose signatures use other algorithms is well-formed but does not verify here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from capability._b64 import b64d, b64e
from capability.errors import CanonicalizationError, CapabilityUsageError, InvalidAgentCard
from capability.jcs import canonicalize
from capability.keys import PublicKey, SigningKey

__all__ = ["card_signature_headers", "card_signing_payload", "sign_agent_card", "verify_agent_card"]


def card_signing_payload(card: Any) -> bytes:
    """The bytes an Agent Card signature covers: JCS of the card without its top-level ``signatures``.

    Raises:
        CanonicalizationError: the card holds a value JCS refuses (NaN, lone surrogate, ...).
    """
    if not isinstance(card, Mapping):
        raise CanonicalizationError("an agent card is a JSON object")
    return canonicalize({k: v for k, v in card.items() if k != "signatures"})


def sign_agent_card(
    card: Mapping[str, Any], key: SigningKey, *, kid: str | None = None, header: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Return a copy of ``card`` with one more EdDSA signature appended to ``signatures``.

    Args:
        card: the Agent Card (parsed JSON).
        key: the Ed25519 signing key.
        kid: the key id to publish (e.g. the ``kid`` in the agent's JWKS); defaults to our derived kid.
        header: extra protected-header members (e.g. ``typ``, ``jku``); ``alg`` and ``kid`` are set here.
    """
    protected = {**(header or {}), "alg": "EdDSA", "kid": kid or key.kid}
    protected_b64 = b64e(canonicalize(protected))
    signing_input = protected_b64 + "." + b64e(card_signing_payload(card))
    signature = {"protected": protected_b64, "signature": b64e(key.sign(signing_input.encode("ascii")))}
    existing = card.get("signatures") or []
    if not isinstance(existing, list):
        raise CapabilityUsageError("card signatures must be a list")
    return {**card, "signatures": [*existing, signature]}


def card_signature_headers(card: Any) -> list[dict[str, Any]]:
    """Decode and check the protected header of every signature (A2A 8.4.2).

    Raises:
        InvalidAgentCard: no signatures, or a header that is not an object with non-empty ``alg`` and ``kid``.
    """
    sigs = card.get("signatures") if isinstance(card, Mapping) else None
    if not isinstance(sigs, list) or not sigs:
        raise InvalidAgentCard
    headers: list[dict[str, Any]] = []
    for sig in sigs:
        if not isinstance(sig, Mapping) or not isinstance(sig.get("protected"), str):
            raise InvalidAgentCard
        if not isinstance(sig.get("signature"), str):
            raise InvalidAgentCard
        try:
            header = json.loads(b64d(sig["protected"]))
        except (ValueError, UnicodeDecodeError):
            raise InvalidAgentCard from None
        if not isinstance(header, dict):
            raise InvalidAgentCard
        for name in ("alg", "kid"):
            if not isinstance(header.get(name), str) or not header[name]:
                raise InvalidAgentCard
        headers.append(header)
    return headers


def verify_agent_card(card: Any, keys: Mapping[str, PublicKey]) -> str:
    """Verify an Agent Card; return the ``kid`` of the first EdDSA signature that verifies with ``keys``.

    Args:
        card: the signed card.
        keys: trusted keys by published kid (e.g. from the agent's JWKS, fetched and pinned out of band).

    Raises:
        InvalidAgentCard: malformed signatures, or none verifies with a trusted key.
    """
    headers = card_signature_headers(card)
    try:
        payload_b64 = b64e(card_signing_payload(card))
    except CanonicalizationError:
        raise InvalidAgentCard from None
    for sig, header in zip(card["signatures"], headers, strict=True):
        key = keys.get(header["kid"])
        if header["alg"] != "EdDSA" or key is None:
            continue
        try:
            raw_sig = b64d(sig["signature"])
        except ValueError:
            continue
        if key.verify(raw_sig, f"{sig['protected']}.{payload_b64}".encode("ascii")):
            return str(header["kid"])
    raise InvalidAgentCard
