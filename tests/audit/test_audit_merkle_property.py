from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cisora_mesh.audit.errors import InvalidProof
from cisora_mesh.audit.merkle import (
    CompactRange,
    consistency_path,
    inclusion_path,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(hashlib.sha256(i.to_bytes(8, "big")).digest()) for i in range(n)]


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=3000), st.data())
def test_random_proofs_round_trip_and_reject_wrong_roots(n: int, data: st.DataObject) -> None:
    leaves = _leaves(n)
    root = root_of(leaves)
    cr = CompactRange()
    for h in leaves:
        cr.append(h)
    assert cr.root() == root
    m = data.draw(st.integers(min_value=0, max_value=n - 1))
    path = inclusion_path(m, leaves)
    verify_inclusion(m, n, leaves[m], path, root)
    old = data.draw(st.integers(min_value=1, max_value=n))
    proof = consistency_path(old, leaves)
    old_root = root_of(leaves[:old])
    verify_consistency(old, n, proof, old_root, root)
    wrong = hashlib.sha256(root).digest()
    with pytest.raises(InvalidProof):
        verify_inclusion(m, n, leaves[m], path, wrong)
    if old < n:
        with pytest.raises(InvalidProof):
            verify_consistency(old, n, proof, wrong, root)
