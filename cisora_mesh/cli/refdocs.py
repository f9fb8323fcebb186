"""`cisora-mesh refdocs`: manage a tenant's reference documents for embedding DLP.

    cisora-mesh refdocs add FILE... [--name NAME] [--replace]   embed and store (the text itself is not stored)
    cisora-mesh refdocs list                                     name, id, size, windows, SHA-256 prefix
    cisora-mesh refdocs remove NAME|ID...

Documents live in `refdocs.db` in the data directory, per tenant (`--tenant`), or in the store named by
`--store URL` (`sqlite:///abs/path.db`, or `postgresql://...[?schema=NAME]` for a deployment whose tenant data
lives in PostgreSQL). Outputs and tool results whose meaning is close to a stored document (cosine similarity of
MiniLM embeddings at or above the configured threshold) get a `confidential` finding when the async stages run
(`scan --stages full`, or in the background).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cisora_mesh.cli._common import CliError, add_common_options, load

if TYPE_CHECKING:
    from cisora_mesh.ml.refdocs import RefDocs


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "refdocs",
        help="manage reference documents for embedding DLP (paraphrased leaks)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="refdocs_command", metavar="<action>", required=True)
    add = actions.add_parser("add", help="embed and store reference documents")
    add.add_argument("files", nargs="+", type=Path, metavar="FILE")
    add.add_argument("--name", help="name to store it under (one FILE only; default: the file name)")
    add.add_argument("--replace", action="store_true", help="replace a document of the same name")
    _add_options(add)
    add.set_defaults(handler=run_add)
    listing = actions.add_parser("list", help="list the tenant's reference documents")
    _add_options(listing)
    listing.set_defaults(handler=run_list)
    remove = actions.add_parser("remove", help="remove reference documents by name or id")
    remove.add_argument("names", nargs="+", metavar="NAME|ID")
    _add_options(remove)
    remove.set_defaults(handler=run_remove)


def _add_options(parser: argparse.ArgumentParser) -> None:
    add_common_options(parser)
    parser.add_argument(
        "--store",
        metavar="URL",
        help="reference-document store: sqlite:///path.db or postgresql://... (default: refdocs.db in the data dir)",
    )


def _store(args: argparse.Namespace) -> RefDocs:
    _, data_dir = load(args)
    # numpy/sqlite (and psycopg for PostgreSQL) only when the command runs
    from cisora_mesh.ml.refdocs import RefDocStoreError, open_refdocs

    try:
        return open_refdocs(args.store, data_dir=data_dir)
    except RefDocStoreError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot open {args.store or data_dir}: {exc}") from None


def run_add(args: argparse.Namespace) -> int:
    if args.name and len(args.files) > 1:
        raise CliError("--name needs exactly one FILE")
    texts = []
    for path in args.files:
        try:
            texts.append((args.name or path.name, path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise CliError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError):
            raise CliError(f"{path}: cannot read as UTF-8 text") from None
    from cisora_mesh.ml.stage import MlUnavailableError, ml_available

    if not ml_available():
        raise CliError(str(MlUnavailableError("embedding DLP needs the [ml] extra: pip install 'cisora-mesh[ml]'")))
    store = _store(args)
    try:
        for name, text in texts:
            try:
                doc = store.add(args.tenant, name, text, replace=args.replace)
            except ValueError as exc:
                raise CliError(f"{name}: {exc}") from None
            print(f"added {doc.name} (id {doc.id}, {doc.chars} chars, {doc.chunks} windows)")
    finally:
        store.close()
    return 0


def run_list(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        docs = store.list(args.tenant)
    finally:
        store.close()
    if not docs:
        print(f"no reference documents for tenant {args.tenant}")
        return 0
    print(f"{'id':>5}  {'name':<40} {'chars':>8} {'windows':>8}  {'sha256':<12}  added")
    for d in docs:
        added = time.strftime("%Y-%m-%d %H:%M", time.gmtime(d.created))
        print(f"{d.id:>5}  {d.name[:40]:<40} {d.chars:>8} {d.chunks:>8}  {d.sha256[:12]:<12}  {added}")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    store = _store(args)
    missing = []
    try:
        for name in args.names:
            if store.remove(args.tenant, name):
                print(f"removed {name}")
            else:
                missing.append(name)
    finally:
        store.close()
    if missing:
        raise CliError(f"no reference document {', '.join(missing)} for tenant {args.tenant}", exit_code=1)
    return 0
