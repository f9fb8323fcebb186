"""Errors raised by the audit store.

The tree (all derive from `cisora_mesh.errors.CisoraError`)::

    AuditError                      root of the audit store's errors
    ├── StoreError                  the store cannot be opened, read or written (bad URL, missing file, DB down)
    ├── AuditKeyError               a signing or verification key is missing, unreadable or malformed
    └── VerificationError           something cryptographic did not verify
        ├── InvalidProof            an inclusion or consistency proof is malformed or does not verify
        └── InvalidCheckpoint       a checkpoint is malformed, unsigned by a trusted key, or its signature is bad

Messages name indices, sizes and key ids; they never contain record contents.
"""

from __future__ import annotations

from cisora_mesh.errors import CisoraError


class AuditError(CisoraError):
    """Root of the audit store's errors."""


class StoreError(AuditError):
    """The store cannot be opened, read or written."""


class AuditKeyError(AuditError):
    """A signing or verification key is missing, unreadable or malformed."""


class VerificationError(AuditError):
    """A proof, checkpoint or log did not verify."""


class InvalidProof(VerificationError):
    """An inclusion or consistency proof is malformed or does not verify."""


class InvalidCheckpoint(VerificationError):
    """A checkpoint is malformed, carries no trusted signature, or a signature is bad."""
