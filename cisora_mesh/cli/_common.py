"""Helpers shared by the CLI subcommands: errors, config and data-directory resolution, the audit store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cisora_mesh.config import MeshConfig, default_data_dir, load_config
from cisora_mesh.errors import CisoraError

if TYPE_CHECKING:
    from cisora_mesh.mesh import AsyncStage, AuditSink


class CliError(Exception):
    """A one-line error for the user; `exit_code` 2 is a usage/input error, 1 a failed check."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def error_line(message: str) -> None:
    print(f"cisora-mesh: error: {message}", file=sys.stderr)


def display_url(url: str) -> str:
    """`url` safe to print: a password in the user-info part is replaced by `***`."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help="mesh.toml to use (default: built-in defaults)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="where keys and the audit log live (default: $CISORA_MESH_HOME or ~/.local/share/cisora-mesh)",
    )
    parser.add_argument("--tenant", default="default", help="tenant whose settings apply (default: %(default)s)")


def load(args: argparse.Namespace) -> tuple[MeshConfig, Path]:
    """The validated config and the data directory, or a `CliError`."""
    try:
        config = load_config(args.config)
    except CisoraError as exc:
        raise CliError(str(exc)) from None
    data_dir = args.data_dir or config.data_dir or default_data_dir()
    return config, Path(data_dir).expanduser()


def open_audit(config: MeshConfig, data_dir: Path, store_url: str | None = None) -> AuditSink:
    """Open the audit store named by `store_url`, the config, or the default SQLite file in `data_dir`."""
    from cisora_mesh.audit import open_store  # imported here: the store pulls in sqlite/psycopg/crypto

    url = store_url or config.audit.store
    try:
        return open_store(
            url,
            data_dir=data_dir,
            checkpoint_every=config.audit.checkpoint_every,
            background_linger=config.audit.background_linger_ms / 1000,
        )
    except (CisoraError, OSError) as exc:
        raise CliError(f"cannot open audit store: {exc}") from None


def async_stages(config: MeshConfig, data_dir: Path) -> list[AsyncStage]:
    """The async detectors the config enables (ML classifier, embedding DLP), or a `CliError` without `[ml]`."""
    ml = config.detection.ml
    if not ml.enabled:
        return []
    from cisora_mesh.events import Verdict
    from cisora_mesh.ml.refdocs import RefDocStoreError
    from cisora_mesh.ml.stage import MlUnavailableError, full_stages  # cheap: nothing loads until first use

    dlp = config.detection.embedding_dlp
    try:
        return list(
            full_stages(
                data_dir if dlp.enabled else None,
                confidence=ml.confidence,
                review_at=ml.review_at,
                dlp_threshold=dlp.threshold,
                dlp_action=Verdict(dlp.action),
                dlp_store=dlp.store,
            )
        )
    except (MlUnavailableError, RefDocStoreError) as exc:
        raise CliError(str(exc)) from None


def close_stages(stages: tuple[object, ...] | list[object]) -> None:
    """Release what async stages hold (the reference-document database)."""
    for stage in stages:
        close = getattr(stage, "close", None)
        if close is not None:
            close()
