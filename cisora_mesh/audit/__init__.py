"""Chained audit store: an RFC 9162 Merkle log of audit records with Ed25519-signed checkpoints.

Every decision is appended (durably) before it is enforced; anyone holding the public key can verify the log,
inclusion of an entry and consistency between two checkpoints offline. See ``docs/audit.md``.
"""

from __future__ import annotations

from cisora_mesh.audit.base import AuditSink as AuditSink
from cisora_mesh.audit.checkpoint import Checkpoint as Checkpoint
from cisora_mesh.audit.checkpoint import SignedCheckpoint as SignedCheckpoint
from cisora_mesh.audit.errors import AuditError as AuditError
from cisora_mesh.audit.errors import AuditKeyError as AuditKeyError
from cisora_mesh.audit.errors import InvalidCheckpoint as InvalidCheckpoint
from cisora_mesh.audit.errors import InvalidProof as InvalidProof
from cisora_mesh.audit.errors import StoreError as StoreError
from cisora_mesh.audit.errors import VerificationError as VerificationError
from cisora_mesh.audit.proofs import ConsistencyProof as ConsistencyProof
from cisora_mesh.audit.proofs import InclusionProof as InclusionProof
from cisora_mesh.audit.record import AuditRecord as AuditRecord
from cisora_mesh.audit.record import FindingSummary as FindingSummary
from cisora_mesh.audit.store import AuditStore as AuditStore
from cisora_mesh.audit.store import open_store as open_store
from cisora_mesh.audit.verify import VerifyReport as VerifyReport

__all__ = (
    "AuditError",
    "AuditKeyError",
    "AuditRecord",
    "AuditSink",
    "AuditStore",
    "Checkpoint",
    "ConsistencyProof",
    "FindingSummary",
    "InclusionProof",
    "InvalidCheckpoint",
    "InvalidProof",
    "SignedCheckpoint",
    "StoreError",
    "VerificationError",
    "VerifyReport",
    "open_store",
)
