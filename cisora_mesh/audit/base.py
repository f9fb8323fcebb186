"""The one interface the rest of the product writes audit records through."""

from __future__ import annotations

from typing import Protocol

from cisora_mesh.audit.record import AuditRecord
from cisora_mesh.mesh import AuditSink as DecisionSink


class AuditSink(DecisionSink, Protocol):
    """A `Mesh` audit sink that also takes ready-made records (lifecycle transitions, revocations).

    Each method returns only once the record is durable.
    """

    def append_record(self, record: AuditRecord) -> int: ...
