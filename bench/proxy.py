"""Benchmark the MCP proxy: direct vs proxied over stdio, inspection off and on (with durable audit).

    python bench/proxy.py [--calls 2000] [--concurrency 16]

Drives examples/mcp_echo_server.py with raw JSON-RPC lines (no SDK client, so the client's own cost does not
hide the proxy's), in the 2025-11-25 handshake era. Reports echo-tool latency p50/p99 (sequential calls), calls/s
(`--concurrency` calls in flight), the proxy's RSS after the run, and the proxy's start-up time (spawn to first
forwarded frame, with `cat` as a zero-cost upstream). HTTP is not measured here.
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


async def startup(env: dict[str, str], runs: int = 5) -> float:
    """Spawn to first frame echoed back through `cat`: the proxy's own start-up, upstream cost ~0."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            *PROXY,
            "--no-audit",
            "--pinning",
            "off",
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
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="cisora-bench-")
    env = {**os.environ, "CISORA_MESH_HOME": home}
    cases = {
        "direct": ECHO,
        "proxy, inspection off": [*PROXY, "--no-inspect", "--pinning", "off", "--", *ECHO],
        "proxy, inspection + pins, no audit": [*PROXY, "--no-audit", "--", *ECHO],
        "proxy, inspection + pins + audit": [*PROXY, "--", *ECHO],
    }
    results = {}
    for name, argv in cases.items():
        results[name] = await run_case(argv, env, args.calls, args.concurrency)
    direct = results["direct"]
    print(f"\nstdio, echo tool, {args.calls} calls; throughput with {args.concurrency} in flight\n")
    cols = ("p50 ms", "p99 ms", "+p50", "+p99", "calls/s", "vs direct", "RSS MB")
    widths = (8, 8, 7, 7, 9, 9, 7)
    print(f"{'case':<34} " + " ".join(f"{c:>{w}}" for c, w in zip(cols, widths, strict=True)))
    for name, r in results.items():
        added50 = r["p50"] - direct["p50"]
        added99 = r["p99"] - direct["p99"]
        rss = "" if name == "direct" else f"{r['rss']:.0f}"
        print(
            f"{name:<34} {r['p50']:8.3f} {r['p99']:8.3f} {added50:+7.3f} {added99:+7.3f} "
            f"{r['rate']:9.0f} {r['rate'] / direct['rate']:9.0%} {rss:>7}"
        )
    print(f"\nproxy start-up (spawn to first forwarded frame, median of 5): {await startup(env):.3f} s")


if __name__ == "__main__":
    asyncio.run(main())
