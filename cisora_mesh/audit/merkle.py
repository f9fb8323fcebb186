"""RFC 6962 / RFC 9162 Merkle tree: hashing, compact ranges, inclusion and consistency proofs.

Hashing follows RFC 9162 section 2.1.1 (identical to RFC 6962 section 2.1):

* leaf hash ``SHA-256(0x00 || data)``, interior node ``SHA-256(0x01 || left || right)``;
* ``MTH({})`` is ``SHA-256("")``; for ``n > 1`` leaves the tree splits at ``k``, the largest power of two
  smaller than ``n``.

A tree split that way is "left-complete", so it can also be computed level by level (pair neighbours left to
right, carry an unpaired last node up unchanged). That is what `root_of` does: it is the same tree, without
recursion. `CompactRange` keeps only the roots of the perfect subtrees covering ``[0, size)`` (one per set bit
of ``size``), so appending is O(log n) and the root of the log is always available without rereading it.

Proof generation follows RFC 9162 sections 2.1.3.1 (``PATH``) and 2.1.4.1 (``PROOF``/``SUBPROOF``);
verification follows sections 2.1.3.2 and 2.1.4.2, with the preconditions transparency-dev/merkle enforces
(exact proof length, 32-byte hashes, the edge cases for equal and zero sizes), so the public vectors pass.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

from cisora_mesh.audit.errors import InvalidProof

HASH_SIZE: Final = 32
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
_LEAF: Final = b"\x00"
_NODE: Final = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 section 2.1.1: ``SHA-256(0x00 || data)`` (the prefix keeps leaves and nodes apart)."""
    return hashlib.sha256(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 section 2.1.1: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(_NODE + left + right).digest()


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """``MTH`` of a list of leaf hashes, computed level by level (same tree as the recursive definition)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    sha = hashlib.sha256
    level = list(leaf_hashes)
    while len(level) > 1:
        paired = [sha(_NODE + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) & 1:
            paired.append(level[-1])
        level = paired
    return level[0]


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


class CompactRange:
    """The roots of the perfect subtrees covering leaves ``[0, size)``, largest (leftmost) first.

    There is one root per set bit of ``size``. Appending merges equal-height roots like a binary counter, so
    an append costs O(1) amortised and O(log n) at worst, and `root()` folds at most log2(n) hashes.
    """

    __slots__ = ("_stack", "size")

    def __init__(self, size: int = 0, stack: Sequence[bytes] = ()) -> None:
        if size < 0 or len(stack) != size.bit_count():
            raise ValueError("a compact range holds exactly one hash per set bit of its size")
        self.size = size
        self._stack = list(stack)

    def append(self, leaf: bytes) -> None:
        h = leaf
        n = self.size
        stack = self._stack
        sha = hashlib.sha256
        while n & 1:  # each trailing one bit is a perfect subtree of the new node's height: merge it
            h = sha(_NODE + stack.pop() + h).digest()
            n >>= 1
        stack.append(h)
        self.size += 1

    def root(self) -> bytes:
        stack = self._stack
        if not stack:
            return EMPTY_ROOT
        r = stack[-1]
        for h in reversed(stack[:-1]):
            r = node_hash(h, r)
        return r

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self._stack)

    def to_bytes(self) -> bytes:
        return b"".join(self._stack)

    @classmethod
    def from_bytes(cls, size: int, blob: bytes) -> CompactRange:
        if len(blob) != HASH_SIZE * size.bit_count():
            raise ValueError("compact range blob has the wrong length for its size")
        return cls(size, [blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)])


# --- proof generation (RFC 9162 2.1.3.1 and 2.1.4.1) -----------------------------------------------------------


def inclusion_path(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """``PATH(m, D[n])``: the audit path for leaf ``index`` in the tree of all of ``leaf_hashes``."""
    n = len(leaf_hashes)
    if not 0 <= index < n:
        raise InvalidProof(f"leaf index {index} is outside a tree of size {n}")
    path: list[bytes] = []
    lo, hi, m = 0, n, index
    # Iterative form of the recursion: descend towards the leaf, collecting the sibling subtree roots, then
    # reverse (the RFC's path runs from the leaf's sibling upwards).
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            path.append(root_of(leaf_hashes[lo + k : hi]))
            hi = lo + k
        else:
            path.append(root_of(leaf_hashes[lo : lo + k]))
            lo, m = lo + k, m - k
    path.reverse()
    return path


def consistency_path(old_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """``PROOF(m, D[n])`` for ``0 < m <= n``: proves the tree of size ``m`` is a prefix of this one."""
    n = len(leaf_hashes)
    if not 0 < old_size <= n:
        raise InvalidProof(f"no consistency proof from size {old_size} to size {n}")
    return _subproof(old_size, leaf_hashes, 0, n, True)


def _subproof(m: int, leaves: Sequence[bytes], lo: int, hi: int, b: bool) -> list[bytes]:
    n = hi - lo
    if m == n:
        return [] if b else [root_of(leaves[lo:hi])]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves, lo, lo + k, b), root_of(leaves[lo + k : hi])]
    return [*_subproof(m - k, leaves, lo + k, hi, False), root_of(leaves[lo : lo + k])]


# --- proof verification (RFC 9162 2.1.3.2 and 2.1.4.2) ---------------------------------------------------------


def _check_hash(value: object, what: str) -> None:
    # Typed as object: proofs arrive from JSON and CLI input, so the type is checked at run time too.
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise InvalidProof(f"{what} is not a {HASH_SIZE}-byte hash")


def inclusion_path_length(index: int, size: int) -> int:
    """How many hashes ``PATH(index, D[size])`` holds: one per level where the leaf has a sibling."""
    length = 0
    while size > 1:
        k = _split(size)
        if index >= k:
            index, size = index - k, size - k
        else:
            size = k
        length += 1
    return length


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root implied by an inclusion proof (RFC 9162 2.1.3.2 steps 1-4). Raises `InvalidProof`."""
    if size <= 0 or not 0 <= index < size:
        raise InvalidProof(f"leaf index {index} is outside a tree of size {size}")
    _check_hash(leaf, "leaf hash")
    for i, p in enumerate(proof):
        _check_hash(p, f"proof element {i}")
    if len(proof) != inclusion_path_length(index, size):
        raise InvalidProof(f"proof has {len(proof)} hashes, a path for leaf {index} of {size} needs a different count")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise InvalidProof("proof is longer than the path")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # A right-edge node with no sibling at this level is carried up unchanged (RFC 9162 2.1.3.2 4b).
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof("proof is shorter than the path")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raise `InvalidProof` unless ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree with ``root``."""
    _check_hash(root, "root")
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise InvalidProof(f"inclusion proof for leaf {index} does not lead to the root of size {size}")


def verify_consistency(old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes) -> None:
    """Raise `InvalidProof` unless ``proof`` shows tree ``old_size`` is a prefix of tree ``new_size``.

    Edge cases as transparency-dev/merkle ``RootFromConsistencyProof``: a shrinking tree and ``old_size == 0``
    always fail (nothing to be consistent with); equal sizes need an empty proof and equal roots.
    """
    if new_size < old_size:
        raise InvalidProof(f"tree shrank from {old_size} to {new_size}")
    if old_size <= 0:
        raise InvalidProof("no consistency proof from an empty tree")
    if old_size == new_size:
        # Nothing to recompute: the two heads must simply be identical (compared as given, like upstream).
        if proof:
            raise InvalidProof("equal tree sizes need an empty proof")
        if old_root != new_root:
            raise InvalidProof("same tree size, different roots: the log forked")
        return
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    for i, c in enumerate(proof):
        _check_hash(c, f"proof element {i}")
    if not proof:
        raise InvalidProof("empty consistency proof")
    path = list(proof)
    # RFC 9162 2.1.4.2 step 2: when the old tree is a perfect subtree, its root is implied, not sent.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:  # step 4: skip the levels where the old tree's last node is a right child
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise InvalidProof("consistency proof is longer than needed")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof("consistency proof is shorter than needed")
    if fr != old_root:
        raise InvalidProof(f"consistency proof does not lead to the root of size {old_size}")
    if sr != new_root:
        raise InvalidProof(f"consistency proof does not lead to the root of size {new_size}")
