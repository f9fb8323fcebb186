"""The one interface the rest of the product writes audit records through."""

from __future__ import annotations

from typing import Protocol

from cisora_mesh.audit.record import AuditRecord
from cisora_mesh.events import Decision, Event


class AuditSink(Protocol):
    """Where decisions go before they are enforced. Each method returns only once the record is durable."""

    def append_decision(self, decision: Decision, event: Event) -> int: ...

    def append_record(self, record: AuditRecord) -> int: ...

    def close(self) -> None: ...
