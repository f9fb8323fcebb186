"""Exceptions raised by the capability package.

Exception tree (one root, as the style guide asks)::

    CapabilityError                     root of everything raised here
    ├── InvalidCapability               opaque verification failure (token, chain, PoP, revocation list)
    ├── InvalidAgentCard                opaque A2A Agent Card signature failure
    ├── CanonicalizationError (ValueError)   value has no RFC 8785 canonical form (NaN, lone surrogate, ...)
    └── CapabilityUsageError (ValueError)    the caller asked for something invalid at issue/attenuate time
        ├── InvalidConstraint           bad constraint (e.g. regex that RE2 rejects, bad JSON Pointer)
        ├── InvalidResource             bad resource pattern
        └── AttenuationError            the requested child would not be provably narrower than its parent

Verification failures never carry their precise reason: ``InvalidCapability`` always has the same message. The
reason is a private enum (``capability._reasons.Reason``) that is logged and handed to the audit hook.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "AttenuationError",
    "CanonicalizationError",
    "CapabilityError",
    "CapabilityUsageError",
    "InvalidAgentCard",
    "InvalidCapability",
    "InvalidConstraint",
    "InvalidResource",
]

_OPAQUE: Final = "invalid capability"


class CapabilityError(Exception):
    """Root of every exception raised by :mod:`capability`."""


class InvalidCapability(CapabilityError):
    """A token, chain, proof of possession or revocation list failed verification.

    The message is deliberately constant; the reason goes to logs and the audit hook only.
    """

    def __init__(self) -> None:
        super().__init__(_OPAQUE)


class InvalidAgentCard(CapabilityError):
    """An A2A Agent Card signature is malformed or does not verify."""

    def __init__(self) -> None:
        super().__init__("invalid agent card signature")


class CanonicalizationError(CapabilityError, ValueError):
    """The value has no RFC 8785 (JCS) canonical form."""


class CapabilityUsageError(CapabilityError, ValueError):
    """Invalid input from the caller when issuing or attenuating (not a verification failure)."""


class InvalidConstraint(CapabilityUsageError):
    """An argument constraint is malformed (bad JSON Pointer, regex RE2 rejects, empty set, ...)."""


class InvalidResource(CapabilityUsageError):
    """A resource pattern does not follow the grammar in docs/capability-tokens.md."""


class AttenuationError(CapabilityUsageError):
    """The requested child token would not be provably narrower than its parent."""
