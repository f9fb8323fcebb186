"""Composition root: builds the mesh, audit store, pin store and transports from configuration and runs them.

Only this module (and `cli`) reads the data directory and decides which stores to open; everything below it
takes objects in its constructor.
"""

from __future__ import annotations

import functools
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import anyio

from cisora_mesh.auth.capability import CapabilityGate
from cisora_mesh.config import MeshConfig
from cisora_mesh.mesh import AuditSink, Mesh
from mcp_proxy.capability import build_gate
from mcp_proxy.config import ProxySettings
from mcp_proxy.forward import PinGuard, Session
from mcp_proxy.inspect import Inspector
from mcp_proxy.pinning import PinStore
from mcp_proxy.policy import ArgumentPolicy, ArgumentRules
from mcp_proxy.telemetry import MessageSpans, ProxyTelemetry, Transport
from mcp_proxy.upstream import Upstream

logger = logging.getLogger("mcp_proxy")


@dataclass
class Runtime:
    """Everything a proxy process shares between its sessions."""

    settings: ProxySettings
    tenant: str
    mesh: Mesh | None
    pins: PinStore | None
    audit: AuditSink | None
    argument_policy: ArgumentPolicy | None = None
    capability: CapabilityGate | None = None
    # Per-message spans; the default follows the global OpenTelemetry provider (no-ops until one is installed).
    telemetry: ProxyTelemetry = field(default_factory=ProxyTelemetry)

    def spans(self, front: Transport, upstream: Upstream, session_id: str | None = None) -> MessageSpans:
        kind: Transport = "tcp" if getattr(upstream, "transport", "pipe") == "tcp" else "pipe"
        return self.telemetry.session(front=front, upstream=kind, session_id=session_id)

    def inspector(self, session: str | None = None) -> Inspector | None:
        if self.mesh is None:
            return None
        return Inspector(
            self.mesh,
            tenant=self.tenant,
            session=session,
            argument_policy=self.argument_policy,
            capability=self.capability,
        )

    def pin_guard(self, modes: dict[str, Literal["tofu", "approve", "off"]]) -> PinGuard | None:
        if self.pins is None:
            return None
        return PinGuard(self.pins, self.tenant, modes)

    def close(self) -> None:
        if self.mesh is not None:
            self.mesh.close()
        if self.audit is not None:
            self.audit.close()
        if self.pins is not None:
            self.pins.close()


def build_runtime(
    mesh_config: MeshConfig,
    settings: ProxySettings,
    data_dir: Path,
    *,
    tenant: str,
    audit: AuditSink | None,
) -> Runtime:
    mesh = Mesh(mesh_config, audit=audit) if settings.inspect else None
    any_pinning = settings.pinning != "off" or any(s.pinning not in (None, "off") for s in settings.servers)
    pins = PinStore.in_data_dir(data_dir) if any_pinning else None
    rules = ArgumentRules(settings.argument_rules)
    return Runtime(
        settings=settings,
        tenant=tenant,
        mesh=mesh,
        pins=pins,
        audit=audit,
        argument_policy=rules if rules else None,
        capability=build_gate(settings.capability, audit=audit, tenant=tenant),
    )


def configure_logging(level: int = logging.WARNING) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("cisora-mesh proxy: %(levelname)s %(message)s"))
    root = logging.getLogger("mcp_proxy")
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


async def _until_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


async def serve_stdio(runtime: Runtime, command: Sequence[str], *, server: str) -> None:
    """Serve one client on stdin/stdout, forwarding to a spawned stdio server, until the client hangs up."""
    from mcp_proxy.listeners.stdio import StdioDownstream
    from mcp_proxy.upstream.stdio import StdioUpstream, stop_process

    settings = runtime.settings
    upstream = StdioUpstream(
        server, command, max_frame=settings.max_frame_bytes, backoff_max=settings.restart_backoff_max
    )
    first = await upstream.spawn()  # fail fast (exit 2) when the command cannot start at all
    try:
        downstream = await StdioDownstream.open(settings.max_frame_bytes)
        session = Session(
            downstream,
            upstream,
            inspector=runtime.inspector(),
            pins=runtime.pin_guard({server: settings.pinning}),
            spans=runtime.spans("pipe", upstream),
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(_until_signal, tg.cancel_scope)
            await session.run(downstream.frames(), upstream_task=functools.partial(upstream.run, first=first))
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await stop_process(first)


def build_upstreams(settings: ProxySettings) -> list[Upstream]:
    """One upstream per `[[proxy.servers]]` entry."""
    from mcp_proxy.upstream.stdio import StdioUpstream
    from mcp_proxy.upstream.streamable_http import HttpUpstream

    upstreams: list[Upstream] = []
    for server in settings.servers:
        if server.command is not None:
            upstreams.append(
                StdioUpstream(
                    server.name,
                    server.command,
                    env=server.env,
                    cwd=server.cwd,
                    max_frame=settings.max_frame_bytes,
                    backoff_max=settings.restart_backoff_max,
                )
            )
        else:
            assert server.url is not None
            upstreams.append(
                HttpUpstream(
                    server.name,
                    server.url,
                    max_frame=settings.max_frame_bytes,
                    backoff_max=settings.restart_backoff_max,
                )
            )
    return upstreams


def pin_modes(settings: ProxySettings) -> dict[str, Literal["tofu", "approve", "off"]]:
    return {s.name: s.pinning or settings.pinning for s in settings.servers}


async def serve_stdio_multi(runtime: Runtime) -> None:
    """Serve one stdio client in front of every configured server (names prefixed `server__name`)."""
    from mcp_proxy.listeners.stdio import StdioDownstream
    from mcp_proxy.router import Router

    settings = runtime.settings
    downstream = await StdioDownstream.open(settings.max_frame_bytes)
    router = Router(
        downstream,
        build_upstreams(settings),
        inspector=runtime.inspector(),
        pins=runtime.pin_guard(pin_modes(settings)),
        spans=lambda upstream: runtime.spans("pipe", upstream),
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(_until_signal, tg.cancel_scope)
        await router.run(downstream.frames())
        tg.cancel_scope.cancel()
