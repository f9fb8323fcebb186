"""Faults over real pipes: bad frames, reused ids, crashes, garbage, disconnects, load."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import msgspec
from proxy_support import RawProxy


async def test_bad_frames_get_errors_and_the_proxy_keeps_serving(tmp_path: Path) -> None:
    proxy = await RawProxy.start(tmp_path / "home", "--no-audit")
    try:
        await proxy.initialize()
        await proxy.send_raw(b'{"jsonrpc": "2.0", "id": 1, "method": ')
        assert (await proxy.next())["error"]["code"] == -32700
        await proxy.send_raw(b"[1, 2, 3]")
        assert (await proxy.next())["error"]["code"] == -32600
        await proxy.send_raw(b'{"jsonrpc": "1.0", "id": 5, "method": "ping"}')
        reply = await proxy.next()
        assert reply["error"]["code"] == -32600 and reply["id"] == 5
        # Oversized: 9 MiB is over the default 8 MiB limit; the id is still found in the frame's head.
        await proxy.send_raw(
            b'{"jsonrpc":"2.0","id":"huge","method":"tools/call","params":{"x":"' + b"a" * (9 << 20) + b'"}}'
        )
        reply = await proxy.response("huge")
        assert reply["error"]["code"] == -32021
        # Unknown methods are forwarded; the server's own -32601 comes back.
        await proxy.send({"id": 6, "method": "no/such/method", "params": {}})
        assert (await proxy.response(6))["error"]["code"] == -32601
        # Still serving.
        await proxy.call(7, "echo", {"text": "alive"})
        assert (await proxy.response(7))["result"]["content"][0]["text"] == "alive"
    finally:
        assert await proxy.close() == 0


async def test_reused_id_while_in_flight_is_refused(tmp_path: Path) -> None:
    proxy = await RawProxy.start(tmp_path / "home", "--no-audit")
    try:
        await proxy.initialize()
        await proxy.call(1, "sleep", {"seconds": 0.5})
        await proxy.call(1, "echo", {"text": "dup"})
        first = await proxy.next()
        assert first["id"] == 1 and first["error"]["code"] == -32600 and "already in use" in first["error"]["message"]
        second = await proxy.next()
        assert second["result"]["content"][0]["text"] == "slept 0.5"
        await proxy.call(1, "echo", {"text": "reuse after completion is fine"})
        assert "result" in await proxy.response(1)
    finally:
        await proxy.close()


async def test_upstream_crash_garbage_and_restart(tmp_path: Path) -> None:
    proxy = await RawProxy.start(tmp_path / "home", "--no-audit")
    try:
        await proxy.initialize()
        await proxy.call("g", "garbage", {})
        assert (await proxy.response("g"))["result"]["content"][0]["text"] == "after garbage"
        await proxy.call("slow", "sleep", {"seconds": 5})
        await proxy.call("c", "crash", {})
        lost = [await proxy.next(), await proxy.next()]
        assert {m["id"] for m in lost} == {"slow", "c"}
        assert all(m["error"]["code"] == -32020 for m in lost)
        # The upstream is restarted with back-off and the handshake replayed; the session goes on.
        for attempt in range(60):
            await proxy.call(f"e{attempt}", "echo", {"text": "back"})
            reply = await proxy.response(f"e{attempt}", wait=30)
            if "result" in reply:
                assert reply["result"]["content"][0]["text"] == "back"
                break
            assert reply["error"]["code"] == -32020
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("upstream never came back")
    finally:
        assert await proxy.close() == 0


async def test_client_disconnect_mid_call_stops_cleanly(tmp_path: Path) -> None:
    proxy = await RawProxy.start(tmp_path / "home", "--no-audit")
    await proxy.initialize()
    await proxy.call(1, "sleep", {"seconds": 30})
    await asyncio.sleep(0.2)
    code = await proxy.close()  # stdin closed with a call in flight
    assert code == 0
    assert proxy.proc.stderr is not None
    assert b"Traceback" not in await proxy.proc.stderr.read()


async def test_sigterm_exits_cleanly(tmp_path: Path) -> None:
    proxy = await RawProxy.start(tmp_path / "home", "--no-audit")
    await proxy.initialize()
    os.kill(proxy.proc.pid, signal.SIGTERM)
    assert await asyncio.wait_for(proxy.proc.wait(), 15) == 0


async def test_64_concurrent_calls_and_1mb_results(tmp_path: Path) -> None:
    proxy = await RawProxy.start(tmp_path / "home")  # inspection and audit on
    try:
        await proxy.initialize()
        for i in range(64):
            await proxy.call(i, "echo", {"text": f"call {i}"})
        await proxy.call("big", "big", {"size": 1 << 20})
        for i in range(64):
            assert (await proxy.response(i, wait=60))["result"]["content"][0]["text"] == f"call {i}"
        big = await proxy.response("big", wait=60)
        assert len(big["result"]["content"][0]["text"]) == 1 << 20
        assert len(msgspec.json.encode(big)) > 1 << 20
    finally:
        await proxy.close()
