"""OAuth 2.1 resource-server duties of `proxy http` (RFC 9728 metadata, 401/403 challenges, audience, sessions)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm
from proxy_support import ECHO, PY, ROOT, wait_listening

ISSUER = "https://auth.example"
META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
MODERN = {"accept": "application/json", "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"}
LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": META}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("oauth-home")
    key = Ed25519PrivateKey.generate()
    jwk = OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    (home / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "EdDSA", "use": "sig"}]}))
    port = _free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    (home / "oauth.toml").write_text(
        f'[proxy.http.oauth]\nissuer = "{ISSUER}"\nresource = "{resource}"\n'
        f'jwks_file = "{home / "jwks.json"}"\nrequired_scopes = ["mcp:tools"]\n'
    )
    argv = [PY, "-m", "cisora_mesh", "proxy", "http", "--port", str(port), "--config", str(home / "oauth.toml")]
    proc = subprocess.Popen([*argv, "--", PY, ECHO], cwd=ROOT, env={**os.environ, "CISORA_MESH_HOME": str(home)})
    try:
        wait_listening(port)
        yield {"url": resource, "key": key, "port": port}
    finally:
        proc.terminate()
        proc.wait(10)


def _token(server: dict[str, Any], **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": server["url"], "sub": "alice", "exp": now + 300, "scope": "mcp:tools", **overrides}
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, server["key"], algorithm="EdDSA", headers={"kid": "k1"})


def _post(server: dict[str, Any], token: str | None, body: dict[str, Any] = LIST, **headers: str) -> httpx.Response:
    auth = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(server["url"], json=body, headers={**MODERN, **auth, **headers}, timeout=30)


def test_protected_resource_metadata(server: dict[str, Any]) -> None:
    port = server["port"]
    meta = httpx.get(f"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp").json()
    assert meta["resource"] == server["url"]
    assert meta["authorization_servers"] == [ISSUER]
    assert meta["bearer_methods_supported"] == ["header"]


def test_missing_and_bad_tokens_get_401_with_a_challenge(server: dict[str, Any]) -> None:
    missing = _post(server, None)
    assert missing.status_code == 401
    assert "resource_metadata=" in missing.headers["www-authenticate"]
    for token in (
        _token(server, aud="https://other.example/mcp"),  # minted for another resource
        _token(server, iss="https://evil.example"),
        _token(server, exp=int(time.time()) - 3600),
        jwt.encode({"iss": ISSUER, "aud": server["url"], "exp": int(time.time()) + 60}, "k" * 32, algorithm="HS256"),
        "not-a-jwt",
    ):
        resp = _post(server, token)
        assert resp.status_code == 401, resp.text
        assert 'error="invalid_token"' in resp.headers["www-authenticate"]


def test_missing_scope_is_403(server: dict[str, Any]) -> None:
    resp = _post(server, _token(server, scope="other"))
    assert resp.status_code == 403
    assert 'error="insufficient_scope"' in resp.headers["www-authenticate"]


def test_valid_token_reaches_the_server(server: dict[str, Any]) -> None:
    resp = _post(server, _token(server))
    assert resp.status_code == 200, resp.text
    assert "echo" in {t["name"] for t in resp.json()["result"]["tools"]}


def test_legacy_session_belongs_to_its_creator(server: dict[str, Any]) -> None:
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    headers = {"accept": "application/json, text/event-stream"}
    alice = _token(server)
    created = httpx.post(server["url"], json=init, headers={**headers, "authorization": f"Bearer {alice}"}, timeout=30)
    assert created.status_code == 200, created.text
    session = created.headers["mcp-session-id"]
    mallory = _token(server, sub="mallory")
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    stolen = httpx.post(
        server["url"],
        json=ping,
        headers={**headers, "authorization": f"Bearer {mallory}", "mcp-session-id": session},
        timeout=30,
    )
    assert stolen.status_code == 404
