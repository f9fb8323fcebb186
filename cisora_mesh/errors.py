"""Errors raised by Cisora Mesh.

The tree (each class is a useful place to catch)::

    CisoraError                      root of everything the core raises on purpose
    ├── ConfigError (ValueError)     a config file, option or per-tenant setting is invalid
    │   └── PatternError             a regex was rejected when it was saved (syntax, size, empty match)
    ├── InputError (ValueError)      an input record or document could not be read (bad JSON, wrong fields)
    └── StageError                   a detection stage failed while running (wrapped, then audited as fail-open
                                     or turned into a block when the control is configured fail-closed)

`capability` and `vault` are standalone packages with their own roots (`CapabilityError`, `VaultError`).
Messages never contain payload text or secret values: they name fields, lines and patterns.
"""

from __future__ import annotations


class CisoraError(Exception):
    """Root of the errors Cisora Mesh raises on purpose."""


class ConfigError(CisoraError, ValueError):
    """Invalid configuration (file, option or per-tenant setting)."""


class PatternError(ConfigError):
    """A regular expression was rejected at save time."""


class InputError(CisoraError, ValueError):
    """An input record could not be read."""


class StageError(CisoraError):
    """A detection stage raised while running."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"stage {stage!r} failed: {type(cause).__name__}")
        self.stage = stage
        self.cause = cause
