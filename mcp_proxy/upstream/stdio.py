"""A spawned MCP server speaking newline-delimited JSON-RPC on its stdin/stdout, restarted with back-off.

The child inherits the proxy's environment plus the configured `env` (the proxy is a drop-in wrapper in
`mcp.json`, where the client already chose the environment) and its stderr goes to ours, so server logs stay
visible to whoever runs the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final

import anyio

from mcp_proxy.errors import UpstreamError
from mcp_proxy.framing import DEFAULT_MAX_FRAME, frames
from mcp_proxy.upstream import FrameHandler

logger = logging.getLogger("mcp_proxy.upstream")

_FIRST_BACKOFF = 0.1


class StdioUpstream:
    transport: Final = "pipe"  # network.transport on the spans of its messages

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        backoff_max: float = 5.0,
    ) -> None:
        if not command:
            raise UpstreamError("empty upstream command")
        self.name = name
        self.command = list(command)
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.max_frame = max_frame
        self.backoff_max = backoff_max
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | None = None
        # fast_acquire: an uncontended write (the usual case) does not yield to the loop first, saving one loop
        # iteration per frame; the lock only orders frames when a drain is waiting on a full pipe.
        self._write_lock = anyio.Lock(fast_acquire=True)

    @property
    def ready(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def spawn(self) -> asyncio.subprocess.Process:
        try:
            return await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=self.env,
                cwd=self.cwd,
            )
        except OSError as exc:
            raise UpstreamError(
                f"cannot start upstream {self.name!r} ({self.command[0]}): {exc.strerror or exc}"
            ) from None

    async def send(self, frame: bytes) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None or proc.stdin is None:
            raise UpstreamError(f"upstream {self.name!r} is not running")
        async with self._write_lock:
            try:
                proc.stdin.write(frame + b"\n")
                await proc.stdin.drain()
            except (ConnectionError, RuntimeError) as exc:
                raise UpstreamError(f"upstream {self.name!r} closed its input ({type(exc).__name__})") from None

    async def run(
        self,
        on_frame: FrameHandler,
        on_up: Callable[[bool], Awaitable[None]],
        on_down: Callable[[str], Awaitable[None]],
        *,
        first: asyncio.subprocess.Process | None = None,
    ) -> None:
        """Serve the child until cancelled; after it exits, report it and start a new one with back-off."""
        backoff = _FIRST_BACKOFF
        proc = first
        try:
            while True:
                if proc is None:
                    try:
                        proc = await self.spawn()
                    except UpstreamError as exc:
                        logger.error("%s; retrying in %.1fs", exc, backoff)
                        await on_down(str(exc))  # requests fail fast instead of waiting for a start-up
                        await anyio.sleep(backoff)
                        backoff = min(backoff * 2, self.backoff_max)
                        continue
                self._proc = proc
                started = anyio.current_time()
                await on_up(self.restarts > 0)
                assert proc.stdout is not None
                async for frame in frames(proc.stdout, self.max_frame):
                    await on_frame(frame)
                code = await proc.wait()
                reason = f"upstream {self.name!r} exited with code {code}"
                logger.warning("%s; restarting in %.1fs", reason, backoff)
                await on_down(reason)
                self._proc = None
                proc = None
                if anyio.current_time() - started > 30:
                    backoff = _FIRST_BACKOFF  # it ran fine for a while: this is not a crash loop
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)
                self.restarts += 1
        finally:
            if self._proc is not None:
                with anyio.CancelScope(shield=True):
                    await stop_process(self._proc)
                self._proc = None


async def stop_process(proc: asyncio.subprocess.Process, grace: float = 2.0) -> None:
    """Close the child's stdin (the MCP way to ask a stdio server to exit), then escalate."""
    if proc.returncode is not None:
        return
    if proc.stdin is not None:
        with contextlib.suppress(OSError, RuntimeError):
            proc.stdin.close()
    with anyio.move_on_after(grace):
        await proc.wait()
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    with anyio.move_on_after(grace):
        await proc.wait()
        return
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()
