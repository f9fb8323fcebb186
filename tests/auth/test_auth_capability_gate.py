from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from capability import AuditEvent, KeySet, Prefix, SigningKey, attenuate, capability, issue, make_pop
from cisora_mesh.audit.record import AuditRecord
from cisora_mesh.auth.capability import (
    DENIED_MESSAGE,
    META_POP,
    META_TOKEN,
    CapabilityAllowed,
    CapabilityDenied,
    CapabilityGate,
    credentials_from_headers,
    credentials_from_meta,
    load_trust_anchors,
)

NOW = 1_800_000_000
AUD = "proxy-1"
RES = "mcp://files/tools/read_file"


class _Sink:
    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    def append_record(self, record: AuditRecord) -> int:
        self.records.append(record)
        return len(self.records) - 1


@pytest.fixture
def keys() -> tuple[SigningKey, SigningKey, SigningKey]:
    return SigningKey.generate(), SigningKey.generate(), SigningKey.generate()


def _tokens(keys: tuple[SigningKey, SigningKey, SigningKey]) -> tuple[str, str]:
    anchor, a, b = keys
    root = issue(
        anchor,
        holder=a.public,
        audience=AUD,
        now=NOW,
        ttl=3600,
        jti="root-1",
        capabilities=[capability("mcp://files/tools/*", ["call"], {"/path": Prefix(value="/srv/")})],
    )
    child = attenuate(
        root,
        a,
        holder=b.public,
        now=NOW,
        ttl=600,
        jti="child-1",
        capabilities=[capability(RES, ["call"], {"/path": Prefix(value="/srv/pub/")})],
    )
    return root, child


def _params(token: str | None, pop: str | None, args: Mapping[str, object]) -> dict[str, object]:
    meta = {k: v for k, v in ((META_TOKEN, token), (META_POP, pop)) if v is not None}
    return {"name": "read_file", "arguments": args, "_meta": meta}


def _gate(keys: tuple[SigningKey, SigningKey, SigningKey], **kw: object) -> CapabilityGate:
    return CapabilityGate(KeySet.of(keys[0]), audience=AUD, clock=lambda: NOW + 1, **kw)  # type: ignore[arg-type]


def test_attenuated_token_with_pop_is_allowed(keys: tuple[SigningKey, SigningKey, SigningKey]) -> None:
    _, child = _tokens(keys)
    args = {"path": "/srv/pub/a.txt"}
    pop = make_pop(keys[2], child, method="tools/call", resource=RES, args=args, audience=AUD, now=NOW)
    result = _gate(keys).check_mcp_call("files", _params(child, pop, args))
    assert isinstance(result, CapabilityAllowed)
    assert result.allowed and result.jti == "child-1" and result.chain == ("root-1", "child-1")


def test_denials_share_one_public_message_and_audit_the_private_reason(
    keys: tuple[SigningKey, SigningKey, SigningKey],
) -> None:
    _, child = _tokens(keys)
    events: list[AuditEvent] = []
    sink = _Sink()
    gate = _gate(keys, on_event=events.append, audit=sink)
    wide = {"path": "/srv/private/x"}  # inside the root's prefix, outside the child's
    pop = make_pop(keys[2], child, method="tools/call", resource=RES, args=wide, audience=AUD, now=NOW)
    results = [
        gate.check_mcp_call("files", _params(None, None, wide)),
        gate.check_mcp_call("files", _params(child, None, {"path": "/srv/pub/a"})),
        gate.check_mcp_call("files", _params(child, pop, wide)),
    ]
    assert all(isinstance(r, CapabilityDenied) and r.message == DENIED_MESSAGE for r in results)
    reasons = [e.reason for e in events]
    assert reasons == ["missing_token", "pop_missing", "not_granted"]
    for r in results:
        assert isinstance(r, CapabilityDenied) and not any(reason in r.message for reason in reasons)
    assert [rec.rule_ids for rec in sink.records] == [(f"capability.{r}",) for r in reasons]
    assert {rec.verdict for rec in sink.records} == {"block"}


def test_replayed_pop_and_pop_over_other_arguments_are_denied(
    keys: tuple[SigningKey, SigningKey, SigningKey],
) -> None:
    _, child = _tokens(keys)
    events: list[AuditEvent] = []
    gate = _gate(keys, on_event=events.append)
    args = {"path": "/srv/pub/a.txt"}
    pop = make_pop(keys[2], child, method="tools/call", resource=RES, args=args, audience=AUD, now=NOW)
    assert gate.check_mcp_call("files", _params(child, pop, args)).allowed
    assert not gate.check_mcp_call("files", _params(child, pop, args)).allowed
    other = {"path": "/srv/pub/b.txt"}
    assert not gate.check_mcp_call("files", _params(child, pop, other)).allowed
    assert [e.reason for e in events] == ["ok", "pop_replayed", "pop_mismatch"]


def test_audit_hook_failure_denies(keys: tuple[SigningKey, SigningKey, SigningKey]) -> None:
    _, child = _tokens(keys)

    def broken(event: AuditEvent) -> None:
        raise RuntimeError("audit down")

    args = {"path": "/srv/pub/a.txt"}
    pop = make_pop(keys[2], child, method="tools/call", resource=RES, args=args, audience=AUD, now=NOW)
    assert not _gate(keys, on_event=broken).check_mcp_call("files", _params(child, pop, args)).allowed


def test_a2a_skill(keys: tuple[SigningKey, SigningKey, SigningKey]) -> None:
    anchor, a, _ = keys
    token = issue(
        anchor, holder=a.public, audience=AUD, now=NOW, capabilities=[capability("a2a://planner/skills/*", ["call"])]
    )
    args = {"text": "plan a trip"}
    res = "a2a://planner/skills/plan"
    pop = make_pop(a, token, method="message/send", resource=res, args=args, audience=AUD, now=NOW)
    gate = _gate(keys)
    assert gate.check_a2a("planner", "plan", args, token=token, pop=pop).allowed
    pop2 = make_pop(a, token, method="message/send", resource=res, args=args, audience=AUD, now=NOW)
    assert not gate.check_a2a("other", "plan", args, token=token, pop=pop2).allowed


def test_granted_tools_filters_listing(keys: tuple[SigningKey, SigningKey, SigningKey]) -> None:
    root, child = _tokens(keys)
    gate = _gate(keys)
    names = ["read_file", "write_file", "list_dir"]
    assert gate.granted_tools("files", names, child) == {"read_file"}
    assert gate.granted_tools("files", names, root) == set(names)
    assert gate.granted_tools("other", names, root) == set()
    assert gate.granted_tools("files", names, None) == set()
    assert gate.granted_tools("files", names, "garbage") == set()
    stranger = issue(
        SigningKey.generate(),
        holder=keys[1].public,
        audience=AUD,
        now=NOW,
        capabilities=[capability("mcp://*/tools/*", ["call"])],
    )
    assert gate.granted_tools("files", names, stranger) == set()


def test_revoke_cascades_and_is_audited(keys: tuple[SigningKey, SigningKey, SigningKey]) -> None:
    _, child = _tokens(keys)
    sink = _Sink()
    gate = _gate(keys, audit=sink)
    gate.revoke("root-1", actor="ops@example.com")
    rec = sink.records[-1]
    assert (rec.kind, rec.decision_id, rec.to_state, rec.actor) == (
        "capability.revocation",
        "root-1",
        "revoked",
        "ops@example.com",
    )
    args = {"path": "/srv/pub/a.txt"}
    pop = make_pop(keys[2], child, method="tools/call", resource=RES, args=args, audience=AUD, now=NOW)
    assert not gate.check_mcp_call("files", _params(child, pop, args)).allowed
    assert sink.records[-1].rule_ids == ("capability.revoked",)
    assert gate.granted_tools("files", ["read_file"], child) == set()


def test_credentials_and_trust_anchor_files(tmp_path: Path, keys: tuple[SigningKey, SigningKey, SigningKey]) -> None:
    assert credentials_from_meta({"_meta": {META_TOKEN: "t", META_POP: "p"}}) == ("t", "p")
    assert credentials_from_meta({"_meta": {META_TOKEN: 5}}) == (None, None)
    assert credentials_from_meta(None) == (None, None)
    assert credentials_from_headers({"cisora-capability": "t"}) == ("t", None)
    one = tmp_path / "root.pub.jwk"
    one.write_text(json.dumps(keys[0].public.to_jwk()))
    many = tmp_path / "set.jwks"
    many.write_text(json.dumps({"keys": [keys[1].public.to_jwk()]}))
    trust = load_trust_anchors([one, many])
    assert keys[0].kid in trust and keys[1].kid in trust
    with pytest.raises(ValueError, match="no trust anchors"):
        load_trust_anchors([])


def test_revocation_lands_in_the_chained_audit_store(
    tmp_path: Path, keys: tuple[SigningKey, SigningKey, SigningKey]
) -> None:
    from cisora_mesh.audit import open_store

    _, child = _tokens(keys)
    with open_store(None, data_dir=tmp_path) as store:
        gate = _gate(keys, audit=store)
        gate.revoke("child-1", actor="ops")
        args = {"path": "/srv/pub/a.txt"}
        pop = make_pop(keys[2], child, method="tools/call", resource=RES, args=args, audience=AUD, now=NOW)
        assert not gate.check_mcp_call("files", _params(child, pop, args)).allowed
        records = [entry["record"] for entry in store.tail(10)]
        assert store.verify().ok
    assert [(r["kind"], r.get("decision_id"), r.get("to_state"), r.get("actor")) for r in records[:1]] == [
        ("capability.revocation", "child-1", "revoked", "ops")
    ]
    assert records[-1]["kind"] == "capability" and records[-1]["rule_ids"] == ["capability.revoked"]
