"""`[proxy.capability]` over real stdio pipes: client -> proxy process -> examples/mcp_echo_server.py."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from proxy_support import ECHO as ECHO_SERVER
from proxy_support import PY, ROOT, RawProxy

from capability import Prefix, SigningKey, attenuate, capability, descriptor_digest, issue, make_pop
from cisora_mesh.audit import open_store
from mcp_proxy.config import CapabilitySettings

SERVER = "mcp_echo_server"  # server_name_for([python, examples/mcp_echo_server.py])
AUD = "proxy-test"
ECHO = f"mcp://{SERVER}/tools/echo"


class _Keys:
    def __init__(self) -> None:
        self.anchor, self.a, self.b = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
        now = int(time.time())
        self.root = issue(
            self.anchor,
            holder=self.a.public,
            audience=AUD,
            now=now - 5,
            capabilities=[capability(f"mcp://{SERVER}/tools/*", ["call"])],
        )
        # A delegates only `echo`, and only texts starting with "hello", to B.
        self.child = attenuate(
            self.root,
            self.a,
            holder=self.b.public,
            now=now - 5,
            ttl=600,
            capabilities=[capability(ECHO, ["call"], {"/text": Prefix(value="hello")})],
        )

    def pop(self, args: dict[str, Any], nonce: str | None = None) -> str:
        return make_pop(
            self.b,
            self.child,
            method="tools/call",
            resource=ECHO,
            args=args,
            audience=AUD,
            now=int(time.time()),
            nonce=nonce,
        )


def _config(tmp_path: Path, keys: _Keys) -> Path:
    anchor = tmp_path / "root.pub.jwk"
    anchor.write_text(json.dumps(keys.anchor.public.to_jwk()))
    config = tmp_path / "mesh.toml"
    config.write_text(
        f'[proxy]\npinning = "off"\n[proxy.capability]\nrequired = true\n'
        f'trust_anchors = ["{anchor}"]\naudience = "{AUD}"\n'
    )
    return config


async def _call(proxy: RawProxy, rid: Any, args: dict[str, Any], token: str | None, pop: str | None) -> dict[str, Any]:
    meta = {k: v for k, v in (("io.cisora/capability", token), ("io.cisora/pop", pop)) if v is not None}
    await proxy.send({"id": rid, "method": "tools/call", "params": {"name": "echo", "arguments": args, "_meta": meta}})
    return await proxy.response(rid)


def _assert_denied(reply: dict[str, Any]) -> None:
    error = reply["error"]
    assert error["code"] == -32013
    assert error["data"]["type"] == "urn:cisora:problem:capability-denied"
    assert error["data"]["resource"] == ECHO
    # One fixed sentence whatever failed: no private reason leaks to the caller.
    for reason in ("missing", "pop_", "not_granted", "replayed", "expired", "signature"):
        assert reason not in json.dumps(error).replace("missing or not valid", "")


async def test_calls_are_authorized_by_capability(tmp_path: Path) -> None:
    keys = _Keys()
    home = tmp_path / "home"
    proxy = await RawProxy.start(home, "--config", str(_config(tmp_path, keys)))
    try:
        await proxy.initialize()
        # no token at all
        _assert_denied(await _call(proxy, 1, {"text": "hello"}, None, None))
        # the attenuated token with a proof of possession
        ok_args = {"text": "hello world"}
        ok_pop = keys.pop(ok_args, nonce="n-1")
        reply = await _call(proxy, 2, ok_args, keys.child, ok_pop)
        assert reply["result"]["content"][0]["text"] == "hello world"
        # the same proof again: replay
        _assert_denied(await _call(proxy, 3, ok_args, keys.child, ok_pop))
        # arguments that break the child's constraint, with an honest PoP over them
        bad = {"text": "goodbye"}
        _assert_denied(await _call(proxy, 4, bad, keys.child, keys.pop(bad)))
        # a token without its proof
        _assert_denied(await _call(proxy, 5, ok_args, keys.child, None))
    finally:
        assert await proxy.close() == 0
    store = open_store(None, data_dir=home)
    try:
        capability_rules = [r["record"]["rule_ids"] for r in store.tail(50) if r["record"].get("kind") == "capability"]
    finally:
        store.close()
    assert ["capability.ok"] in capability_rules
    assert ["capability.pop_replayed"] in capability_rules
    assert ["capability.not_granted"] in capability_rules


async def test_tools_list_shows_only_granted_tools(tmp_path: Path) -> None:
    keys = _Keys()
    proxy = await RawProxy.start(tmp_path / "home", "--no-audit", "--config", str(_config(tmp_path, keys)))
    try:
        await proxy.initialize()
        names = {}
        for rid, token in (("child", keys.child), ("root", keys.root), ("none", None), ("junk", "x.y.z")):
            params = {"_meta": {"io.cisora/capability": token}} if token else {}
            await proxy.send({"id": rid, "method": "tools/list", "params": params})
            names[rid] = {t["name"] for t in (await proxy.response(rid))["result"]["tools"]}
        assert names["child"] == {"echo"}
        assert "echo" in names["root"] and "fetch_page" in names["root"]
        assert names["none"] == set() and names["junk"] == set()
    finally:
        assert await proxy.close() == 0


async def test_token_pinned_to_the_listed_tool_definition(tmp_path: Path) -> None:
    keys = _Keys()
    proxy = await RawProxy.start(tmp_path / "home", "--no-audit", "--config", str(_config(tmp_path, keys)))

    def pinned(pin: str) -> str:
        return attenuate(
            keys.root,
            keys.a,
            holder=keys.b.public,
            now=int(time.time()) - 5,
            ttl=600,
            capabilities=[capability(ECHO, ["call"], pin=pin)],
        )

    def pop(token: str, args: dict[str, Any]) -> str:
        return make_pop(
            keys.b, token, method="tools/call", resource=ECHO, args=args, audience=AUD, now=int(time.time())
        )

    try:
        await proxy.initialize()
        args = {"text": "hi"}
        good_before_listing = pinned(descriptor_digest({"name": "echo"}))
        # no tools/list seen yet in this session: a pinned right has nothing to match (fail closed)
        _assert_denied(await _call(proxy, "early", args, good_before_listing, pop(good_before_listing, args)))
        await proxy.send({"id": "l", "method": "tools/list", "params": {"_meta": {"io.cisora/capability": keys.root}}})
        echo = next(t for t in (await proxy.response("l"))["result"]["tools"] if t["name"] == "echo")
        good = pinned(descriptor_digest(echo))
        reply = await _call(proxy, "ok", args, good, pop(good, args))
        assert reply["result"]["content"][0]["text"] == "hi"
        changed = pinned(descriptor_digest({**echo, "description": "something else"}))
        _assert_denied(await _call(proxy, "changed", args, changed, pop(changed, args)))
    finally:
        assert await proxy.close() == 0


async def test_multi_server_router_applies_the_gate_per_server(tmp_path: Path) -> None:
    keys = _Keys()  # grants only mcp://mcp_echo_server/..., so name the routed server alike
    config = _config(tmp_path, keys)
    config.write_text(
        config.read_text() + f'[[proxy.servers]]\nname = "{SERVER}"\ncommand = ["{PY}", "{ECHO_SERVER}"]\n'
        f'[[proxy.servers]]\nname = "other"\ncommand = ["{PY}", "{ECHO_SERVER}"]\n'
    )
    proc = await asyncio.create_subprocess_exec(
        PY,
        "-m",
        "cisora_mesh",
        "proxy",
        "stdio",
        "--no-audit",
        "--config",
        str(config),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(ROOT),
        env={**os.environ, "CISORA_MESH_HOME": str(tmp_path / "home")},
    )
    proxy = RawProxy(proc)
    try:
        await proxy.initialize()
        await proxy.send({"id": "l", "method": "tools/list", "params": {"_meta": {"io.cisora/capability": keys.child}}})
        assert {t["name"] for t in (await proxy.response("l"))["result"]["tools"]} == {f"{SERVER}__echo"}
        args = {"text": "hello router"}
        meta = {"io.cisora/capability": keys.child, "io.cisora/pop": keys.pop(args)}
        await proxy.send(
            {"id": 1, "method": "tools/call", "params": {"name": f"{SERVER}__echo", "arguments": args, "_meta": meta}}
        )
        assert (await proxy.response(1))["result"]["content"][0]["text"] == "hello router"
        await proxy.send({"id": 2, "method": "tools/call", "params": {"name": "other__echo", "arguments": args}})
        assert (await proxy.response(2))["error"]["code"] == -32013
    finally:
        assert await proxy.close() == 0


def test_capability_config_validation() -> None:
    assert not CapabilitySettings().required
    with pytest.raises(ValueError, match="trust_anchors"):
        CapabilitySettings(required=True, audience="x")
    from mcp_proxy.config import ProxySettings

    with pytest.raises(ValueError, match="inspect"):
        ProxySettings.model_validate(
            {"inspect": False, "capability": {"required": True, "audience": "a", "trust_anchors": ["k.jwk"]}}
        )
    assert msgspec.json.encode(ProxySettings().capability.model_dump(mode="json")) == (
        b'{"required":false,"trust_anchors":[],"audience":null}'
    )


# --- the same gate over the HTTP front (real loopback socket, both eras) ------------------------------------------


def _resign_child(root: str, parent_holder: SigningKey, holder: SigningKey, widen: dict[str, Any]) -> str:
    """A child link signed by the real holder of `root` whose capability is wider than the root's (not attenuate)."""
    from capability._b64 import b64d, b64e
    from capability.jcs import canonicalize
    from capability.tokens import link_digest

    last = root.split("~")[-1]
    claims = json.loads(b64d(last.split(".")[1]))
    claims.update(iss=parent_holder.kid, sub=holder.public.b64(), prf=link_digest(last), jti="widened-child")
    claims["caps"][0].update(widen)
    header = canonicalize({"alg": "EdDSA", "kid": parent_holder.kid, "typ": "cisora-cap+jws"})
    signing_input = f"{b64e(header)}.{b64e(canonicalize(claims))}"
    return f"{root}~{signing_input}.{b64e(parent_holder.sign(signing_input.encode()))}"


@pytest.mark.parametrize("era", ["2025-11-25", "2026-07-28"])
async def test_capability_gate_over_http(era: str, tmp_path: Path) -> None:
    import httpx
    from inproc import MODERN_META, free_port, sse_messages
    from test_proxy_http import _serve, _stop

    keys = _Keys()
    now = int(time.time())
    rogue = SigningKey.generate()  # not a trust anchor
    forged = issue(
        rogue,
        holder=keys.a.public,
        audience=AUD,
        now=now - 5,
        capabilities=[capability(f"mcp://{SERVER}/tools/*", ["call"])],
    )
    expired = issue(
        keys.anchor,
        holder=keys.a.public,
        audience=AUD,
        now=now - 7200,
        ttl=60,
        capabilities=[capability(f"mcp://{SERVER}/tools/*", ["call"])],
    )
    widened = _resign_child(keys.root, keys.a, keys.b, {"res": "mcp://*/tools/*"})

    def pop(key: SigningKey, token: str, args: dict[str, Any]) -> str:
        return make_pop(key, token, method="tools/call", resource=ECHO, args=args, audience=AUD, now=int(time.time()))

    port = free_port()
    home = tmp_path / "home"
    argv = [PY, "-m", "cisora_mesh", "proxy", "http", "--port", str(port), "--config", str(_config(tmp_path, keys))]
    proc = _serve([*argv, "--", PY, ECHO_SERVER], port, home)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
            base_meta: dict[str, Any] = {}
            if era == "2026-07-28":
                headers["mcp-protocol-version"] = era
                base_meta = dict(MODERN_META)
            else:
                init = {"protocolVersion": era, "capabilities": {}, "clientInfo": {"name": "cap-http", "version": "1"}}
                body = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init}
                resp = await http.post(url, json=body, headers=headers)
                assert resp.status_code == 200, resp.text
                headers.update({"mcp-session-id": resp.headers["mcp-session-id"], "mcp-protocol-version": era})
                initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
                assert (await http.post(url, json=initialized, headers=headers)).status_code == 202

            async def call(rid: int, args: dict[str, Any], token: str | None, proof: str | None) -> dict[str, Any]:
                meta = {**base_meta}
                if token is not None:
                    meta["io.cisora/capability"] = token
                if proof is not None:
                    meta["io.cisora/pop"] = proof
                params = {"name": "echo", "arguments": args, "_meta": meta}
                body = {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": params}
                extra = {"mcp-method": "tools/call", "mcp-name": "echo"}
                resp = await http.post(url, json=body, headers={**headers, **extra})
                assert resp.status_code == 200, resp.text
                return next(m for m in sse_messages(resp) if m.get("id") == rid)

            args = {"text": "hello over http"}
            allowed = await call(1, args, keys.child, keys.pop(args))
            assert allowed["result"]["content"][0]["text"] == "hello over http"
            _assert_denied(await call(2, args, forged, pop(keys.a, forged, args)))
            _assert_denied(await call(3, args, expired, pop(keys.a, expired, args)))
            _assert_denied(await call(4, args, widened, pop(keys.b, widened, args)))
            _assert_denied(await call(5, args, None, None))
            # The proof signed over other arguments than the ones sent.
            _assert_denied(await call(6, {"text": "hello, changed"}, keys.child, keys.pop(args)))
    finally:
        _stop(proc)
    store = open_store(None, data_dir=home)
    try:
        reasons = {
            r for rec in store.tail(100) if rec["record"].get("kind") == "capability" for r in rec["record"]["rule_ids"]
        }
    finally:
        store.close()
    assert {"capability.ok", "capability.expired", "capability.widened"} <= reasons
    assert reasons & {"capability.unknown_issuer", "capability.bad_signature"}  # the forged root
