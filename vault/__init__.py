"""Vault: envelope-encrypted secrets, leases bound to capabilities, secret handles substituted by the proxy.

Not built yet: tracked by its own issue. Standalone: imports nothing from the other Cisora packages.
"""
