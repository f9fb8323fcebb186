"""`cisora-mesh init`: write a commented default `mesh.toml` and create the data directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from cisora_mesh.cli._common import CliError
from cisora_mesh.config import default_data_dir, load_config

TEMPLATE = """\
# Cisora Mesh configuration. Every key is optional; the values shown are the built-in defaults.
# Validate a change with: cisora-mesh scan --config {config_name} --no-audit - <<< "hello"

# Where keys and the audit log live.
data_dir = "{data_dir}"

[detection]
# What happens when a detector crashes or times out: "open" lets traffic through (the failure is audited),
# "closed" blocks it. Authentication checks always fail closed, whatever this says.
fail_mode = "open"

[detection.injection]
enabled = true
# The injection score is a calibrated probability (0..1). At or above block_threshold the message is blocked,
# at or above review_threshold it is held for review.
block_threshold = 0.80
review_threshold = 0.50
# Invisible Unicode tag characters (ASCII smuggling), and hidden characters in tool descriptions:
# "allow" (record only), "review" or "block".
hidden_content_action = "review"

[detection.ml]
# The async classifier (needs the [ml] extra). Used by `scan --stages full`, `eval --stages full` and long-running
# paths; at or above confidence it blocks (retroactively on streams), at or above review_at it asks for review.
enabled = true
confidence = 0.85
review_at = 0.70

[detection.embedding_dlp]
# Paraphrased leaks of reference documents registered with `cisora-mesh refdocs add` (cosine similarity).
enabled = true
threshold = 0.65
action = "block"

[detection.dlp]
enabled = true
# alert: record and let through; redact: replace matches with [REDACTED:TYPE]; block: refuse the message.
action = "redact"
categories = ["secret", "pii", "custom"]
# Built-in rules to switch off, by rule id (see `cisora-mesh scan` findings for ids).
disabled_rules = []

# Up to 20 custom patterns per tenant, RE2 syntax (linear time: no backreferences or lookaround).
# [[detection.dlp.custom_patterns]]
# name = "employee_id"
# regex = "EMP-[0-9]{{6}}"
# category = "pii"          # secret | pii | custom
# severity = "medium"       # low | medium | high | critical

[audit]
# Default: SQLite at <data_dir>/audit.db. For many replicas: "postgresql://user@host/db".
# store = "sqlite:///path/to/audit.db"
checkpoint_every = 1000
# "preventive": block/review/redact decisions are durable before they are enforced, allow decisions commit in
# the background (they change nothing on the wire); "all": every decision waits for its commit.
durable_before = "preventive"
# Background (allow) records wait up to this long to share one commit (and one fsync) with the records that
# follow; 0 commits each at once. Preventive decisions never wait.
background_linger_ms = 5

# Per-tenant overrides; unset sections inherit [detection].
# [[tenants]]
# name = "acme"
# [tenants.dlp]
# action = "block"
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "init", help="write a commented mesh.toml and create the data directory", description=__doc__
    )
    parser.add_argument(
        "--config", type=Path, default=Path("mesh.toml"), metavar="FILE", help="file to write (default: %(default)s)"
    )
    parser.add_argument("--data-dir", type=Path, metavar="DIR", help="data directory (default: the per-user one)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing config file")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    path: Path = args.config
    if path.exists() and not args.force:
        raise CliError(f"{path} already exists (use --force to overwrite)")
    data_dir = (args.data_dir or default_data_dir()).expanduser().resolve()
    text = TEMPLATE.format(data_dir=str(data_dir).replace("\\", "\\\\"), config_name=path.name)
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None
    load_config(path)  # the template must always be a valid config
    print(f"wrote {path}\ndata directory: {data_dir}")
    return 0
