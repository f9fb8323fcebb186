"""Shared helpers for the capability tests (a plain module, not a conftest, to avoid clashes in the tree)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from capability import (
    AuditEvent,
    KeySet,
    MaxLength,
    NotPresent,
    Prefix,
    Range,
    SigningKey,
    Verifier,
    attenuate,
    capability,
    issue,
    make_pop,
)
from capability._b64 import b64e
from capability.jcs import canonicalize

NOW = 1_800_000_000
AUD = "proxy-1"
RES = "mcp://files/tools/read_file"
ARGS: dict[str, Any] = {"path": "/srv/pub/a.txt", "limit": 10}
REPO = Path(__file__).resolve().parents[2]


def _candidates() -> list[Path]:
    candidates = []
    if os.environ.get("CISORA_VECTORS_DIR"):
        candidates.append(Path(os.environ["CISORA_VECTORS_DIR"]))
    candidates += [REPO / "tests" / "vectors", REPO.parent / "shared" / "vectors"]
    return candidates


def find_vectors_dir() -> Path | None:
    for c in _candidates():
        if (c / "a2a").is_dir() and (c / "jcs").is_dir():
            return c
    return None


def vectors_dir() -> Path:
    """CISORA_VECTORS_DIR, else the vendored tests/vectors, else ../shared/vectors; skip when none exists."""
    found = find_vectors_dir()
    if found is None:
        pytest.skip(f"test vectors not found in any of {_candidates()} (set CISORA_VECTORS_DIR)")
    return found


def root_caps() -> list[Any]:
    return [
        capability(
            "mcp://files/tools/*",
            ["call", "list"],
            {"/path": [Prefix("/srv/"), MaxLength(200)], "/limit": Range(min=0, max=100), "/sudo": NotPresent()},
        ),
        capability("a2a://planner/skills/plan", ["invoke"]),
    ]


def leaf_caps() -> list[Any]:
    return [
        capability(
            RES,
            ["call"],
            {"/path": [Prefix("/srv/pub/"), MaxLength(100)], "/limit": Range(min=0, max=50), "/sudo": NotPresent()},
        )
    ]


def sign_raw(header: Any, payload: Any, key: SigningKey) -> str:
    """Sign arbitrary header/payload (dicts are JCS-encoded, bytes are used as they are)."""
    hb = header if isinstance(header, bytes) else canonicalize(header)
    pb = payload if isinstance(payload, bytes) else canonicalize(payload)
    signing_input = f"{b64e(hb)}.{b64e(pb)}"
    return f"{signing_input}.{b64e(key.sign(signing_input.encode()))}"


def link_header(key: SigningKey) -> dict[str, Any]:
    return {"alg": "EdDSA", "kid": key.kid, "typ": "cisora-cap+jws"}


@dataclass
class World:
    anchor: SigningKey = field(default_factory=SigningKey.generate)
    anchor2: SigningKey = field(default_factory=SigningKey.generate)
    keys: list[SigningKey] = field(default_factory=lambda: [SigningKey.generate() for _ in range(10)])
    mallory: SigningKey = field(default_factory=SigningKey.generate)
    events: list[AuditEvent] = field(default_factory=list)

    @property
    def trust(self) -> KeySet:
        return KeySet.of(self.anchor, self.anchor2)

    def root(self, **kw: Any) -> str:
        opts: dict[str, Any] = {"holder": self.keys[0].public, "audience": AUD, "capabilities": root_caps(), "now": NOW}
        opts.update(kw)
        return issue(self.anchor, **opts)

    def chain(self, depth: int, **root_kw: Any) -> tuple[str, SigningKey]:
        """A chain of ``depth`` links; the last one carries leaf_caps()."""
        token = self.root(**root_kw)
        for i in range(1, depth):
            caps = leaf_caps() if i == depth - 1 else None
            token = attenuate(token, self.keys[i - 1], holder=self.keys[i].public, now=NOW, capabilities=caps)
        return token, self.keys[depth - 1]

    def verifier(self, **kw: Any) -> Verifier:
        self.events.clear()
        kw.setdefault("audience", AUD)
        kw.setdefault("audit", self.events.append)
        return Verifier(self.trust, **kw)

    def pop(self, holder: SigningKey, token: str, **kw: Any) -> str:
        opts: dict[str, Any] = {"method": "call", "resource": RES, "args": ARGS, "audience": AUD, "now": NOW}
        opts.update(kw)
        return make_pop(holder, token, **opts)


def payload_of(link: str) -> dict[str, Any]:
    from capability._b64 import b64d

    result: dict[str, Any] = json.loads(b64d(link.split(".")[1]))
    return result
