"""Errors raised by the MCP proxy.

The tree::

    CisoraError (cisora_mesh.errors)
    └── ProxyError                    root of everything the proxy raises on purpose
        ├── ProxyConfigError (ValueError)  the `[proxy]` section or a command line is invalid
        ├── UpstreamError                  an upstream server could not be started or went away
        └── PinStoreError                  the pin database could not be read or written

Inside MCP these never cross the wire as exceptions: the proxy answers with JSON-RPC error objects whose
`data.type` is a stable `urn:cisora:problem:<slug>` (see `mcp_proxy.jsonrpc`).
"""

from __future__ import annotations

from cisora_mesh.errors import CisoraError


class ProxyError(CisoraError):
    """Root of the errors the MCP proxy raises on purpose."""


class ProxyConfigError(ProxyError, ValueError):
    """Invalid proxy configuration."""


class UpstreamError(ProxyError):
    """An upstream MCP server could not be reached, started, or exited."""


class PinStoreError(ProxyError):
    """The tool-pin database failed."""
