"""Adapter between the standalone `capability` package and the mesh's enforcement points (MCP proxy, ASGI).

The style guide lets `cisora_mesh` use `capability` only through `cisora_mesh/auth/`, so the proxy and the
middleware talk to a `CapabilityGate` and never to `capability.Verifier` directly.

A request carries its token and proof of possession either in MCP `params._meta` (`io.cisora/capability`,
`io.cisora/pop`) or in HTTP headers (`Cisora-Capability`, `Cisora-PoP`). The gate verifies them for one concrete
resource (`mcp://<server>/tools/<tool>` or `a2a://<agent>/skills/<skill>`) with the call's arguments and answers
`CapabilityAllowed` or `CapabilityDenied`. A denial's public message is one fixed sentence: the precise reason is a
private enum inside `capability` that reaches only the audit hook (and, when an audit sink is given, the chained
audit store), so a caller cannot use the error as an oracle to probe which check failed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from capability import (
    AuditEvent,
    CapabilityError,
    InvalidCapability,
    KeySet,
    PublicKey,
    ReplayCache,
    RevocationList,
    Verifier,
    decode_chain,
    descriptor_digest,
)
from capability.scopes import matches
from cisora_mesh.audit.record import AuditRecord

__all__ = [
    "A2A_METHOD",
    "DENIED_MESSAGE",
    "HEADER_POP",
    "HEADER_TOKEN",
    "META_POP",
    "META_SKILL",
    "META_TOKEN",
    "PROBLEM_SLUG",
    "CapabilityAllowed",
    "CapabilityDenied",
    "CapabilityGate",
    "GateResult",
    "a2a_skill_resource",
    "credentials_from_headers",
    "credentials_from_meta",
    "load_trust_anchors",
    "mcp_tool_resource",
    "tool_digest",
]

logger = logging.getLogger("cisora_mesh.auth.capability")

META_TOKEN: Final = "io.cisora/capability"  # noqa: S105 - a key name, not a secret
META_POP: Final = "io.cisora/pop"
META_SKILL: Final = "io.cisora/skill"
HEADER_TOKEN: Final = "cisora-capability"  # noqa: S105 - a header name, not a secret
HEADER_POP: Final = "cisora-pop"
PROBLEM_SLUG: Final = "capability-denied"
A2A_METHOD: Final = "message/send"
# One sentence for every denial: which check failed is audited, never returned.
DENIED_MESSAGE: Final = "capability token missing or not valid for this request"
_ACTION: Final = "call"


class _RecordSink(Protocol):
    """The part of `cisora_mesh.audit.AuditSink` the gate needs (any audit store satisfies it)."""

    def append_record(self, record: AuditRecord) -> int: ...


@dataclass(frozen=True, slots=True)
class CapabilityAllowed:
    """The token grants this request. `holder` is the kid of the last holder; `chain` the jtis, root first."""

    resource: str
    holder: str
    jti: str
    chain: tuple[str, ...]

    @property
    def allowed(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class CapabilityDenied:
    """The request is refused. `message` is public and fixed; it never says why (see the module docstring)."""

    resource: str
    message: str = DENIED_MESSAGE
    slug: str = PROBLEM_SLUG

    @property
    def allowed(self) -> bool:
        return False


GateResult = CapabilityAllowed | CapabilityDenied


def mcp_tool_resource(server: str, tool: str) -> str:
    return f"mcp://{server}/tools/{tool}"


def a2a_skill_resource(agent: str, skill: str) -> str:
    return f"a2a://{agent}/skills/{skill}"


def tool_digest(tool: object) -> str | None:
    """The pin a token names for an approved tool definition (JCS SHA-256); None for a non-JSON definition."""
    try:
        return descriptor_digest(tool)
    except CapabilityError:
        return None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def credentials_from_meta(params: object) -> tuple[str | None, str | None]:
    """(token, pop) from MCP `params._meta`; (None, None) when absent or not strings."""
    meta = params.get("_meta") if isinstance(params, dict) else None
    if not isinstance(meta, dict):
        return None, None
    return _str_or_none(meta.get(META_TOKEN)), _str_or_none(meta.get(META_POP))


def credentials_from_headers(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(token, pop) from HTTP headers (Starlette `Headers` are case-insensitive; plain dicts are tried lower-case)."""
    return _str_or_none(headers.get(HEADER_TOKEN)), _str_or_none(headers.get(HEADER_POP))


def load_trust_anchors(paths: Iterable[Path]) -> KeySet:
    """Trust anchors from public JWK files (one key, or a JWK Set with `keys`)."""
    keys = KeySet()
    for path in paths:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        jwks = data.get("keys") if isinstance(data, dict) and "keys" in data else [data]
        if not isinstance(jwks, list) or not all(isinstance(k, dict) for k in jwks):
            raise ValueError(f"{path}: not a JWK or JWK Set")
        for jwk in jwks:
            keys.add(PublicKey.from_jwk(jwk))
    if not len(keys):
        raise ValueError("no trust anchors given")
    return keys


class CapabilityGate:
    """Verifies capability tokens for the proxy and the middleware.

    Args:
        trust: trust-anchor public keys.
        audience: this enforcement point's identity; tokens and proofs must name it.
        replay: PoP nonce cache (default in memory; pass a `RedisReplayCache` to share it across replicas).
        revocations: revoked token ids (revoking a token also refuses every token delegated from it).
        clock: Unix seconds; injected so tests never patch time.
        on_event: receives every `AuditEvent` (with the private reason); if it raises, the request is denied.
        audit: an audit sink; each decision and each revocation is appended as an `AuditRecord` of kind
            `capability` / `capability.revocation`, with the private reason as its rule id.
        tenant: the tenant written on those records.
    """

    def __init__(
        self,
        trust: KeySet,
        *,
        audience: str,
        replay: ReplayCache | None = None,
        revocations: RevocationList | None = None,
        clock: Callable[[], float] = time.time,
        on_event: Callable[[AuditEvent], None] | None = None,
        audit: _RecordSink | None = None,
        tenant: str = "default",
    ) -> None:
        self.trust = trust
        self.audience = audience
        self.revocations = revocations if revocations is not None else RevocationList()
        self.clock = clock
        self.on_event = on_event
        self.audit = audit
        self.tenant = tenant
        self.verifier = Verifier(
            trust, audience=audience, replay=replay, revocations=self.revocations, audit=self._record
        )

    @classmethod
    def from_files(cls, trust_anchors: Sequence[Path], *, audience: str, **options: Any) -> CapabilityGate:
        return cls(load_trust_anchors(trust_anchors), audience=audience, **options)

    def _record(self, event: AuditEvent) -> None:
        # The verifier calls this for every decision; an exception here makes it deny (fail closed).
        if self.on_event is not None:
            self.on_event(event)
        if self.audit is not None:
            self.audit.append_record(
                AuditRecord(
                    kind="capability",
                    tenant=self.tenant,
                    verdict="allow" if event.outcome == "allow" else "block",
                    rule_ids=(f"capability.{event.reason}",),
                    decision_id=event.jti,
                    actor=event.holder,
                    at_ms=int(event.at * 1000),
                )
            )

    # -- checks ------------------------------------------------------------------------------------------------

    def check(
        self,
        resource: str,
        *,
        token: str | None,
        pop: str | None,
        args: object,
        method: str,
        descriptor_digest: str | None = None,
    ) -> GateResult:
        """Verify `token` + `pop` for one call on `resource` with `args` (the JSON arguments object)."""
        if token is None:
            # No token never reaches the verifier, so audit the refusal here with the same private-reason channel.
            self._record(
                AuditEvent(
                    outcome="deny",
                    reason="missing_token",
                    at=self.clock(),
                    resource=resource,
                    action=_ACTION,
                    jti=None,
                    chain=(),
                    holder=None,
                )
            )
            return CapabilityDenied(resource)
        try:
            grant = self.verifier.verify(
                token,
                resource=resource,
                action=_ACTION,
                method=method,
                args=args if args is not None else {},
                pop=pop,
                descriptor_digest=descriptor_digest,
                now=self.clock(),
            )
        except InvalidCapability:
            return CapabilityDenied(resource)
        return CapabilityAllowed(resource=resource, holder=grant.holder, jti=grant.jti, chain=grant.chain)

    def check_mcp_call(self, server: str, params: object, *, descriptor_digest: str | None = None) -> GateResult:
        """A `tools/call` request: token and PoP from `params._meta`, arguments from `params.arguments`."""
        tool = params.get("name") if isinstance(params, dict) else None
        resource = mcp_tool_resource(server, tool if isinstance(tool, str) else "")
        if not isinstance(params, dict) or not isinstance(tool, str):
            return CapabilityDenied(resource)
        token, pop = credentials_from_meta(params)
        return self.check(
            resource,
            token=token,
            pop=pop,
            args=params.get("arguments"),
            method="tools/call",
            descriptor_digest=descriptor_digest,
        )

    def check_a2a(self, agent: str, skill: str, args: object, *, token: str | None, pop: str | None) -> GateResult:
        """An A2A `message/send` for `skill` of `agent`; `args` is what the PoP's argument digest covers."""
        return self.check(a2a_skill_resource(agent, skill), token=token, pop=pop, args=args, method=A2A_METHOD)

    def granted_tools(self, server: str, names: Iterable[str], token: str | None) -> set[str]:
        """Which of `names` the token could call on `server`, for filtering `tools/list`.

        Listing is visibility, not authorization: the chain is decoded and its window, audience, trust anchor and
        revocations are checked, but not its signatures or arguments (there are no arguments yet). Every
        `tools/call` is fully verified, so a forged token can at most reveal tool names, never call a tool.
        """
        if token is None:
            return set()
        try:
            links = decode_chain(token)
        except (ValueError, CapabilityError):
            return set()
        now = self.clock()
        claims = [link.claims for link in links]
        if (
            not claims
            or claims[0].iss not in self.trust
            or any(c.aud != self.audience or not c.nbf <= now < c.exp for c in claims)
            or self.revocations.any_revoked(c.jti for c in claims)
        ):
            return set()
        granted = set()
        for name in names:
            resource = mcp_tool_resource(server, name)
            if all(any(_ACTION in cap.actions and matches(cap.resource, resource) for cap in c.caps) for c in claims):
                granted.add(name)
        return granted

    def check_jsonrpc_body(self, doc: object, headers: Mapping[str, str], *, service: str) -> GateResult | None:
        """Gate an HTTP JSON-RPC body for the ASGI middleware; None when it holds nothing this gate covers.

        MCP `tools/call` is checked against `mcp://<service>/tools/<name>` with credentials from `params._meta`
        (falling back to the `Cisora-Capability` / `Cisora-PoP` headers). A2A `message/send` is checked against
        `a2a://<service>/skills/<skill>`, where the skill is `params.metadata["io.cisora/skill"]` (A2A itself has
        no skill field on a message), the PoP covers `params.message`, and credentials come from the headers. A
        batch is denied as a whole when any gated message in it is denied, so a batch cannot smuggle a call past.
        """
        messages = doc if isinstance(doc, list) else [doc]
        first: GateResult | None = None
        for message in messages:
            result = self._check_message(message, headers, service)
            if isinstance(result, CapabilityDenied):
                return result
            first = first or result
        return first

    def _check_message(self, message: object, headers: Mapping[str, str], service: str) -> GateResult | None:
        if not isinstance(message, dict):
            return None
        method, params = message.get("method"), message.get("params")
        if method == "tools/call":
            token, pop = credentials_from_meta(params)
            if token is None:
                token, pop = credentials_from_headers(headers)
            tool = params.get("name") if isinstance(params, dict) else None
            if not isinstance(params, dict) or not isinstance(tool, str):
                return CapabilityDenied(mcp_tool_resource(service, ""))
            return self.check(
                mcp_tool_resource(service, tool),
                token=token,
                pop=pop,
                args=params.get("arguments"),
                method="tools/call",
            )
        if method == A2A_METHOD:
            token, pop = credentials_from_headers(headers)
            metadata = params.get("metadata") if isinstance(params, dict) else None
            skill = metadata.get(META_SKILL) if isinstance(metadata, dict) else None
            if not isinstance(params, dict) or not isinstance(skill, str) or not skill:
                return CapabilityDenied(a2a_skill_resource(service, ""))
            return self.check_a2a(service, skill, params.get("message"), token=token, pop=pop)
        return None

    # -- revocation --------------------------------------------------------------------------------------------

    def revoke(self, jti: str, actor: str) -> None:
        """Revoke `jti` (and so every token delegated from it); the revocation is audited when a sink is set.

        The audit record is written first: a revocation nobody can account for later is worse than a retry.
        """
        if self.audit is not None:
            self.audit.append_record(
                AuditRecord(
                    kind="capability.revocation",
                    tenant=self.tenant,
                    decision_id=jti,
                    from_state="active",
                    to_state="revoked",
                    actor=actor,
                    at_ms=int(self.clock() * 1000),
                )
            )
        self.revocations.revoke(jti)
        logger.info("capability revoked: jti=%s actor=%s", jti, actor)
