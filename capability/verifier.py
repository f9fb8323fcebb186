"""Offline verification of capability chains, with proof of possession, revocation, budgets and a link cache.

Order of checks (cheap denials first, signatures last):

1. size and depth limits on the raw string;
2. decode every link (or fetch it from the cache of verified links, keyed by link digest);
3. per link: time window, audience, revocation; root issuer is a trust anchor valid at ``iat``; each child names its
   parent's digest (``prf``) and its parent's holder as issuer;
4. uncached links: canonical bytes, Ed25519 signature (root by the anchor, child by the previous holder), and the
   narrowing rule against the parent; then the link is cached;
5. the request (resource, action, arguments, descriptor pin) against every link;
6. proof of possession by the last holder, then the replay cache; 7. call budgets.

Every outcome goes to the audit hook and the ``capability.verify`` logger with a private :class:`Reason`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

from capability._b64 import b64d
from capability._reasons import Reason
from capability.budget import BudgetStore, MemoryBudgetStore
from capability.chain import MAX_CHAIN_BYTES, MAX_DEPTH, narrower
from capability.errors import CanonicalizationError, CapabilityUsageError, InvalidCapability
from capability.keys import KeySet, PublicKey, key_id
from capability.model import POP_TYP, AuditEvent, Capability, Grant
from capability.pop import MAX_POP_BYTES, PopClaims, args_digest
from capability.replay import MemoryReplayCache, ReplayCache
from capability.revocation import RevocationList
from capability.scopes import matches
from capability.tokens import CHAIN_SEPARATOR, DecodeError, Link, check_canonical, decode_jws, decode_link, link_digest

__all__ = ["AuditHook", "Verifier"]

_log: Final = logging.getLogger("capability.verify")
AuditHook = Callable[[AuditEvent], None]


class _Deny(Exception):
    def __init__(self, reason: Reason) -> None:
        super().__init__(reason.value)
        self.reason = reason


_DECODE_REASON: Final = {"alg": Reason.BAD_ALGORITHM, "header": Reason.BAD_HEADER}


class Verifier:
    """Verifies capability chains for one audience against a set of trust anchors.

    Args:
        trust: trust-anchor public keys (the only keys needed; everything else is inside the chain).
        audience: this verifier's identity; tokens and proofs must name it.
        replay: PoP nonce cache (default: bounded in-memory).
        budgets: call-budget counters (default: in-memory).
        revocations: revoked token ids (default: empty).
        require_pop: refuse requests without a proof of possession (default True).
        pop_max_age: seconds a proof stays acceptable after its ``iat``; pop_max_skew: seconds it may be early.
        leeway: clock-skew tolerance applied to ``nbf``/``exp``.
        max_token_bytes, max_depth: size limits (defaults 16 KiB, 8 links).
        link_cache_size: verified links remembered (0 disables the warm path).
        audit: called with an :class:`AuditEvent` for every decision; if it raises, the request is denied.
    """

    def __init__(
        self,
        trust: KeySet,
        *,
        audience: str,
        replay: ReplayCache | None = None,
        budgets: BudgetStore | None = None,
        revocations: RevocationList | None = None,
        require_pop: bool = True,
        pop_max_age: float = 60.0,
        pop_max_skew: float = 5.0,
        leeway: float = 0.0,
        max_token_bytes: int = MAX_CHAIN_BYTES,
        max_depth: int = MAX_DEPTH,
        link_cache_size: int = 4096,
        audit: AuditHook | None = None,
    ) -> None:
        if max_depth > MAX_DEPTH:
            raise CapabilityUsageError(f"max_depth cannot exceed {MAX_DEPTH}")
        self.trust = trust
        self.audience = audience
        self.replay: ReplayCache = replay if replay is not None else MemoryReplayCache()
        self.budgets: BudgetStore = budgets if budgets is not None else MemoryBudgetStore()
        self.revocations = revocations if revocations is not None else RevocationList()
        self.require_pop = require_pop
        self.pop_max_age = pop_max_age
        self.pop_max_skew = pop_max_skew
        self.leeway = leeway
        self.max_token_bytes = max_token_bytes
        self.max_depth = max_depth
        self._cache_size = link_cache_size
        self._cache: OrderedDict[str, Link] = OrderedDict()
        self._keys: dict[str, PublicKey] = {}
        # whole chains whose every link is in _cache, keyed by the chain text (itself a function of the link digests)
        self._chains: OrderedDict[str, tuple[Link, ...]] = OrderedDict()
        self.audit = audit

    def clear_cache(self) -> None:
        """Forget every verified link (next verification is cold)."""
        self._cache.clear()
        self._chains.clear()
        self._keys.clear()

    def _holder_key(self, sub: str) -> PublicKey:
        key = self._keys.get(sub)
        if key is None:
            key = PublicKey.from_b64(sub)
            if self._cache_size > 0:
                if len(self._keys) >= self._cache_size:
                    self._keys.clear()
                self._keys[sub] = key
        return key

    def verify(
        self,
        token: str,
        *,
        resource: str,
        action: str,
        now: float,
        args: Any = None,
        method: str | None = None,
        pop: str | None = None,
        descriptor_digest: str | None = None,
    ) -> Grant:
        """Verify ``token`` for one request and return the effective grant.

        Args:
            token: the chain (links joined by ``~``).
            resource: concrete resource, e.g. ``mcp://files/tools/read_file``.
            action: e.g. ``call``.
            now: current time in Unix seconds (injected, never read here).
            args: the JSON arguments of the call (an object; None means ``{}``).
            method: the protocol method the PoP must name (e.g. ``tools/call``); defaults to ``action``.
            pop: the holder's proof of possession.
            descriptor_digest: digest of the tool descriptor being called, required when a capability is pinned.

        Raises:
            InvalidCapability: for every failure; the reason is logged and audited only.
        """
        links: list[Link] = []
        args = {} if args is None else args
        try:
            grant = self._verify(token, resource, action, now, args, method or action, pop, descriptor_digest, links)
        except _Deny as deny:
            self._emit("deny", deny.reason, now, resource, action, links)
            raise InvalidCapability from None
        self._emit("allow", Reason.OK, now, resource, action, links)
        return grant

    def _emit(self, outcome: str, reason: Reason, now: float, res: object, act: object, links: list[Link]) -> None:
        holder = links[-1].claims.sub if links else None
        if outcome == "deny":
            _log.info("capability denied: reason=%s jti=%s", reason.value, links[-1].claims.jti if links else None)
        if self.audit is None:
            return
        event = AuditEvent(
            outcome=outcome,
            reason=reason.value,
            at=now,
            resource=res if isinstance(res, str) else None,
            action=act if isinstance(act, str) else None,
            jti=links[-1].claims.jti if links else None,
            chain=tuple(link.claims.jti for link in links),
            holder=holder,
        )
        try:
            self.audit(event)
        except Exception as exc:
            _log.exception("audit hook failed; denying")
            if outcome == "allow":
                raise InvalidCapability from exc

    # -- the checks ---------------------------------------------------------------------------------------------

    def _decode(self, token: Any, links: list[Link]) -> list[bool]:
        if not isinstance(token, str) or not token:
            raise _Deny(Reason.MALFORMED)
        if len(token) > self.max_token_bytes:
            raise _Deny(Reason.OVERSIZED)
        parts = token.split(CHAIN_SEPARATOR)
        if len(parts) > self.max_depth:
            raise _Deny(Reason.DEPTH_EXCEEDED)
        whole = self._chains.get(token)
        if whole is not None:  # every link of this exact chain was verified before
            links.extend(whole)
            return [True] * len(whole)
        cached: list[bool] = []
        use_cache = self._cache_size > 0
        for part in parts:
            digest = link_digest(part) if use_cache and part.isascii() else None
            hit = self._cache.get(digest) if digest is not None else None
            if hit is not None:
                links.append(hit)
                cached.append(True)
                continue
            try:
                links.append(decode_link(part, digest))
            except DecodeError as exc:
                raise _Deny(_DECODE_REASON.get(exc.kind, Reason.MALFORMED)) from None
            cached.append(False)
        return cached

    def _cheap_checks(self, links: list[Link], cached: list[bool], now: float) -> None:
        revoked = self.revocations.any_revoked(link.claims.jti for link in links)
        for i, link in enumerate(links):
            c = link.claims
            if now >= c.exp + self.leeway:
                raise _Deny(Reason.EXPIRED)
            if now < c.nbf - self.leeway:
                raise _Deny(Reason.NOT_YET_VALID)
            if c.aud != self.audience:
                raise _Deny(Reason.WRONG_AUDIENCE)
            if link.header.kid != c.iss:
                raise _Deny(Reason.KID_MISMATCH)
            if i == 0:
                if c.iss not in self.trust:
                    raise _Deny(Reason.UNKNOWN_ISSUER)
                if not self.trust.valid_at(c.iss, c.iat):
                    raise _Deny(Reason.ISSUER_KEY_NOT_VALID)
                if c.prf is not None:
                    raise _Deny(Reason.BROKEN_CHAIN)
            else:
                parent = links[i - 1]
                if c.prf != parent.digest:
                    raise _Deny(Reason.BROKEN_CHAIN)
                # a cached child was checked against the parent its prf names, which is this one
                if not (cached[i] and cached[i - 1]) and c.iss != key_id(b64d(parent.claims.sub)):
                    raise _Deny(Reason.KID_MISMATCH)
        if revoked:
            raise _Deny(Reason.REVOKED)

    def _expensive_checks(self, links: list[Link], cached: list[bool]) -> None:
        for i, link in enumerate(links):
            if cached[i]:
                continue
            if not check_canonical(link.header, link.header_bytes, link.claims, link.payload_bytes):
                raise _Deny(Reason.NON_CANONICAL)
            if i == 0:
                key = self.trust.get(link.claims.iss)
            else:
                try:
                    key = PublicKey.from_b64(links[i - 1].claims.sub)
                except CapabilityUsageError:
                    raise _Deny(Reason.MALFORMED) from None
            if key is None or not key.verify(link.signature, link.signing_input):
                raise _Deny(Reason.BAD_SIGNATURE)
            if i > 0 and not narrower(link.claims, links[i - 1].claims):
                raise _Deny(Reason.WIDENED)
        if self._cache_size > 0 and not all(cached):
            for i, link in enumerate(links):
                if not cached[i]:
                    self._cache[link.digest] = link
                    if len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
            self._chains[CHAIN_SEPARATOR.join(link.text for link in links)] = tuple(links)
            if len(self._chains) > self._cache_size:
                self._chains.popitem(last=False)

    def _match(
        self, links: list[Link], resource: object, action: object, args: Any, descriptor: str | None
    ) -> Capability:
        """Match the request against the last link (arguments, pin) and every ancestor (resource, action).

        Ancestors' argument constraints need no re-evaluation: the narrowing rule proved, when each link was
        verified, that the last link's constraints imply them (a cached child pins its parent through ``prf``).
        """
        if not isinstance(resource, str) or not isinstance(action, str) or not isinstance(args, dict):
            raise _Deny(Reason.MALFORMED)
        hits = [cap for cap in links[-1].claims.caps if cap.permits(resource, action, args)]
        if not hits:
            raise _Deny(Reason.NOT_GRANTED)
        pinned_ok = [cap for cap in hits if cap.pin is None or cap.pin == descriptor]
        if not pinned_ok:
            raise _Deny(Reason.DESCRIPTOR_MISMATCH)
        for link in links[:-1]:
            if not any(action in cap.actions and matches(cap.resource, resource) for cap in link.claims.caps):
                raise _Deny(Reason.NOT_GRANTED)
        return pinned_ok[0]

    def _check_pop(
        self, pop: Any, links: list[Link], method: str, resource: str, args: Any, now: float
    ) -> tuple[str, float] | None:
        if pop is None:
            if self.require_pop:
                raise _Deny(Reason.POP_MISSING)
            return None
        if not isinstance(pop, str) or len(pop) > MAX_POP_BYTES or not pop.isascii():
            raise _Deny(Reason.POP_MALFORMED)
        try:
            header, claims, hb, pb, signing_input, sig = decode_jws(pop, PopClaims, POP_TYP)
        except DecodeError as exc:
            raise _Deny(Reason.BAD_ALGORITHM if exc.kind == "alg" else Reason.POP_MALFORMED) from None
        if header.kid is not None or not check_canonical(header, hb, claims, pb):
            raise _Deny(Reason.POP_MALFORMED)
        holder = self._holder_key(links[-1].claims.sub)
        if not holder.verify(sig, signing_input):
            raise _Deny(Reason.POP_BAD_SIGNATURE)
        try:
            digest = args_digest(args)
        except CanonicalizationError:
            raise _Deny(Reason.MALFORMED) from None
        if (
            claims.htm != method
            or claims.res != resource
            or claims.aud != self.audience
            or claims.tok != links[-1].digest
            or claims.ad != digest
        ):
            raise _Deny(Reason.POP_MISMATCH)
        if not now - self.pop_max_age <= claims.iat <= now + self.pop_max_skew:
            raise _Deny(Reason.POP_STALE)
        return f"{links[-1].claims.sub}:{claims.jti}", self.pop_max_age + self.pop_max_skew

    def _verify(
        self,
        token: Any,
        resource: str,
        action: str,
        now: float,
        args: Any,
        method: str,
        pop: Any,
        descriptor: str | None,
        links: list[Link],
    ) -> Grant:
        cached = self._decode(token, links)
        self._cheap_checks(links, cached, now)
        self._expensive_checks(links, cached)
        granted = self._match(links, resource, action, args, descriptor)
        replay_key = self._check_pop(pop, links, method, resource, args, now)
        if replay_key is not None and not self.replay.add(replay_key[0], ttl=replay_key[1], now=now):
            raise _Deny(Reason.POP_REPLAYED)
        budgets = [link.claims.budget for link in links if link.claims.budget is not None]
        for link in links:
            c = link.claims
            if c.budget is not None and not self.budgets.consume(c.jti, limit=c.budget, ttl=c.exp - now, now=now):
                raise _Deny(Reason.BUDGET_EXHAUSTED)
        root, leaf = links[0].claims, links[-1].claims
        return Grant(
            resource=resource,
            action=action,
            capability=granted,
            holder=key_id(b64d(leaf.sub)),
            issuer=root.iss,
            audience=leaf.aud,
            jti=leaf.jti,
            chain=tuple(link.claims.jti for link in links),
            expires_at=min(link.claims.exp for link in links),
            budget=min(budgets) if budgets else None,
        )
