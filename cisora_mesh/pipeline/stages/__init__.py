"""Detection stages, one per module."""
