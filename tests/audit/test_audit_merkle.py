from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from cisora_mesh.audit.errors import InvalidProof
from cisora_mesh.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_path,
    inclusion_path,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "merkle"


def _files(kind: str) -> list[Path]:
    found = []
    for dirpath, _dirs, names in os.walk(VECTORS / kind):  # names hold [ ] @: walk, never glob
        found.extend(Path(dirpath) / n for n in names if n.endswith(".json"))
    return sorted(found)


def _b(s: str) -> bytes:
    return base64.b64decode(s)


def _case_id(p: Path) -> str:
    return str(p.relative_to(VECTORS))


HASHES = json.loads((VECTORS / "rfc6962-hashes.json").read_text())
LEAVES = [bytes.fromhex(x) for x in HASHES["tree"]["leaf_inputs"]]


def test_vector_counts() -> None:
    assert len(_files("inclusion")) == 98
    assert len(_files("consistency")) == 98


@pytest.mark.parametrize("path", _files("inclusion"), ids=_case_id)
def test_inclusion_vectors(path: Path) -> None:
    case = json.loads(path.read_text())
    proof = [_b(p) for p in case["proof"] or []]
    args = (case["leafIdx"], case["treeSize"], _b(case["leafHash"]), proof, _b(case["root"]))
    if case["wantErr"]:
        with pytest.raises(InvalidProof):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", _files("consistency"), ids=_case_id)
def test_consistency_vectors(path: Path) -> None:
    case = json.loads(path.read_text())
    proof = [_b(p) for p in case["proof"] or []]
    args = (case["size1"], case["size2"], proof, _b(case["root1"]), _b(case["root2"]))
    if case["wantErr"]:
        with pytest.raises(InvalidProof):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_hasher_known_answers() -> None:
    for case in HASHES["hasher_cases"]:
        if case["op"] == "empty_root":
            got = EMPTY_ROOT
        elif case["op"] == "leaf":
            got = leaf_hash(bytes.fromhex(case["input"]))
        else:
            got = node_hash(bytes.fromhex(case["left"]), bytes.fromhex(case["right"]))
        assert got.hex() == case["want"], case["id"]


def test_tree_roots_and_levels() -> None:
    hashes = [leaf_hash(x) for x in LEAVES]
    assert [h.hex() for h in hashes] == HASHES["tree"]["node_hashes_by_level"][0]
    for item in HASHES["tree"]["root_hash_by_size"]:
        size, want = item["size"], item["root"]
        assert root_of(hashes[:size]).hex() == want
        cr = CompactRange()
        for h in hashes[:size]:
            cr.append(h)
        assert cr.root().hex() == want
        assert CompactRange.from_bytes(size, cr.to_bytes()).root().hex() == want


def _recursive_mth(hashes: list[bytes]) -> bytes:
    # The RFC's recursive definition, as an independent oracle for root_of and the compact range.
    if not hashes:
        return EMPTY_ROOT
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return node_hash(_recursive_mth(hashes[:k]), _recursive_mth(hashes[k:]))


def test_generated_proofs_verify_for_every_pair() -> None:
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(40)]
    roots = [_recursive_mth(hashes[:n]) for n in range(41)]
    cr = CompactRange()
    for n in range(1, 41):
        cr.append(hashes[n - 1])
        assert cr.root() == roots[n] == root_of(hashes[:n])
        for m in range(n):
            verify_inclusion(m, n, hashes[m], inclusion_path(m, hashes[:n]), roots[n])
        for m in range(1, n + 1):
            verify_consistency(m, n, consistency_path(m, hashes[:n]), roots[m], roots[n])


def test_proofs_reject_mutations_without_crashing() -> None:
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(13)]
    root = root_of(hashes)
    path = inclusion_path(6, hashes)
    bad_inputs = [
        (6, 13, hashes[7], path, root),
        (6, 13, hashes[6], path[:-1], root),
        (6, 13, hashes[6], [*path, path[0]], root),
        (6, 13, hashes[6], [b"", *path[1:]], root),
        (6, 13, b"short", path, root),
        (6, 13, hashes[6], path, b""),
        (-1, 13, hashes[6], path, root),
    ]
    for args in bad_inputs:
        with pytest.raises(InvalidProof):
            verify_inclusion(*args)
    with pytest.raises(InvalidProof):
        inclusion_path(13, hashes)
    with pytest.raises(InvalidProof):
        consistency_path(0, hashes)
