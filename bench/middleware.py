"""Latency added by the ASGI middleware: the same hello-world JSON endpoint with and without it, over real HTTP.

    python bench/middleware.py [--requests 2000]

Two uvicorn servers run as subprocesses on loopback (one app bare, one with `CisoraMiddleware` and the inline
stages: normalisation, signatures, DLP; plus the starter policy pack). One keep-alive httpx client sends the same
small chat-style JSON POST to each, interleaved request by request so machine noise hits both equally. Each request
is scanned on the way in (body) and on the way out (JSON response). Target (issue 3): <= 15% added p50 latency.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time

import httpx

BODY = {
    "model": "demo",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant for the finance team."},
        {"role": "user", "content": "Summarise last quarter's revenue growth by region in three bullet points."},
    ],
}


LABELS = {
    "plain": "bare app",
    "mesh": "middleware (request + response)",
    "mesh-req": "middleware (request only)",
}


def build_app(kind: str) -> object:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def hello(request: Request) -> Response:
        await request.body()
        return JSONResponse({"message": "hello, world", "ok": True})

    middleware = []
    if kind != "plain":
        from cisora_mesh.asgi import CisoraMiddleware
        from cisora_mesh.mesh import Mesh
        from cisora_mesh.policy import starter_pack

        middleware.append(
            Middleware(CisoraMiddleware, mesh=Mesh(), policy=starter_pack(), scan_responses=kind == "mesh")
        )
    return Starlette(routes=[Route("/hello", hello, methods=["POST"])], middleware=middleware)


def serve(kind: str, port: int) -> None:
    import uvicorn

    uvicorn.run(build_app(kind), host="127.0.0.1", port=port, log_level="error", access_log=False)  # type: ignore[arg-type]


def in_process(kind: str, n: int = 3000) -> float:
    """Mean microseconds per request calling the ASGI app directly (no network, no client): the CPU cost."""
    import asyncio

    import msgspec

    body = msgspec.json.encode(BODY)
    app = build_app(kind)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "path": "/hello",
        "raw_path": b"/hello",
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1),
        "headers": [(b"host", b"x"), (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: object) -> None:
        return None

    async def run(count: int) -> float:
        start = time.perf_counter()
        for _ in range(count):
            await app(scope, receive, send)  # type: ignore[operator]
        return (time.perf_counter() - start) / count * 1e6

    async def best() -> float:
        await run(300)
        return min([await run(n) for _ in range(3)])

    return asyncio.run(best())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.post(url, json=BODY, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit(f"server at {url} did not start")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, int(len(ordered) * q) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--serve", choices=list(LABELS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return

    servers: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
    try:
        for kind in LABELS:
            port = free_port()
            proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port)])
            servers[kind] = (f"http://127.0.0.1:{port}/hello", proc)
        for url, _ in servers.values():
            wait_ready(url)
        latencies: dict[str, list[float]] = {kind: [] for kind in servers}
        elapsed: dict[str, float] = dict.fromkeys(servers, 0.0)
        with httpx.Client(timeout=10) as client:
            for _ in range(200):  # warm-up: connections, imports, caches
                for url, _ in servers.values():
                    client.post(url, json=BODY)
            for _ in range(args.requests):
                for kind, (url, _) in servers.items():
                    start = time.perf_counter()
                    resp = client.post(url, json=BODY)
                    took = time.perf_counter() - start
                    if resp.status_code != 200:
                        raise SystemExit(f"{kind}: unexpected status {resp.status_code}")
                    latencies[kind].append(took * 1e6)
                    elapsed[kind] += took
    finally:
        for _, proc in servers.values():
            proc.terminate()
            proc.wait(timeout=10)

    print(f"{'server':<34} {'req/s':>7} {'p50 us':>8} {'p99 us':>8} {'added p50':>16}")
    base = statistics.median(latencies["plain"])
    for kind, samples in latencies.items():
        p50 = statistics.median(samples)
        added = "" if kind == "plain" else f"{p50 - base:+.0f} us {100 * (p50 - base) / base:+.1f}%"
        rps = len(samples) / elapsed[kind]
        print(f"{LABELS[kind]:<34} {rps:>7.0f} {p50:>8.0f} {percentile(samples, 0.99):>8.0f} {added:>16}")
    print("target: <= 15% added p50 latency (requests and responses scanned, inline stages on)")
    print()
    print(f"{'in-process (no network)':<34} {'us/req':>7} {'added':>8}")
    bare = in_process("plain")
    for kind, label in LABELS.items():
        cost = bare if kind == "plain" else in_process(kind)
        print(f"{label:<34} {cost:>7.1f} {'' if kind == 'plain' else f'{cost - bare:+.1f}':>8}")


if __name__ == "__main__":
    main()
