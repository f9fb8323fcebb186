"""Issuing root tokens, attenuating them, and the narrowing rule between a parent and a child link."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Final

import msgspec

from capability._b64 import b64e
from capability.constraints import implies_all
from capability.errors import AttenuationError, CapabilityUsageError
from capability.keys import PublicKey, SigningKey
from capability.model import Capability, Claims
from capability.scopes import is_subpattern
from capability.tokens import CHAIN_SEPARATOR, DecodeError, decode_chain, encode_link, link_digest

__all__ = ["MAX_CHAIN_BYTES", "MAX_DEPTH", "attenuate", "cap_narrower", "issue", "narrower"]

MAX_DEPTH: Final = 8
MAX_CHAIN_BYTES: Final = 16 * 1024


def _jti() -> str:
    return b64e(secrets.token_bytes(16))


def cap_narrower(child: Capability, parent: Capability) -> bool:
    """Whether ``child`` is provably covered by ``parent``."""
    return (
        is_subpattern(child.resource, parent.resource)
        and set(child.actions) <= set(parent.actions)
        and (parent.pin is None or child.pin == parent.pin)
        and implies_all(child.args, parent.args)
    )


def narrower(child: Claims, parent: Claims) -> bool:
    """The attenuation rule: every child capability covered by some parent one, window inside, budget <=."""
    return (
        child.aud == parent.aud
        and child.nbf >= parent.nbf
        and child.exp <= parent.exp
        and (parent.budget is None or (child.budget is not None and child.budget <= parent.budget))
        and all(any(cap_narrower(c, p) for p in parent.caps) for c in child.caps)
    )


def issue(
    key: SigningKey,
    *,
    holder: PublicKey,
    audience: str,
    capabilities: Sequence[Capability],
    now: int,
    ttl: int = 3600,
    not_before: int | None = None,
    budget: int | None = None,
    jti: str | None = None,
) -> str:
    """Issue a root token signed by a trust-anchor ``key`` for ``holder``.

    Raises:
        CapabilityUsageError: invalid claims (empty capability list, bad window, ...).
    """
    try:
        claims = Claims(
            iss=key.kid,
            sub=holder.b64(),
            aud=audience,
            iat=int(now),
            nbf=int(now if not_before is None else not_before),
            exp=int(now) + int(ttl),
            jti=jti or _jti(),
            caps=tuple(capabilities),
            budget=budget,
        )
    except (TypeError, msgspec.ValidationError) as exc:
        raise CapabilityUsageError(str(exc)) from exc
    return encode_link(claims, key)


def attenuate(
    parent: str,
    holder_key: SigningKey,
    *,
    holder: PublicKey,
    now: int,
    capabilities: Sequence[Capability] | None = None,
    ttl: int | None = None,
    not_before: int | None = None,
    budget: int | None = None,
    jti: str | None = None,
) -> str:
    """Append a narrower link to ``parent``, signed by the parent's holder key, for a new ``holder``.

    Omitted fields inherit the parent's values (capabilities, expiry, budget). The holder does not need the trust
    anchors; the check here is the same narrowing rule the verifier applies, so a child that would be refused is
    refused now, with a usable message.

    Raises:
        AttenuationError: wrong holder key, depth above 8, or a child not provably narrower.
    """
    try:
        links = decode_chain(parent)
    except DecodeError as exc:
        raise AttenuationError("parent token is malformed") from exc
    if len(links) >= MAX_DEPTH:
        raise AttenuationError(f"chains are limited to {MAX_DEPTH} links")
    last = links[-1].claims
    if holder_key.public.b64() != last.sub:
        raise AttenuationError("only the parent's holder can attenuate it")
    exp = last.exp if ttl is None else min(int(now) + int(ttl), last.exp)
    try:
        child = Claims(
            iss=holder_key.kid,
            sub=holder.b64(),
            aud=last.aud,
            iat=int(now),
            nbf=max(last.nbf, int(now) if not_before is None else int(not_before)),
            exp=exp,
            jti=jti or _jti(),
            caps=tuple(capabilities) if capabilities is not None else last.caps,
            budget=last.budget if budget is None else budget,
            prf=link_digest(links[-1].text),
        )
    except (TypeError, msgspec.ValidationError) as exc:
        raise AttenuationError(str(exc)) from exc
    if not narrower(child, last):
        raise AttenuationError("child is not provably narrower than its parent")
    token = parent + CHAIN_SEPARATOR + encode_link(child, holder_key)
    if len(token) > MAX_CHAIN_BYTES:
        raise AttenuationError("chain too large")
    return token
