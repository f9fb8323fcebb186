"""MCP proxy: fronts MCP servers (stdio, streamable HTTP) and runs every message through `Mesh.evaluate`.

Entry points are the `cisora-mesh proxy stdio|http` and `cisora-mesh pins` commands (`mcp_proxy.cli`); the
composition root is `mcp_proxy.app`; the message pump is `mcp_proxy.forward`. See docs/mcp-proxy.md.
"""
