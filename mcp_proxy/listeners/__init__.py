"""Downstream fronts: stdio (one client) and streamable HTTP (many sessions)."""
