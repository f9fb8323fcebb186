"""Benchmark the MCP proxy: direct vs proxied over stdio, inspection off and on (with durable audit).

    python bench/proxy.py [--calls 2000] [--concurrency 16] [--rounds 3]

Drives examples/mcp_echo_server.py with raw JSON-RPC lines (no SDK client, so the client's own cost does not
hide the proxy's), in the 2025-11-25 handshake era. Reports echo-tool latency p50/p99 (sequential calls), calls/s
(`--concurrency` calls in flight), the proxy's RSS after the run, and the proxy's start-up time (spawn to first
forwarded frame, with `cat` as a zero-cost upstream).

HTTP: 2026-07-28 single POST exchanges (httpx, keep-alive) against the echo server served over streamable HTTP,
direct and through `proxy http` (to the HTTP server with inspection off and on, and to a spawned stdio server).

The machine is shared and noisy, so every case runs once per round, rounds interleave the cases, and the table shows
the median over rounds; "vs direct" is the median of the per-round ratios (each round's direct run is its baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[1]
ECHO = [sys.executable, str(ROOT / "examples" / "mcp_echo_server.py")]
PROXY = [sys.executable, "-m", "cisora_mesh", "proxy", "stdio"]


class Conn:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.waiters: dict[int, asyncio.Future[dict[str, object]]] = {}
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            msg = msgspec.json.decode(line)
            fut = self.waiters.pop(msg.get("id"), None)
            if fut is not None:
                fut.set_result(msg)

    async def request(self, rid: int, method: str, params: dict[str, object]) -> dict[str, object]:
        fut: asyncio.Future[dict[str, object]] = asyncio.get_running_loop().create_future()
        self.waiters[rid] = fut
        assert self.proc.stdin is not None
        self.proc.stdin.write(msgspec.json.encode({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}))
        self.proc.stdin.write(b"\n")
        await self.proc.stdin.drain()
        return await fut

    async def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        await self.proc.wait()
        self.reader.cancel()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run_case(argv: list[str], env: dict[str, str], calls: int, concurrency: int) -> dict[str, float]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env, cwd=ROOT, limit=1 << 26
    )
    conn = Conn(proc)
    init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}
    await conn.request(0, "initialize", init)
    assert proc.stdin is not None
    proc.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
    await conn.request(1, "tools/list", {})
    rid = 10
    for _ in range(50):  # warm-up
        rid += 1
        await conn.request(rid, "tools/call", {"name": "echo", "arguments": {"text": "warm"}})
    lat = []
    for _ in range(calls):
        rid += 1
        t = time.perf_counter()
        await conn.request(rid, "tools/call", {"name": "echo", "arguments": {"text": "hello"}})
        lat.append((time.perf_counter() - t) * 1000)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await conn.request(i, "tools/call", {"name": "echo", "arguments": {"text": "hello"}})

    t = time.perf_counter()
    await asyncio.gather(*(one(100_000 + i) for i in range(calls)))
    rate = calls / (time.perf_counter() - t)
    rss = rss_mb(proc.pid)
    await conn.close()
    lat.sort()
    return {"p50": statistics.median(lat), "p99": lat[int(len(lat) * 0.99) - 1], "rate": rate, "rss": rss}


async def _wait_port(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_http_case(url: str, calls: int, concurrency: int) -> dict[str, float]:
    import httpx

    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": "echo",
    }
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def call(i: int) -> None:
            params = {"name": "echo", "arguments": {"text": "hello"}, "_meta": meta}
            body = msgspec.json.encode({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": params})
            resp = await client.post(url, content=body, headers=headers)
            if resp.status_code != 200 or b'"hello"' not in resp.content:
                raise RuntimeError(f"bad answer: {resp.status_code} {resp.text[:200]}")

        for i in range(30):
            await call(i)
        lat = []
        for i in range(calls):
            t = time.perf_counter()
            await call(1000 + i)
            lat.append((time.perf_counter() - t) * 1000)
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                await call(i)

        t = time.perf_counter()
        await asyncio.gather(*(one(100_000 + i) for i in range(calls)))
        rate = calls / (time.perf_counter() - t)
    lat.sort()
    return {"p50": statistics.median(lat), "p99": lat[int(len(lat) * 0.99) - 1], "rate": rate, "rss": float("nan")}


def _rotated(names: list[str], i: int) -> list[str]:
    """Round i starts at a different case, so no case always runs first (or right after the same neighbour)."""
    k = i % len(names)
    return names[k:] + names[:k]


def summarise(runs: dict[str, list[dict[str, float]]], direct: str) -> dict[str, dict[str, float]]:
    """Median over rounds; the ratio and added latency are taken per round against that round's direct run."""
    out = {}
    base = runs[direct]
    for name, rs in runs.items():
        out[name] = {
            "p50": statistics.median(r["p50"] for r in rs),
            "p99": statistics.median(r["p99"] for r in rs),
            "add50": statistics.median(r["p50"] - b["p50"] for r, b in zip(rs, base, strict=True)),
            "add99": statistics.median(r["p99"] - b["p99"] for r, b in zip(rs, base, strict=True)),
            "rate": statistics.median(r["rate"] for r in rs),
            "ratio": statistics.median(r["rate"] / b["rate"] for r, b in zip(rs, base, strict=True)),
            "rss": max(r["rss"] for r in rs),
        }
    return out


async def http_cases(
    env: dict[str, str], calls: int, concurrency: int, rounds: int
) -> dict[str, list[dict[str, float]]]:
    echo_port, off_port, up_port, stdio_port = _free_port(), _free_port(), _free_port(), _free_port()
    direct = f"http://127.0.0.1:{echo_port}/mcp"
    base = [*PROXY[:-1], "http"]
    off = ["--no-inspect", "--pinning", "off"]
    procs = [
        await asyncio.create_subprocess_exec(*ECHO, "--http", str(echo_port), env=env, cwd=ROOT),
        await asyncio.create_subprocess_exec(
            *base, "--port", str(off_port), *off, "--upstream", direct, env=env, cwd=ROOT
        ),
        await asyncio.create_subprocess_exec(*base, "--port", str(up_port), "--upstream", direct, env=env, cwd=ROOT),
        await asyncio.create_subprocess_exec(*base, "--port", str(stdio_port), "--", *ECHO, env=env, cwd=ROOT),
    ]
    cases = {
        "HTTP direct": (direct, None),
        "HTTP proxy -> HTTP, inspection off": (f"http://127.0.0.1:{off_port}/mcp", procs[1]),
        "HTTP proxy -> HTTP, inspect + audit": (f"http://127.0.0.1:{up_port}/mcp", procs[2]),
        "HTTP proxy -> stdio, inspect + audit": (f"http://127.0.0.1:{stdio_port}/mcp", procs[3]),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
    try:
        for port in (echo_port, off_port, up_port, stdio_port):
            await _wait_port(port)
        for i in range(rounds):
            for name in _rotated(list(cases), i):
                url, proc = cases[name]
                result = await run_http_case(url, calls, concurrency)
                result["rss"] = rss_mb(proc.pid) if proc is not None else float("nan")
                runs[name].append(result)
    finally:
        for proc in procs:
            proc.terminate()
            await proc.wait()
    return runs


def print_table(title: str, results: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}\n")
    cols = ("p50 ms", "p99 ms", "+p50", "+p99", "calls/s", "vs direct", "RSS MB")
    widths = (8, 8, 7, 7, 9, 9, 7)
    print(f"{'case':<38} " + " ".join(f"{c:>{w}}" for c, w in zip(cols, widths, strict=True)))
    for name, r in results.items():
        rss = "" if r["rss"] != r["rss"] else f"{r['rss']:.0f}"  # NaN: not a proxy
        print(
            f"{name:<38} {r['p50']:8.3f} {r['p99']:8.3f} {r['add50']:+7.3f} {r['add99']:+7.3f} "
            f"{r['rate']:9.0f} {r['ratio']:9.0%} {rss:>7}"
        )


async def startup(env: dict[str, str], options: list[str], runs: int = 5) -> float:
    """Spawn to first frame echoed back through `cat`: the proxy's own start-up, upstream cost ~0."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            *PROXY,
            *options,
            "--",
            "cat",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/ping"}\n')
        await proc.stdin.drain()
        await proc.stdout.readline()
        times.append(time.perf_counter() - t)
        proc.stdin.close()
        await proc.wait()
    return statistics.median(times)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--http-calls", type=int, default=500)
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per case (median reported)")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="cisora-bench-")
    env = {**os.environ, "CISORA_MESH_HOME": home}
    cases = {
        "direct": ECHO,
        "proxy, inspection off": [*PROXY, "--no-inspect", "--pinning", "off", "--", *ECHO],
        "proxy, inspection + pins, no audit": [*PROXY, "--no-audit", "--", *ECHO],
        "proxy, inspection + pins + audit": [*PROXY, "--", *ECHO],
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
    for i in range(args.rounds):
        for name in _rotated(list(cases), i):
            result = await run_case(cases[name], env, args.calls, args.concurrency)
            if name == "direct":
                result["rss"] = float("nan")
            runs[name].append(result)
    title = (
        f"stdio, echo tool, {args.calls} calls; throughput with {args.concurrency} in flight; "
        f"median of {args.rounds} rounds"
    )
    print_table(title, summarise(runs, "direct"))
    if not args.no_http:
        http = await http_cases(env, args.http_calls, args.concurrency, args.rounds)
        title = (
            f"streamable HTTP (2026-07-28 POSTs), {args.http_calls} calls; {args.concurrency} in flight; "
            f"median of {args.rounds} rounds"
        )
        print_table(title, summarise(http, "HTTP direct"))
    bare = await startup(env, ["--no-audit", "--pinning", "off"])
    full = await startup(env, [])
    print(
        f"\nproxy start-up (spawn to first forwarded frame, median of 5): {bare:.3f} s bare, "
        f"{full:.3f} s with inspection + pins + durable audit"
    )


if __name__ == "__main__":
    asyncio.run(main())
