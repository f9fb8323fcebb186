"""Capability tokens for agents: Ed25519-signed, offline-verifiable, attenuable delegation chains.

Quick start::

    from capability import KeySet, SigningKey, Verifier, Prefix, capability, issue, make_pop

    anchor, agent = SigningKey.generate(), SigningKey.generate()
    token = issue(anchor, holder=agent.public, audience="proxy-1", now=now,
                  capabilities=[capability("mcp://files/tools/read_file", ["call"], {"/path": Prefix(value="/srv/")})])
    verifier = Verifier(KeySet.of(anchor), audience="proxy-1")
    args = {"path": "/srv/a.txt"}
    pop = make_pop(agent, token, method="call", resource="mcp://files/tools/read_file", args=args,
                   audience="proxy-1", now=now)
    grant = verifier.verify(token, resource="mcp://files/tools/read_file", action="call", args=args, pop=pop,
                            now=now)

See docs/capability-tokens.md for the format.
"""

from __future__ import annotations

from capability.agent_card import card_signature_headers, card_signing_payload, sign_agent_card, verify_agent_card
from capability.budget import BudgetStore, MemoryBudgetStore, RedisBudgetStore
from capability.chain import MAX_CHAIN_BYTES, MAX_DEPTH, attenuate, issue
from capability.constraints import Constraint, Exact, Glob, MaxLength, NotPresent, OneOf, Prefix, Range, Regex
from capability.errors import (
    AttenuationError,
    CanonicalizationError,
    CapabilityError,
    CapabilityUsageError,
    InvalidAgentCard,
    InvalidCapability,
    InvalidConstraint,
    InvalidResource,
)
from capability.jcs import canonicalize
from capability.keys import KeySet, PublicKey, SigningKey, key_id
from capability.model import AuditEvent, Capability, Claims, Grant, capability
from capability.pop import args_digest, descriptor_digest, make_pop
from capability.replay import MemoryReplayCache, RedisReplayCache, ReplayCache
from capability.revocation import RevocationList
from capability.tokens import decode_chain
from capability.verifier import AuditHook, Verifier

__all__ = [
    "MAX_CHAIN_BYTES",
    "MAX_DEPTH",
    "AttenuationError",
    "AuditEvent",
    "AuditHook",
    "BudgetStore",
    "CanonicalizationError",
    "Capability",
    "CapabilityError",
    "CapabilityUsageError",
    "Claims",
    "Constraint",
    "Exact",
    "Glob",
    "Grant",
    "InvalidAgentCard",
    "InvalidCapability",
    "InvalidConstraint",
    "InvalidResource",
    "KeySet",
    "MaxLength",
    "MemoryBudgetStore",
    "MemoryReplayCache",
    "NotPresent",
    "OneOf",
    "Prefix",
    "PublicKey",
    "Range",
    "RedisBudgetStore",
    "RedisReplayCache",
    "Regex",
    "ReplayCache",
    "RevocationList",
    "SigningKey",
    "Verifier",
    "args_digest",
    "attenuate",
    "canonicalize",
    "capability",
    "card_signature_headers",
    "card_signing_payload",
    "decode_chain",
    "descriptor_digest",
    "issue",
    "key_id",
    "make_pop",
    "sign_agent_card",
    "verify_agent_card",
]
