"""Token data model (msgspec Structs). Field names on the wire are short; see docs/capability-tokens.md."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

import msgspec

from capability.constraints import Constraint, check_all, validate_pointer
from capability.errors import CapabilityUsageError, InvalidConstraint
from capability.scopes import matches, parse_pattern

__all__ = ["AuditEvent", "Capability", "Claims", "Grant", "Header", "capability"]

LINK_TYP: Final = "cisora-cap+jws"
POP_TYP: Final = "cisora-pop+jws"
REVOCATION_TYP: Final = "cisora-rev+jws"
_ACTION: Final = re.compile(r"[a-z][a-z0-9_./-]{0,63}")
_KEY: Final = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")  # the canonical encodings of 32 bytes
_DIGEST: Final = re.compile(r"sha256:[A-Za-z0-9_-]{43}")
MAX_CAPS: Final = 64
MAX_POINTERS: Final = 64


def _is_str(value: object) -> bool:
    return isinstance(value, str)


class _Wire(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    pass


class Capability(_Wire, frozen=True):
    """One right: a resource pattern, the actions allowed on it, argument constraints and an optional pin."""

    resource: str = msgspec.field(name="res")
    actions: tuple[str, ...] = msgspec.field(name="act")
    args: dict[str, tuple[Constraint, ...]] = msgspec.field(default_factory=dict, name="args")
    pin: str | None = None

    def __post_init__(self) -> None:
        parse_pattern(self.resource)
        if not self.actions or list(self.actions) != sorted(set(self.actions)):
            raise CapabilityUsageError("actions must be a non-empty, sorted list without duplicates")
        for a in self.actions:
            if not _is_str(a) or _ACTION.fullmatch(a) is None:
                raise CapabilityUsageError("invalid action name")
        if len(self.args) > MAX_POINTERS:
            raise InvalidConstraint("too many argument pointers")
        for pointer, cs in self.args.items():
            validate_pointer(pointer)
            if not cs:
                raise InvalidConstraint("empty constraint list")
        if self.pin is not None and _DIGEST.fullmatch(self.pin) is None:
            raise CapabilityUsageError("pin must be 'sha256:' + base64url digest (see descriptor_digest)")

    def permits(self, resource: str, action: str, args: object) -> bool:
        """Whether this capability covers the concrete request (pin not considered)."""
        return action in self.actions and matches(self.resource, resource) and check_all(self.args, args)


def capability(
    resource: str,
    actions: Iterable[str],
    args: Mapping[str, Constraint | Iterable[Constraint]] | None = None,
    *,
    pin: str | None = None,
) -> Capability:
    """Build a :class:`Capability`, normalising the action list and single constraints."""
    norm: dict[str, tuple[Constraint, ...]] = {}
    for pointer, cs in (args or {}).items():
        norm[pointer] = (cs,) if isinstance(cs, msgspec.Struct) else tuple(cs)
    return Capability(resource=resource, actions=tuple(sorted(set(actions))), args=norm, pin=pin)


class Header(_Wire, frozen=True):
    """JWS protected header. Only ``alg: EdDSA`` is ever accepted."""

    alg: str
    typ: str
    kid: str | None = None


class Claims(_Wire, frozen=True):
    """The payload of one link of a capability chain."""

    iss: str
    sub: str
    aud: str
    iat: int
    nbf: int
    exp: int
    jti: str
    caps: tuple[Capability, ...]
    budget: int | None = None
    prf: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= len(self.caps) <= MAX_CAPS:
            raise CapabilityUsageError(f"a token carries 1..{MAX_CAPS} capabilities")
        if not (0 <= self.nbf < self.exp <= 2**53 and 0 <= self.iat <= self.exp):
            raise CapabilityUsageError("need 0 <= nbf < exp and iat <= exp")
        if self.budget is not None and not 0 <= self.budget <= 2**53:
            raise CapabilityUsageError("budget must be a non-negative integer")
        if _KEY.fullmatch(self.sub) is None or _KEY.fullmatch(self.iss) is None:
            raise CapabilityUsageError("sub and iss must be canonical base64url of 32 bytes")
        if not 1 <= len(self.jti) <= 64 or not 1 <= len(self.aud) <= 256:
            raise CapabilityUsageError("bad jti or aud length")


class Grant(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`Verifier.verify` returns: the effective, narrowed grant for one request.

    ``capability`` is the matching capability of the last link: the narrowest, effective right. ``chain`` lists the
    ``jti`` of every link, root first; ``expires_at`` and ``budget`` are the tightest values along the chain.
    """

    resource: str
    action: str
    capability: Capability
    holder: str
    issuer: str
    audience: str
    jti: str
    chain: tuple[str, ...]
    expires_at: int
    budget: int | None


class AuditEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Handed to the verifier's audit hook for every decision. Holds ids and digests, never token bytes."""

    outcome: str
    reason: str
    at: float
    resource: str | None
    action: str | None
    jti: str | None
    chain: tuple[str, ...]
    holder: str | None  # public key of the last holder (base64url)
