"""RFC 8785 and A2A Agent Card vectors (tests/vectors, or CISORA_VECTORS_DIR)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _cap_support import find_vectors_dir, vectors_dir

from capability import (
    CanonicalizationError,
    InvalidAgentCard,
    PublicKey,
    SigningKey,
    canonicalize,
    card_signature_headers,
    card_signing_payload,
    sign_agent_card,
    verify_agent_card,
)
from capability._b64 import b64d, b64e


def _jcs_v01(*, skip: bool = True) -> list[Path]:
    base = vectors_dir() if skip else find_vectors_dir()
    if base is None:
        return []
    root = base / "a2a" / "a2a-jcs-v01"
    return sorted(p for p in root.rglob("*.json") if p.name != "MANIFEST.json")


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def test_a2a_jcs_manifest_covers_every_file() -> None:
    import hashlib

    root = vectors_dir() / "a2a" / "a2a-jcs-v01"
    manifest = _load(root / "MANIFEST.json")
    listed = {v["path"]: v["sha256"] for v in manifest["vectors"]}
    files = _jcs_v01()
    assert len(files) == manifest["counts"]["total"] == 57
    for f in files:
        rel = f.relative_to(root).as_posix()
        match = [k for k in listed if k.endswith(rel)]
        assert match, rel
        assert hashlib.sha256(f.read_bytes()).hexdigest() == listed[match[0]]


@pytest.mark.parametrize("path", _jcs_v01(skip=False), ids=lambda p: p.stem)
def test_a2a_jcs_v01(path: Path) -> None:
    v = _load(path)
    rule3 = v["clause"] == "a2a-spec-8.4.1-rule-3"
    if v["disposition"] == "MUST-ACCEPT":
        expected = bytes.fromhex(v["expected"]["canonical_utf8_hex"])
        got = card_signing_payload(v["input"]) if rule3 else canonicalize(v["input"])
        assert got == expected
    else:
        parsed = json.loads(v["input_raw"])  # the parser accepts it; the canonicaliser must refuse
        if rule3:
            assert card_signing_payload(parsed) != v["input_raw"].encode()
            assert b"signatures" not in card_signing_payload(parsed)
        else:
            with pytest.raises(CanonicalizationError):
                canonicalize(parsed)


def test_a2a_jcs_v01_counts() -> None:
    verdicts = [_load(p)["disposition"] for p in _jcs_v01()]
    assert verdicts.count("MUST-ACCEPT") == 47
    assert verdicts.count("MUST-REJECT") == 10


@pytest.mark.parametrize("name", ["arrays", "french", "structures", "unicode", "values", "weird"])
def test_cyberphone_jcs(name: str) -> None:
    root = vectors_dir() / "jcs"
    value = json.loads((root / "input" / f"{name}.json").read_text(encoding="utf-8"))
    expected = (root / "output" / f"{name}.json").read_bytes()
    assert canonicalize(value) == expected
    hex_text = (root / "outhex" / f"{name}.txt").read_text().split()
    assert bytes.fromhex("".join(hex_text)) == expected


def _card_vectors() -> dict[str, Any]:
    result: dict[str, Any] = _load(vectors_dir() / "a2a" / "card-signing" / "card_signing_vectors.json")
    return result


def test_card_canonicalization_cases() -> None:
    cases = _card_vectors()["canonicalization_cases"]
    assert len(cases) == 6
    for c in cases:
        assert card_signing_payload(c["agent_card"]) == c["expected_jcs_payload"].encode("utf-8"), c["id"]


def test_card_signing_cases_reproduce_byte_for_byte() -> None:
    d = _card_vectors()
    key = SigningKey.from_jwk(d["private_jwk"])
    public = PublicKey.from_jwk(d["public_jwk"])
    assert key.public == public
    cases = d["signing_cases"]
    assert len(cases) == 2
    for c in cases:
        assert b64e(canonicalize(c["protected_header"])) == c["expected_protected_b64"]
        payload = card_signing_payload(c["agent_card"])
        assert payload == c["expected_jcs_payload"].encode()
        assert f"{c['expected_protected_b64']}.{b64e(payload)}" == c["expected_signing_input"]
        assert public.verify(b64d(c["signature"]), c["expected_signing_input"].encode())
        signed = sign_agent_card(c["agent_card"], key, kid=c["kid"], header={"typ": "JOSE"})
        assert signed["signatures"][-1] == {"protected": c["expected_protected_b64"], "signature": c["signature"]}
        assert verify_agent_card(signed, {c["kid"]: public}) == c["kid"]


def test_card_signing_negative_mutations() -> None:
    d = _card_vectors()
    key = SigningKey.from_jwk(d["private_jwk"])
    public = PublicKey.from_jwk(d["public_jwk"])
    card = d["signing_cases"][1]["agent_card"]
    signed = sign_agent_card(card, key, kid="key-1")
    assert verify_agent_card(signed, {"key-1": public}) == "key-1"
    tampered = {**signed, "name": signed["name"] + "!"}
    other = SigningKey.generate().public
    sig = signed["signatures"][0]
    flipped = bytearray(b64d(sig["signature"]))
    flipped[10] ^= 0x40
    bad_sig = {**signed, "signatures": [{**sig, "signature": b64e(bytes(flipped))}]}
    es256 = {**signed, "signatures": [{**sig, "protected": b64e(b'{"alg":"ES256","kid":"key-1"}')}]}
    for mutated, keys in [
        (tampered, {"key-1": public}),
        (signed, {"key-1": other}),
        (signed, {"key-2": public}),
        (bad_sig, {"key-1": public}),
        (es256, {"key-1": public}),
        ({k: v for k, v in signed.items() if k != "signatures"}, {"key-1": public}),
        ({**signed, "signatures": []}, {"key-1": public}),
        ({**signed, "signatures": [{"protected": "!!", "signature": "x"}]}, {"key-1": public}),
        ({**signed, "extra": float("nan")}, {"key-1": public}),
    ]:
        with pytest.raises(InvalidAgentCard):
            verify_agent_card(mutated, keys)
    # adding or changing the signatures member does not change the signed bytes (rule 3)
    resigned = sign_agent_card(signed, SigningKey.generate(), kid="key-2")
    assert verify_agent_card(resigned, {"key-1": public}) == "key-1"


def test_card_protected_header_structure() -> None:
    d = _load(vectors_dir() / "a2a" / "card-signing" / "card_signing_protected_header_vectors.json")
    cases = d["cases"]
    assert len(cases) == 6
    for c in cases:
        if c["expected_valid"]:
            headers = card_signature_headers(c["agent_card"])
            assert headers[0]["alg"] == c["decoded_alg"]
            assert headers[0]["kid"] == c["decoded_kid"]
        else:
            with pytest.raises(InvalidAgentCard):
                card_signature_headers(c["agent_card"])
