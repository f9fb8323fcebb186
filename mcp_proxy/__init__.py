"""MCP proxy: fronts MCP servers (stdio, streamable HTTP) and runs every message through `Mesh.evaluate`.

Not built yet: tracked by the MCP proxy issue. The package exists so the layout and import rules are fixed.
"""
