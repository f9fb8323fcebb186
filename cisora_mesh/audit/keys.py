"""Ed25519 checkpoint keys: generated on first use, rotated, public halves kept for verification.

Layout under ``<data_dir>/keys/``:

* ``audit-ed25519.key``: the current private key, PKCS#8 PEM, mode 0600;
* ``audit-ed25519-<key id>.pub``: the public key of every key that ever signed (current and retired), so
  checkpoints signed before a rotation still verify.

The key id is ``base64url(SHA-256(raw 32-byte public key))[:16]``: stable, short, and derived from the key
itself, so a verifier never has to trust a name.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cisora_mesh.audit.errors import AuditKeyError

PRIVATE_KEY_NAME: Final = "audit-ed25519.key"
_PEM_BLOCK: Final = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.S)


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(raw_public(key)).digest()).decode()[:16]


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_keys(data: bytes) -> dict[str, Ed25519PublicKey]:
    """Every Ed25519 public key in a PEM file (one or more blocks), by key id."""
    keys: dict[str, Ed25519PublicKey] = {}
    for block in _PEM_BLOCK.findall(data):
        try:
            key = serialization.load_pem_public_key(block)
        except (ValueError, UnsupportedAlgorithm):
            raise AuditKeyError("public key file holds a malformed PEM block") from None
        if not isinstance(key, Ed25519PublicKey):
            raise AuditKeyError("public key file holds a key that is not Ed25519")
        keys[key_id(key)] = key
    if not keys:
        raise AuditKeyError("no PEM public key found")
    return keys


def load_public_key_file(path: Path) -> dict[str, Ed25519PublicKey]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AuditKeyError(f"{path}: cannot read public key ({exc.strerror or type(exc).__name__})") from None
    return load_public_keys(data)


def _write_new(path: Path, data: bytes, mode: int) -> bool:
    """Create ``path`` with ``data`` atomically; False if it already exists (another process won the race).

    Written to a temporary file, fsynced, then hard-linked into place: ``link`` fails if the name exists, so
    two processes starting at once never overwrite each other's key, and a crash never leaves a half key.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)


class KeyRing:
    """The signing key of one data directory, plus every public key it has used."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._signing: Ed25519PrivateKey | None = None

    @property
    def private_path(self) -> Path:
        return self.directory / PRIVATE_KEY_NAME

    def _pub_path(self, kid: str) -> Path:
        return self.directory / f"audit-ed25519-{kid}.pub"

    def signing_key(self) -> Ed25519PrivateKey:
        """The current key, generated (0600) on first use."""
        if self._signing is None:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.private_path.exists():
                pem = Ed25519PrivateKey.generate().private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
                _write_new(self.private_path, pem, 0o600)
            self._signing = self._load_private()
            self._remember(self._signing.public_key())
        return self._signing

    def _load_private(self) -> Ed25519PrivateKey:
        try:
            key = serialization.load_pem_private_key(self.private_path.read_bytes(), password=None)
        except OSError as exc:
            raise AuditKeyError(f"{self.private_path}: cannot read signing key ({exc.strerror})") from None
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise AuditKeyError(f"{self.private_path}: malformed signing key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise AuditKeyError(f"{self.private_path}: signing key is not Ed25519")
        return key

    def _remember(self, key: Ed25519PublicKey) -> None:
        path = self._pub_path(key_id(key))
        if not path.exists():
            _write_new(path, public_pem(key), 0o644)

    def digest_key(self) -> bytes:
        """The data directory's secret key for content digests (created on first use, 0600).

        Records carry HMAC-SHA256 digests of the inspected texts under this key instead of plain SHA-256: a plain
        hash of a low-entropy text (an SSN, a short password) can be reversed by guessing, a keyed one cannot
        without the key. Verifying the log never needs it; matching a known text to a record does.
        """
        path = self.directory / "content-digest.key"
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            _write_new(path, secrets.token_bytes(32), 0o600)
        try:
            key = path.read_bytes()
        except OSError as exc:
            raise AuditKeyError(f"{path}: cannot read digest key ({exc.strerror})") from None
        if len(key) != 32:
            raise AuditKeyError(f"{path}: malformed digest key")
        return key

    def current_key_id(self) -> str:
        return key_id(self.signing_key().public_key())

    def export_public_key(self) -> bytes:
        return public_pem(self.signing_key().public_key())

    def public_keys(self) -> Mapping[str, Ed25519PublicKey]:
        """Every public key this data directory has signed with (current and retired), by key id."""
        keys: dict[str, Ed25519PublicKey] = {}
        if self.directory.is_dir():
            for path in sorted(self.directory.glob("audit-ed25519-*.pub")):
                keys.update(load_public_key_file(path))
        if self.private_path.exists():
            pub = self.signing_key().public_key()
            keys[key_id(pub)] = pub
        return keys

    def rotate(self) -> str:
        """Start signing with a fresh key; the old public key stays for verification. Returns the new key id."""
        self.signing_key()  # make sure the old public half is on disk before it is replaced
        new = Ed25519PrivateKey.generate()
        pem = new.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self._remember(new.public_key())
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, pem)
            os.fsync(fd)
            os.close(fd)
            os.replace(tmp, self.private_path)  # atomic: a reader sees the old key or the new one
        except OSError:
            os.unlink(tmp)
            raise
        self._signing = new
        return key_id(new.public_key())
