"""Full verification of a stored log, from the raw rows, trusting nothing the writer computed.

For every row, in index order:

1. the index is the next one (a gap means a deleted row);
2. ``SHA-256(0x00 || entry bytes)`` equals the stored leaf hash (a changed or truncated row);
3. the entry decodes, names its own index (a moved, inserted or reordered row) and its tenant column;
4. its ``prev`` field equals the previous entry's leaf hash (a predecessor rewritten together with its leaf hash);
5. the Merkle tree is extended (RFC 9162 section 2.1.1) and, at every size a checkpoint was signed for, the
   recomputed root must equal the signed root (a rewritten suffix, or a fork).

Checkpoints are checked with public keys only: their signed-note signatures, their origin, and that the signed
size and root match the columns stored next to them. Finally the head row and every checkpoint must agree with
the number of rows (a truncated log). The report names the first bad index: the row itself for 1-3, the
predecessor for 4, and for 5 the start of the interval since the last checkpoint that still matched (a signed
root pins down a range, not a single entry).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cisora_mesh.audit import checkpoint as cpmod
from cisora_mesh.audit.backends.base import CheckpointRow, EntryRow, Head
from cisora_mesh.audit.errors import InvalidCheckpoint
from cisora_mesh.audit.merkle import EMPTY_ROOT, CompactRange
from cisora_mesh.audit.record import entry_decoder


@dataclass(slots=True)
class VerifyReport:
    ok: bool
    size: int  # rows read
    root: str  # recomputed root of those rows, hex
    signed_size: int  # the largest checkpoint size whose root matched
    checkpoints_checked: int
    first_bad_index: int | None = None
    reason: str | None = None
    bad_checkpoint: int | None = None  # size of the first checkpoint that failed to verify, if any
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Bad(Exception):
    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


def _trusted_checkpoints(
    rows: Sequence[CheckpointRow],
    extra: Sequence[cpmod.SignedCheckpoint],
    keys: Mapping[str, Ed25519PublicKey],
    origin: str | None,
    report: VerifyReport,
) -> dict[int, bytes]:
    """Signed roots by size, from every checkpoint whose signature verifies; failures go into the report."""
    roots: dict[int, bytes] = {}
    # (stored row or None for an auditor-supplied checkpoint, note text or parsed note)
    candidates: list[tuple[CheckpointRow | None, str | cpmod.SignedCheckpoint]] = [(row, row[3]) for row in rows]
    candidates.extend((None, cp) for cp in extra)
    for row, note in candidates:
        size = row[0] if row is not None else note.size if isinstance(note, cpmod.SignedCheckpoint) else -1
        try:
            signed = note if isinstance(note, cpmod.SignedCheckpoint) else cpmod.parse(note)
            cp = cpmod.verify(signed, keys, origin=origin)
            if row is not None and (row[0] != cp.size or row[2] != cp.root):
                raise InvalidCheckpoint("stored size/root columns differ from the signed note")
        except InvalidCheckpoint as exc:
            report.problems.append(f"checkpoint at size {size}: {exc}")
            if report.bad_checkpoint is None or size < report.bad_checkpoint:
                report.bad_checkpoint = size
            continue
        if roots.get(cp.size, cp.root) != cp.root:
            # Two validly signed, different roots for one size: the signer forked the log.
            report.problems.append(f"two signed checkpoints of size {cp.size} disagree: the log forked")
            report.bad_checkpoint = cp.size if report.bad_checkpoint is None else report.bad_checkpoint
        roots[cp.size] = cp.root
        report.checkpoints_checked += 1
    return roots


def verify_rows(
    entries: Iterable[EntryRow],
    checkpoint_rows: Sequence[CheckpointRow],
    head: Head | None,
    keys: Mapping[str, Ed25519PublicKey],
    *,
    origin: str | None = None,
    trusted: Sequence[cpmod.SignedCheckpoint] = (),
    check_head: bool = True,
) -> VerifyReport:
    report = VerifyReport(ok=False, size=0, root=EMPTY_ROOT.hex(), signed_size=0, checkpoints_checked=0)
    roots = _trusted_checkpoints(checkpoint_rows, trusted, keys, origin, report)
    sizes = sorted(roots)
    cr = CompactRange()
    try:
        last_good, last_leaf = _stream(entries, roots, sizes, cr, report)
        n = cr.size
        beyond = [s for s in sizes if s > n]
        if beyond:
            raise _Bad(n, f"the log holds {n} entries but a checkpoint signs {beyond[-1]}: entries were removed")
        if check_head:  # an export carries no head row: its checkpoints are the whole claim
            _check_head(head, n, last_good, last_leaf, cr)
    except _Bad as bad:
        report.first_bad_index = bad.index
        report.reason = bad.reason
        report.problems.insert(0, f"entry {bad.index}: {bad.reason}")
    report.size = cr.size
    report.root = cr.root().hex()
    report.ok = report.first_bad_index is None and report.bad_checkpoint is None
    if report.reason is None and report.problems:
        report.reason = report.problems[0]
    return report


def _check_head(head: Head | None, n: int, last_good: int, last_leaf: bytes, cr: CompactRange) -> None:
    if head is None:
        raise _Bad(last_good, "the head row is missing")
    if head.size > n:
        raise _Bad(n, f"the head records {head.size} entries but only {n} are stored: the log was truncated")
    if head.size < n:
        raise _Bad(head.size, f"entries from {head.size} on were added behind the log writer's back")
    if head.compact != cr.to_bytes() or head.last_leaf != last_leaf:
        raise _Bad(last_good, "the head row does not match the recomputed tree")


def _stream(
    entries: Iterable[EntryRow], roots: Mapping[int, bytes], sizes: list[int], cr: CompactRange, report: VerifyReport
) -> tuple[int, bytes]:
    """The hot loop (a million rows must verify in a few seconds): locals only, no per-row allocations we can
    avoid. Returns the size of the last checkpoint whose root matched, and the last leaf hash."""
    sha = hashlib.sha256
    decode = entry_decoder.decode
    append = cr.append
    pending = iter(sizes)
    next_cp = next(pending, None)
    last_good = 0
    if next_cp == 0:
        if roots[0] != EMPTY_ROOT:
            raise _Bad(0, "the checkpoint of size 0 signs a root other than the empty tree's")
        next_cp = next(pending, None)
    expected = 0
    prev_hex = ""
    for idx, tenant, entry, stored in entries:
        if idx != expected:
            raise _Bad(expected, f"entry {expected} is missing (the next stored index is {idx})")
        lh = sha(b"\x00" + entry).digest()
        if lh != stored:
            raise _Bad(idx, "the stored leaf hash does not match the entry bytes (entry changed or truncated)")
        try:
            head = decode(entry)
        except msgspec.DecodeError:
            raise _Bad(idx, "the entry bytes are not a log entry") from None
        if head.idx != idx:
            raise _Bad(idx, f"the entry stored at {idx} was written as entry {head.idx} (moved or inserted)")
        if head.tenant != tenant:
            raise _Bad(idx, "the tenant column differs from the tenant the entry was written for")
        if head.prev != prev_hex:
            raise _Bad(idx - 1, f"entry {idx - 1} is not the entry that entry {idx} chains to (changed or replaced)")
        append(lh)
        prev_hex = lh.hex()
        expected += 1
        if next_cp == expected:
            if cr.root() != roots[expected]:
                raise _Bad(
                    last_good,
                    f"the checkpoint of size {expected} signs a different root: entries in [{last_good}, {expected})"
                    " were rewritten or the log forked",
                )
            last_good = expected
            report.signed_size = expected
            next_cp = next(pending, None)
    return last_good, bytes.fromhex(prev_hex)


class _ExportLine(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    origin: str = ""
    index: int = -1
    tenant: str = ""
    leaf_hash: str = ""
    entry: msgspec.Raw = msgspec.Raw(b"")
    size: int = -1
    key_id: str = ""
    root: str = ""
    note: str = ""


_line_decoder = msgspec.json.Decoder(_ExportLine)


def verify_export(
    lines: Iterable[bytes],
    keys: Mapping[str, Ed25519PublicKey],
    *,
    trusted: Sequence[cpmod.SignedCheckpoint] = (),
) -> VerifyReport:
    """Verify an `AuditStore.export` file offline: the same checks as a store, without a database or a head row.

    The origin comes from the file's ``log`` line and every checkpoint must be for it, so checkpoints of another
    log cannot be mixed in. Malformed lines are reported as the first bad entry, never raised.
    """
    it = iter(lines)
    origin: str | None = None
    checkpoint_rows: list[CheckpointRow] = []
    first_entry: _ExportLine | None = None
    bad_line: tuple[int, str] | None = None
    lineno = 0
    for raw in it:
        lineno += 1
        try:
            line = _line_decoder.decode(raw)
            if line.type == "log" and lineno == 1:
                origin = line.origin
            elif line.type == "checkpoint" and origin is not None:
                checkpoint_rows.append((line.size, line.key_id, bytes.fromhex(line.root), line.note))
            elif line.type == "entry" and origin is not None:
                first_entry = line
                break
            else:
                raise ValueError(line.type)
        except (msgspec.DecodeError, ValueError):
            bad_line = (lineno, "is not a valid export line (expected a log line, then checkpoints, then entries)")
            break

    if origin is None and bad_line is None:
        bad_line = (1, "is missing: an export starts with a log line naming the origin")

    def entries() -> Iterable[EntryRow]:
        nonlocal lineno
        expected = 0
        if bad_line is not None:
            raise _Bad(0, f"export line {bad_line[0]} {bad_line[1]}")
        pending = first_entry
        while pending is not None:
            try:
                if pending.type != "entry":
                    raise ValueError(pending.type)
                yield pending.index, pending.tenant, bytes(pending.entry), bytes.fromhex(pending.leaf_hash)
            except ValueError:
                raise _Bad(expected, f"export line {lineno} is not an entry line") from None
            expected = pending.index + 1
            raw = next(it, None)
            if raw is None:
                return
            lineno += 1
            try:
                pending = _line_decoder.decode(raw)
            except msgspec.DecodeError:
                raise _Bad(expected, f"export line {lineno} is not valid JSON for an entry") from None

    return verify_rows(entries(), checkpoint_rows, None, keys, origin=origin or "", trusted=trusted, check_head=False)
