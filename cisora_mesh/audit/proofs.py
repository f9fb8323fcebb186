"""Inclusion and consistency proofs as values: what `AuditStore` hands out and what `audit prove` prints.

The JSON form uses standard base64 for hashes, like the transparency-dev vectors and the checkpoint's root line.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from cisora_mesh.audit.errors import InvalidProof
from cisora_mesh.audit.merkle import verify_consistency, verify_inclusion


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _unb64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidProof(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise InvalidProof(f"{what} is not valid base64") from None


@dataclass(frozen=True, slots=True)
class InclusionProof:
    index: int
    tree_size: int
    leaf_hash: bytes
    path: tuple[bytes, ...]

    def verify(self, root: bytes) -> None:
        verify_inclusion(self.index, self.tree_size, self.leaf_hash, self.path, root)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "tree_size": self.tree_size,
            "leaf_hash": _b64(self.leaf_hash),
            "path": [_b64(p) for p in self.path],
        }

    @classmethod
    def from_dict(cls, data: object) -> InclusionProof:
        """Parse a proof from JSON data; raises `InvalidProof` on any malformed field."""
        if not isinstance(data, dict):
            raise InvalidProof("proof is not a JSON object")
        index, size, path = data.get("index"), data.get("tree_size"), data.get("path")
        if type(index) is not int or type(size) is not int:
            raise InvalidProof("proof index and tree_size must be integers")
        if not isinstance(path, list):
            raise InvalidProof("proof path must be a list")
        return cls(
            index,
            size,
            _unb64(data.get("leaf_hash"), "leaf_hash"),
            tuple(_unb64(p, f"path[{i}]") for i, p in enumerate(path)),
        )


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    old_size: int
    new_size: int
    path: tuple[bytes, ...]

    def verify(self, old_root: bytes, new_root: bytes) -> None:
        verify_consistency(self.old_size, self.new_size, self.path, old_root, new_root)

    def to_dict(self) -> dict[str, Any]:
        return {"old_size": self.old_size, "new_size": self.new_size, "path": [_b64(p) for p in self.path]}

    @classmethod
    def from_dict(cls, data: object) -> ConsistencyProof:
        """Parse a proof from JSON data; raises `InvalidProof` on any malformed field."""
        if not isinstance(data, dict):
            raise InvalidProof("proof is not a JSON object")
        old, new, path = data.get("old_size"), data.get("new_size"), data.get("path")
        if type(old) is not int or type(new) is not int:
            raise InvalidProof("proof old_size and new_size must be integers")
        if not isinstance(path, list):
            raise InvalidProof("proof path must be a list")
        return cls(old, new, tuple(_unb64(p, f"path[{i}]") for i, p in enumerate(path)))
