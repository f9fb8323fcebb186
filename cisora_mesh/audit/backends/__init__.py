"""Storage backends for the audit log (SQLite by default, PostgreSQL for many replicas)."""
