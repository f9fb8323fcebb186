"""Signed checkpoints (tree heads) in the C2SP tlog-checkpoint / signed-note text format.

Format (https://c2sp.org/tlog-checkpoint and https://c2sp.org/signed-note)::

    cisora-mesh/audit/<log id>          origin: names this log, so a checkpoint cannot be replayed for another
    1234                                tree size, decimal, no leading zeros
    q2Vhd0Q7JhIhBEl3CGDKs/g5Zx0LsT5qEDwGFb5x1Qc=     root hash, standard base64 (RFC 4648 section 4)
                                        blank line ends the note text; signature lines follow
    — <key id> <base64(key hash[4] || Ed25519 signature[64])>

The signature covers the note text (the three lines, each ending in a newline). The key name is our key id,
and the 4-byte key hash is the signed-note one for Ed25519,
``SHA-256(name || "\\n" || 0x01 || public key)[:4]``, so any signed-note verifier can check our checkpoints
given the verifier key string `vkey()` prints. Several signature lines are allowed (rotation, witnesses); a
checkpoint verifies when at least one line is by a trusted key and every trusted key's line is valid.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cisora_mesh.audit.errors import InvalidCheckpoint
from cisora_mesh.audit.keys import key_id, raw_public
from cisora_mesh.audit.merkle import HASH_SIZE

_DASH: Final = "\u2014 "
_ED25519_ALG: Final = b"\x01"
_SIZE_RE: Final = re.compile(r"(0|[1-9][0-9]{0,18})")
_NAME_RE: Final = re.compile(r"[^\s+]+")
MAX_NOTE_BYTES: Final = 64 * 1024


def note_key_hash(name: str, key: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _ED25519_ALG + raw_public(key)).digest()[:4]


def vkey(key: Ed25519PublicKey) -> str:
    """The signed-note verifier key string (``name+hash+base64(alg || key)``) for other note tooling."""
    name = key_id(key)
    return f"{name}+{note_key_hash(name, key).hex()}+{base64.b64encode(_ED25519_ALG + raw_public(key)).decode()}"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"


@dataclass(frozen=True, slots=True)
class NoteSignature:
    name: str
    key_hash: bytes
    signature: bytes

    def line(self) -> str:
        return f"{_DASH}{self.name} {base64.b64encode(self.key_hash + self.signature).decode()}\n"


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    signatures: tuple[NoteSignature, ...]

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def root(self) -> bytes:
        return self.checkpoint.root

    @property
    def text(self) -> str:
        return self.checkpoint.body() + "\n" + "".join(s.line() for s in self.signatures)

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.signatures)


def sign(checkpoint: Checkpoint, key: Ed25519PrivateKey) -> SignedCheckpoint:
    pub = key.public_key()
    name = key_id(pub)
    sig = key.sign(checkpoint.body().encode())
    return SignedCheckpoint(checkpoint, (NoteSignature(name, note_key_hash(name, pub), sig),))


def parse(text: object) -> SignedCheckpoint:
    """Parse a signed checkpoint strictly. Raises `InvalidCheckpoint` (never anything else) on bad input."""
    if not isinstance(text, str) or len(text.encode("utf-8", "surrogatepass")) > MAX_NOTE_BYTES:
        raise InvalidCheckpoint("checkpoint is not text or is too large")
    body, sep, sigblock = text.partition("\n\n")
    if not sep or not sigblock.endswith("\n"):
        raise InvalidCheckpoint("checkpoint has no signature block")
    lines = body.split("\n")
    # Three mandatory lines; extension lines (tlog-checkpoint allows them) are tolerated but not interpreted.
    if len(lines) < 3 or any(not line for line in lines):
        raise InvalidCheckpoint("checkpoint body must hold origin, size and root lines")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not _SIZE_RE.fullmatch(size_text):
        raise InvalidCheckpoint("checkpoint tree size is not a canonical decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error:
        raise InvalidCheckpoint("checkpoint root is not base64") from None
    if len(root) != HASH_SIZE or base64.b64encode(root).decode() != root_text:
        raise InvalidCheckpoint("checkpoint root is not a canonical base64 SHA-256 hash")
    if lines[3:]:
        raise InvalidCheckpoint("checkpoint has extension lines this log never writes")
    signatures: list[NoteSignature] = []
    for line in sigblock[:-1].split("\n"):
        if not line.startswith(_DASH):
            raise InvalidCheckpoint("malformed checkpoint signature line")
        parts = line[len(_DASH) :].split(" ")
        if len(parts) != 2 or not _NAME_RE.fullmatch(parts[0]):
            raise InvalidCheckpoint("malformed checkpoint signature line")
        try:
            blob = base64.b64decode(parts[1], validate=True)
        except binascii.Error:
            raise InvalidCheckpoint("checkpoint signature is not base64") from None
        if len(blob) != 4 + 64:
            raise InvalidCheckpoint("checkpoint signature has the wrong length for Ed25519")
        signatures.append(NoteSignature(parts[0], blob[:4], blob[4:]))
    return SignedCheckpoint(Checkpoint(origin, int(size_text), root), tuple(signatures))


def verify(signed: SignedCheckpoint, keys: Mapping[str, Ed25519PublicKey], *, origin: str | None = None) -> Checkpoint:
    """Check the signatures against trusted ``keys`` (by key id). Raises `InvalidCheckpoint`.

    Signature lines by unknown keys are ignored (signed-note semantics: other parties, e.g. witnesses, may
    cosign), but at least one trusted key must have signed, and every trusted key's signature must verify.
    """
    cp = signed.checkpoint
    if origin is not None and cp.origin != origin:
        raise InvalidCheckpoint(f"checkpoint is for another log ({cp.origin!r}, expected {origin!r})")
    message = cp.body().encode()
    trusted = 0
    for sig in signed.signatures:
        key = keys.get(sig.name)
        if key is None or note_key_hash(sig.name, key) != sig.key_hash:
            continue
        try:
            key.verify(sig.signature, message)
        except InvalidSignature:
            raise InvalidCheckpoint(f"bad signature by key {sig.name} on checkpoint of size {cp.size}") from None
        trusted += 1
    if not trusted:
        raise InvalidCheckpoint(f"checkpoint of size {cp.size} carries no signature by a trusted key")
    return cp
