"""Positive flows and unit semantics: constraints, scopes, keys, revocation lists, caches, budgets, public API."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from _cap_support import ARGS, AUD, NOW, RES, World, leaf_caps, root_caps

import capability
from capability import (
    Exact,
    Glob,
    InvalidCapability,
    InvalidConstraint,
    InvalidResource,
    KeySet,
    MaxLength,
    MemoryReplayCache,
    NotPresent,
    OneOf,
    Prefix,
    PublicKey,
    Range,
    Regex,
    RevocationList,
    SigningKey,
    attenuate,
    decode_chain,
    descriptor_digest,
    issue,
    key_id,
)
from capability._b64 import b64d, b64e
from capability.constraints import check, implies, resolve
from capability.scopes import is_subpattern, matches


@pytest.mark.parametrize("depth", [1, 2, 4, 8])
def test_chain_verifies_and_returns_narrowest_grant(depth: int) -> None:
    w = World()
    token, holder = w.chain(depth, budget=10)
    v = w.verifier()
    grant = v.verify(token, resource=RES, action="call", args=ARGS, now=NOW, pop=w.pop(holder, token))
    assert grant.holder == holder.kid
    assert grant.issuer == w.anchor.kid
    assert len(grant.chain) == depth
    assert grant.budget == 10
    assert grant.capability == (leaf_caps()[0] if depth > 1 else root_caps()[0])
    assert w.events[-1].outcome == "allow"
    assert w.events[-1].reason == "ok"


def test_warm_path_uses_link_cache_and_still_checks_time_and_revocation() -> None:
    w = World()
    token, holder = w.chain(4)
    v = w.verifier()
    v.verify(token, resource=RES, action="call", args=ARGS, now=NOW, pop=w.pop(holder, token))
    assert len(v._cache) == 4
    later = NOW + 3600
    with pytest.raises(InvalidCapability):
        v.verify(token, resource=RES, action="call", args=ARGS, now=later, pop=w.pop(holder, token, now=later))
    assert w.events[-1].reason == "expired"
    v.revocations.revoke(decode_chain(token)[1].claims.jti)
    with pytest.raises(InvalidCapability):
        v.verify(token, resource=RES, action="call", args=ARGS, now=NOW + 1, pop=w.pop(holder, token, now=NOW + 1))
    assert w.events[-1].reason == "revoked"


def test_cache_disabled_and_bounded() -> None:
    w = World()
    v = w.verifier(link_cache_size=0)
    token, holder = w.chain(2)
    v.verify(token, resource=RES, action="call", args=ARGS, now=NOW, pop=w.pop(holder, token))
    assert len(v._cache) == 0
    v2 = w.verifier(link_cache_size=3)
    for _ in range(3):
        token, holder = w.chain(2)
        v2.verify(token, resource=RES, action="call", args=ARGS, now=NOW, pop=w.pop(holder, token))
    assert len(v2._cache) == 3


def test_verify_without_pop_when_not_required() -> None:
    w = World()
    grant = w.verifier(require_pop=False).verify(w.root(), resource=RES, action="call", args=ARGS, now=NOW)
    assert grant.resource == RES


def test_budget_counts_calls_across_the_chain() -> None:
    w = World()
    root = w.root(budget=3)
    child = attenuate(root, w.keys[0], holder=w.keys[1].public, now=NOW, budget=2)
    v = w.verifier()
    ok = 0
    for i in range(4):
        token, holder = (child, w.keys[1]) if i % 2 == 0 else (root, w.keys[0])
        try:
            v.verify(token, resource=RES, action="call", args=ARGS, now=NOW, pop=w.pop(holder, token))
            ok += 1
        except InvalidCapability:
            assert w.events[-1].reason == "budget_exhausted"
    assert ok == 3  # the root allows three calls in total, whichever link they come through


def test_descriptor_pin_accepts_the_approved_tool() -> None:
    w = World()
    desc = {"name": "read_file", "inputSchema": {"type": "object"}}
    pin = descriptor_digest(desc)
    token = w.root(capabilities=[capability.capability(RES, ["call"], pin=pin)])
    pop = w.pop(w.keys[0], token, args={})
    grant = w.verifier().verify(token, resource=RES, action="call", args={}, now=NOW, pop=pop, descriptor_digest=pin)
    assert grant.capability.pin == pin
    assert descriptor_digest(dict(reversed(list(desc.items())))) == pin  # key order does not matter (JCS)


def test_a2a_skill_resource() -> None:
    w = World()
    token = w.root()
    res = "a2a://planner/skills/plan"
    pop = w.pop(w.keys[0], token, resource=res, method="message/send", args={"text": "hi"})
    grant = w.verifier().verify(
        token, resource=res, action="invoke", method="message/send", args={"text": "hi"}, now=NOW, pop=pop
    )
    assert grant.capability.resource == res


def test_audit_hook_failure_denies() -> None:
    w = World()

    def boom(event: Any) -> None:
        raise RuntimeError("audit store down")

    v = w.verifier(audit=boom)
    token = w.root()
    with pytest.raises(InvalidCapability):
        v.verify(token, resource=RES, action="call", args=ARGS, now=NOW, pop=w.pop(w.keys[0], token))


# -- constraints -------------------------------------------------------------------------------------------------

M = resolve({}, "/missing")

CHECKS: list[tuple[Any, Any, bool]] = [
    (Exact(value=1), 1.0, True),
    (Exact(value=1), True, False),
    (Exact(value={"a": [1, "x"]}), {"a": [1, "x"]}, True),
    (Exact(value="x"), M, False),
    (OneOf(values=("a", "b")), "b", True),
    (OneOf(values=("a", "b")), "c", False),
    (Prefix(value="/srv/"), "/srv/x", True),
    (Prefix(value="/srv/"), "/srvx", False),
    (Prefix(value="/srv/"), 5, False),
    (Glob(pattern="*.txt"), "a/b.txt", True),
    (Glob(pattern="*.txt"), "a.txt.exe", False),
    (Glob(pattern="file?.md"), "file1.md", True),
    (Glob(pattern=r"a\*b"), "a*b", True),
    (Glob(pattern=r"a\*b"), "axb", False),
    (Regex(pattern="[a-z]+"), "abc", True),
    (Regex(pattern="[a-z]+"), "abc1", False),  # full match
    (Regex(pattern="[a-z]+"), ["abc"], False),
    (Range(min=0, max=10), 10, True),
    (Range(min=0, max=10), 10.5, False),
    (Range(min=0), True, False),
    (Range(max=0), float("-inf"), False),
    (Range(min=0), 10**30, True),
    (MaxLength(n=3), "abc", True),
    (MaxLength(n=3), "abcd", False),
    (MaxLength(n=1), [1], True),
    (MaxLength(n=3), {"a": 1}, False),
    (NotPresent(), M, True),
    (NotPresent(), None, False),
    (Prefix(value="x"), M, False),
]


@pytest.mark.parametrize(("c", "value", "ok"), CHECKS)
def test_constraint_semantics(c: Any, value: Any, ok: bool) -> None:
    assert check(c, value) is ok


def test_json_pointer_resolution() -> None:
    doc = {"a": {"b/c": [10, {"~d": 1}]}, "": 5}
    assert resolve(doc, "/a/b~1c/0") == 10
    assert resolve(doc, "/a/b~1c/1/~0d") == 1
    assert resolve(doc, "/") == 5
    for missing in ["/a/b~1c/2", "/a/b~1c/01", "/a/b~1c/-", "/a/x", "/a/b~1c/0/deeper"]:
        assert resolve(doc, missing) is M


IMPLIES: list[tuple[Any, Any, bool]] = [
    (Exact(value="/srv/a"), Prefix(value="/srv/"), True),
    (OneOf(values=("/srv/a", "/etc")), Prefix(value="/srv/"), False),
    (Prefix(value="/srv/pub/"), Prefix(value="/srv/"), True),
    (Prefix(value="/"), Prefix(value="/srv/"), False),
    (Glob(pattern="/srv/*.txt"), Prefix(value="/srv/"), True),
    (Glob(pattern="*/srv/"), Prefix(value="/srv/"), False),
    (Prefix(value="/srv/a"), Glob(pattern="/srv/*"), True),
    (Prefix(value="/srv/a"), Glob(pattern="/srv/*.txt"), False),
    (Glob(pattern="/srv/*"), Glob(pattern="/srv/*"), True),
    (Regex(pattern="a+"), Regex(pattern="a+"), True),
    (Regex(pattern="aa+"), Regex(pattern="a+"), False),
    (Exact(value="aaa"), Regex(pattern="a+"), True),
    (Range(min=1, max=5), Range(min=0, max=10), True),
    (Range(min=1), Range(min=0, max=10), False),
    (Exact(value=3), Range(min=0, max=10), True),
    (MaxLength(n=5), MaxLength(n=10), True),
    (MaxLength(n=11), MaxLength(n=10), False),
    (NotPresent(), NotPresent(), True),
    (NotPresent(), Prefix(value=""), False),
    (Exact(value="x"), NotPresent(), False),
    (Prefix(value="a"), Exact(value="a"), False),
    (OneOf(values=("a",)), Exact(value="a"), True),
]


@pytest.mark.parametrize(("child", "parent", "ok"), IMPLIES)
def test_constraint_subset(child: Any, parent: Any, ok: bool) -> None:
    assert implies(child, parent) is ok


@pytest.mark.parametrize(
    "make",
    [
        lambda: Regex(pattern="(a"),
        lambda: Regex(pattern=r"(a)\1"),
        lambda: Regex(pattern="a" * 300),
        lambda: Glob(pattern="a\\"),
        lambda: Range(min=5, max=1),
        lambda: Range(),
        lambda: Range(min=float("nan")),
        lambda: OneOf(values=()),
        lambda: MaxLength(n=-1),
        lambda: Exact(value=float("inf")),
        lambda: capability.capability(RES, ["call"], {"no-slash": Prefix(value="x")}),
        lambda: capability.capability(RES, ["call"], {"/a~2": Prefix(value="x")}),
    ],
)
def test_invalid_constraints_rejected_at_issue_time(make: Any) -> None:
    with pytest.raises(InvalidConstraint):
        make()


def test_scopes() -> None:
    assert matches("mcp://files/tools/*", "mcp://files/tools/read")
    assert matches("mcp://*/tools/get_*", "mcp://gh/tools/get_issue")
    assert not matches("mcp://files/tools/*", "mcp://files/prompts/read")
    assert not matches("mcp://files/tools/*", "mcp://files/tools/*")  # requests must be concrete
    assert is_subpattern("mcp://files/tools/get_a*", "mcp://files/tools/get_*")
    assert not is_subpattern("mcp://files/tools/*", "mcp://files/tools/get_*")
    assert not is_subpattern("a2a://x/skills/y", "mcp://x/tools/y")
    for bad in ["http://x/tools/y", "mcp://x/skills/y", "mcp://x/tools/a*b", "mcp://x/tools/", "mcp://x/tools/y/z"]:
        with pytest.raises(InvalidResource):
            capability.capability(bad, ["call"])


# -- keys, revocation list, replay cache --------------------------------------------------------------------------


def test_keys_and_kid() -> None:
    k = SigningKey.generate()
    assert key_id(k.public.raw) == k.kid
    assert len(k.kid) == 43
    assert SigningKey.from_jwk(k.to_jwk()).kid == k.kid
    assert PublicKey.from_jwk(k.public.to_jwk()) == k.public
    assert k.to_jwk()["d"] not in repr(k)
    with pytest.raises(capability.CapabilityUsageError):
        SigningKey.from_jwk({**k.to_jwk(), "x": SigningKey.generate().public.b64()})


def test_key_rotation_window() -> None:
    w = World()
    trust = KeySet.of(w.anchor)
    new = SigningKey.generate()
    trust.add(new.public, not_before=NOW)
    trust.retire(w.anchor.kid, at=NOW)
    v = w.verifier()
    v.trust = trust
    old_token = w.root()  # issued at NOW, still inside the old key's window
    v.verify(
        old_token, resource=RES, action="call", args=ARGS, now=NOW + 1, pop=w.pop(w.keys[0], old_token, now=NOW + 1)
    )
    late = w.root(now=NOW + 5)
    with pytest.raises(InvalidCapability):
        v.verify(late, resource=RES, action="call", args=ARGS, now=NOW + 6, pop=w.pop(w.keys[0], late, now=NOW + 6))
    assert w.events[-1].reason == "issuer_key_not_valid"
    fresh = issue(new, holder=w.keys[0].public, audience=AUD, capabilities=leaf_caps(), now=NOW + 5)
    v.verify(fresh, resource=RES, action="call", args=ARGS, now=NOW + 6, pop=w.pop(w.keys[0], fresh, now=NOW + 6))
    trust.remove(new.kid)
    assert new.kid not in trust
    assert len(trust) == 1


def test_signed_revocation_list_roundtrip_and_tamper() -> None:
    w = World()
    rl = RevocationList(["b", "a"])
    rl.revoke("c")
    text = rl.export(w.anchor, now=NOW)
    loaded = RevocationList.load(text, w.trust, min_seq=1)
    assert loaded.is_revoked("a")
    assert loaded.is_revoked("c")
    assert len(loaded) == 3
    assert loaded.seq == 1
    h, p, s = text.split(".")
    body = json.loads(b64d(p))
    forged = f"{h}.{b64e(json.dumps({**body, 'jtis': []}, separators=(',', ':'), sort_keys=True).encode())}.{s}"
    for bad in [forged, text[:-3], "x", 5, rl.export(w.mallory, now=NOW)]:
        with pytest.raises(InvalidCapability):
            RevocationList.load(bad, w.trust)
    with pytest.raises(InvalidCapability):
        RevocationList.load(text, w.trust, min_seq=2)  # rollback to an older list


def test_revoking_a_parent_revokes_descendants_via_loaded_list() -> None:
    w = World()
    token, holder = w.chain(3)
    rl = RevocationList([decode_chain(token)[0].claims.jti])
    v = w.verifier(revocations=RevocationList.load(rl.export(w.anchor, now=NOW), w.trust))
    with pytest.raises(InvalidCapability):
        v.verify(token, resource=RES, action="call", args=ARGS, now=NOW, pop=w.pop(holder, token))


def test_memory_replay_cache_ttl_and_bound() -> None:
    c = MemoryReplayCache(max_entries=2)
    assert c.add("a", ttl=10, now=0)
    assert not c.add("a", ttl=10, now=5)
    assert c.add("b", ttl=10, now=5)
    assert not c.add("c", ttl=10, now=6)  # full of live entries: fail closed
    assert c.add("a", ttl=10, now=10)  # "a" expired
    assert len(c) == 2


# -- public API and architecture ----------------------------------------------------------------------------------


def test_public_api_sorted_and_complete() -> None:
    def isort_key(name: str) -> tuple[int, str]:  # ruff RUF022 order: CONSTANTS, Classes, functions
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert capability.__all__ == sorted(capability.__all__, key=isort_key)
    public = {n for n in dir(capability) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(capability, n)).__name__ == "module"}
    assert set(capability.__all__) == public - modules - {"annotations"}


def test_package_is_standalone() -> None:
    root = Path(capability.__file__).parent
    forbidden = {"cisora_mesh", "mcp_proxy", "memory_guard", "vault"}
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not {n.split(".")[0] for n in names} & forbidden, path


def test_claims_roundtrip_through_wire() -> None:
    w = World()
    token, _ = w.chain(2)
    for link in decode_chain(token):
        again = msgspec.json.decode(msgspec.json.encode(link.claims), type=type(link.claims))
        assert again == link.claims


def test_links_are_standard_jws_readable_by_pyjwt() -> None:
    import jwt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    w = World()
    token, _ = w.chain(2)
    root, child = token.split("~")
    anchor_key = Ed25519PublicKey.from_public_bytes(w.anchor.public.raw)
    decoded = jwt.PyJWS().decode_complete(root, anchor_key, algorithms=["EdDSA"])
    assert json.loads(decoded["payload"])["iss"] == w.anchor.kid
    holder_key = Ed25519PublicKey.from_public_bytes(w.keys[0].public.raw)
    assert json.loads(jwt.PyJWS().decode_complete(child, holder_key, algorithms=["EdDSA"])["payload"])["prf"]


def test_warm_cache_cannot_be_used_to_splice_or_outlive_an_anchor() -> None:
    w = World()
    v = w.verifier()
    t1, h1 = w.chain(2)
    t2, h2 = w.chain(2)  # same holders, different roots and jtis
    for token, holder in ((t1, h1), (t2, h2)):
        v.verify(token, resource=RES, action="call", args=ARGS, now=NOW, pop=w.pop(holder, token))
    spliced = t1.split("~")[0] + "~" + t2.split("~")[1]  # both links are in the cache
    with pytest.raises(InvalidCapability):
        v.verify(spliced, resource=RES, action="call", args=ARGS, now=NOW, pop=w.pop(h2, spliced))
    assert w.events[-1].reason == "broken_chain"
    v.trust.remove(w.anchor.kid)
    with pytest.raises(InvalidCapability):
        v.verify(t1, resource=RES, action="call", args=ARGS, now=NOW + 1, pop=w.pop(h1, t1, now=NOW + 1))
    assert w.events[-1].reason == "unknown_issuer"
