"""Benchmark capability verification: p50/p99 per depth with PoP, cold vs warm, and cheap denials.

Run: python bench/capability.py [--n 2000]. Cold = verifier without link cache (every signature and narrowing check
runs); warm = verified links cached by digest (only time/audience/revocation checks, request matching, and the PoP
signature, which is new on every call). Denials time an expired token and one from an unknown issuer, which must be
refused before any signature work.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# This file is named like the package; keep its own folder off sys.path so `capability` is the library.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from capability import (  # noqa: E402
    InvalidCapability,
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

NOW = 1_800_000_000
AUD = "proxy-1"
RES = "mcp://files/tools/read_file"
ARGS = {"path": "/srv/pub/report.txt", "limit": 10}


def build_chain(anchor: SigningKey, depth: int) -> tuple[str, SigningKey]:
    keys = [SigningKey.generate() for _ in range(depth)]
    caps = [
        capability(
            "mcp://files/tools/*",
            ["call"],
            {
                "/path": [Prefix(value="/srv/"), MaxLength(n=200)],
                "/limit": Range(min=0, max=100),
                "/sudo": NotPresent(),
            },
        )
    ]
    token = issue(anchor, holder=keys[0].public, audience=AUD, capabilities=caps, now=NOW, budget=None)
    for i in range(1, depth):
        narrowed = [
            capability(
                RES,
                ["call"],
                {
                    "/path": [Prefix(value="/srv/pub/"), MaxLength(n=200 - i)],
                    "/limit": Range(min=0, max=100 - i),
                    "/sudo": NotPresent(),
                },
            )
        ]
        token = attenuate(token, keys[i - 1], holder=keys[i].public, now=NOW, capabilities=narrowed)
    return token, keys[-1]


def measure(fn: Callable[[int], None], n: int) -> tuple[float, float]:
    samples = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        fn(i)
        samples.append(time.perf_counter_ns() - t0)
    samples.sort()
    return statistics.median(samples) / 1000, samples[min(n - 1, int(n * 0.99))] / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    n = parser.parse_args().n
    anchor = SigningKey.generate()
    trust = KeySet.of(anchor)
    rows: list[tuple[str, float, float, str]] = []
    for depth in (1, 4, 8):
        token, holder = build_chain(anchor, depth)
        pops = [
            make_pop(holder, token, method="call", resource=RES, args=ARGS, audience=AUD, now=NOW, nonce=f"n{i}")
            for i in range(2 * n)
        ]
        cold = Verifier(trust, audience=AUD, link_cache_size=0)
        warm = Verifier(trust, audience=AUD)
        warm.verify(token, resource=RES, action="call", args=ARGS, now=NOW, pop=pops[-1])

        def run_cold(i: int, v: Verifier = cold, t: str = token, p: list[str] = pops) -> None:
            v.verify(t, resource=RES, action="call", args=ARGS, now=NOW, pop=p[i])

        def run_warm(i: int, v: Verifier = warm, t: str = token, p: list[str] = pops) -> None:
            v.verify(t, resource=RES, action="call", args=ARGS, now=NOW, pop=p[n + i - 1])

        target_cold = "<= 1000" if depth == 4 else ""
        target_warm = "<= 100" if depth == 4 else ""
        rows.append((f"verify depth {depth} + PoP, cold", *measure(run_cold, n), target_cold))
        rows.append((f"verify depth {depth} + PoP, warm", *measure(run_warm, n), target_warm))

    expired = issue(
        anchor,
        holder=SigningKey.generate().public,
        audience=AUD,
        now=NOW - 7200,
        ttl=60,
        capabilities=[capability(RES, ["call"])],
    )
    stranger = SigningKey.generate()
    unknown = issue(
        stranger, holder=SigningKey.generate().public, audience=AUD, now=NOW, capabilities=[capability(RES, ["call"])]
    )
    deny_v = Verifier(trust, audience=AUD, link_cache_size=0)

    def deny(token: str) -> Callable[[int], None]:
        def run(i: int) -> None:
            try:
                deny_v.verify(token, resource=RES, action="call", args=ARGS, now=NOW, pop="x")
            except InvalidCapability:
                return
            raise AssertionError("token was accepted")

        return run

    rows.append(("deny expired token", *measure(deny(expired), n), "<= 20"))
    rows.append(("deny unknown-issuer token", *measure(deny(unknown), n), "<= 20"))

    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  {'p50 us':>9}  {'p99 us':>9}  {'target p50 us':>13}")
    print("-" * (width + 38))
    for name, p50, p99, target in rows:
        print(f"{name:<{width}}  {p50:>9.1f}  {p99:>9.1f}  {target:>13}")
    print(f"\n(n={n} per row; token sizes grow ~0.75 KB per link)")


if __name__ == "__main__":
    main()
