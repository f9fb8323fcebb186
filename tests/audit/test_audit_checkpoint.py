from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cisora_mesh.audit import InvalidCheckpoint
from cisora_mesh.audit import checkpoint as cpmod
from cisora_mesh.audit.keys import key_id, load_public_keys, public_pem
from cisora_mesh.audit.merkle import EMPTY_ROOT

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUB = KEY.public_key()
KEYS = {key_id(PUB): PUB}
CP = cpmod.Checkpoint("cisora-mesh/audit/test", 42, EMPTY_ROOT)


def test_text_format_round_trip() -> None:
    signed = cpmod.sign(CP, KEY)
    lines = signed.text.split("\n")
    assert lines[:4] == ["cisora-mesh/audit/test", "42", base64.b64encode(EMPTY_ROOT).decode(), ""]
    assert lines[4].startswith("\u2014 " + key_id(PUB) + " ")
    assert signed.text.endswith("\n")
    parsed = cpmod.parse(signed.text)
    assert parsed == signed
    assert cpmod.verify(parsed, KEYS, origin=CP.origin) == CP


def test_key_id_is_base64url_of_sha256_prefix() -> None:
    import hashlib

    from cisora_mesh.audit.keys import raw_public

    want = base64.urlsafe_b64encode(hashlib.sha256(raw_public(PUB)).digest()).decode()[:16]
    assert key_id(PUB) == want
    assert set(load_public_keys(public_pem(PUB) + public_pem(PUB))) == {want}
    assert cpmod.vkey(PUB).startswith(want + "+")


MALFORMED = [
    "",
    "no signature block\n",
    "origin\n42\nnot-base64!\n\n\u2014 k AAAA\n",
    "origin\n042\n" + base64.b64encode(EMPTY_ROOT).decode() + "\n\n\u2014 k AAAA\n",
    "origin\n42\n" + base64.b64encode(b"short").decode() + "\n\n\u2014 k AAAA\n",
    "origin\n42\n" + base64.b64encode(EMPTY_ROOT).decode() + "\n\n- k AAAA\n",
    "origin\n42\n" + base64.b64encode(EMPTY_ROOT).decode() + "\n\n\u2014 k AAAA\n",
    "origin\n-1\n" + base64.b64encode(EMPTY_ROOT).decode() + "\n\n\u2014 k AAAA\n",
    "x" * 70000,
]


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_checkpoints_are_rejected(text: str) -> None:
    with pytest.raises(InvalidCheckpoint):
        cpmod.parse(text)


def test_wrong_key_wrong_origin_and_bit_flips() -> None:
    signed = cpmod.sign(CP, KEY)
    other = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(InvalidCheckpoint, match="no signature by a trusted key"):
        cpmod.verify(signed, {key_id(other): other})
    with pytest.raises(InvalidCheckpoint, match="another log"):
        cpmod.verify(signed, KEYS, origin="cisora-mesh/audit/other")
    tampered = signed.text.replace("\n42\n", "\n43\n")
    with pytest.raises(InvalidCheckpoint, match="bad signature"):
        cpmod.verify(cpmod.parse(tampered), KEYS)


def test_cosigned_checkpoint_verifies_with_either_key() -> None:
    other_key = Ed25519PrivateKey.generate()
    a = cpmod.sign(CP, KEY)
    b = cpmod.sign(CP, other_key)
    both = cpmod.parse(CP.body() + "\n" + a.signatures[0].line() + b.signatures[0].line())
    cpmod.verify(both, KEYS)
    cpmod.verify(both, {key_id(other_key.public_key()): other_key.public_key()})
