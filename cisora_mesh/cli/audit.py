"""`cisora-mesh audit`: verify, prove, checkpoint, export and inspect the audit log.

Exit codes: 0 intact / valid; 1 something did not verify (tampered log, bad proof, corrupted checkpoint, wrong
key); 2 usage errors (bad flags, unreadable files, missing store). Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from cisora_mesh.cli._common import CliError, display_url, load

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from cisora_mesh.audit import AuditStore

Handler = Callable[[argparse.Namespace], int]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = subparsers.add_parser(
        "audit",
        help="verify and inspect the tamper-evident audit log",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = audit.add_subparsers(dest="audit_command", metavar="<audit command>")
    audit.set_defaults(handler=_usage(audit))

    def sub(name: str, help_text: str, handler: Handler, *, store: bool = True) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_text, description=help_text)
        if store:
            parser.add_argument(
                "--store", metavar="URL", help="sqlite:///path.db or postgresql://... (default: config)"
            )
        parser.add_argument("--data-dir", type=Path, metavar="DIR", help="where keys and the default log live")
        parser.add_argument("--config", type=Path, metavar="FILE", help="mesh.toml to use")
        parser.set_defaults(handler=handler)
        return parser

    p = sub("verify", "recompute the whole log and check every checkpoint; exit 1 if anything is wrong", _verify)
    p.add_argument("--public-key", type=Path, metavar="FILE", help="PEM public key(s) to trust (default: data dir)")
    p.add_argument("--checkpoint", type=Path, metavar="FILE", help="a checkpoint you kept earlier: must still match")
    p.add_argument("--export", type=Path, metavar="FILE", help="verify an 'audit export' file instead of a store")

    p = sub("prove", "print an inclusion proof for one entry, or check one offline with --check", _prove)
    p.add_argument("--index", type=int, metavar="N", help="log index of the entry")
    p.add_argument("--since", type=Path, metavar="FILE", help="prove the log extends this kept checkpoint")
    p.add_argument("--check", type=Path, metavar="FILE", help="verify a proof file produced by 'audit prove'")
    p.add_argument("--public-key", type=Path, metavar="FILE", help="PEM public key(s) to trust when checking")

    p = sub("checkpoint", "sign a checkpoint of the current log now, or check a checkpoint file", _checkpoint)
    p.add_argument("--check", type=Path, metavar="FILE", help="verify a checkpoint file (needs --public-key)")
    p.add_argument("--public-key", type=Path, metavar="FILE", help="PEM public key(s) to trust when checking")

    p = sub("export", "write every entry and checkpoint as JSON lines", _export)
    p.add_argument("--out", type=Path, metavar="FILE", help="output file (default: stdout)")

    p = sub("tail", "print the last entries as JSON lines", _tail)
    p.add_argument("-n", type=int, default=10, metavar="N", help="how many (default: %(default)s)")

    p = sub("public-key", "print the checkpoint public key (PEM) for auditors", _public_key, store=False)
    p.add_argument("--all", action="store_true", help="every key that ever signed (after rotations)")


def _usage(parser: argparse.ArgumentParser) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return handler


# --- helpers ---------------------------------------------------------------------------------------------------


def _data_dir(args: argparse.Namespace) -> tuple[Path, str | None, int]:
    config, data_dir = load(args)
    url = getattr(args, "store", None) or config.audit.store
    return data_dir, url, config.audit.checkpoint_every


def _open(args: argparse.Namespace, *, create: bool = False) -> AuditStore:
    from cisora_mesh.audit import AuditError, open_store

    data_dir, url, every = _data_dir(args)
    try:
        return open_store(url, data_dir=data_dir, checkpoint_every=every, create=create)
    except AuditError as exc:
        where = display_url(url) if url else str(data_dir / "audit.db")
        raise CliError(f"cannot open audit store {where}: {exc}") from None


def _keys(path: Path | None, store: AuditStore | None = None) -> Mapping[str, Ed25519PublicKey]:
    from cisora_mesh.audit import AuditKeyError
    from cisora_mesh.audit.keys import load_public_key_file

    if path is None:
        if store is None:
            raise CliError("--public-key is required to check offline")
        return store.public_keys()
    try:
        return load_public_key_file(path)
    except AuditKeyError as exc:
        raise CliError(str(exc)) from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    except UnicodeDecodeError:
        raise CliError(f"{path}: not UTF-8 text", exit_code=1) from None


def _emit(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))


# --- handlers --------------------------------------------------------------------------------------------------


def _verify(args: argparse.Namespace) -> int:
    from cisora_mesh.audit import InvalidCheckpoint
    from cisora_mesh.audit import checkpoint as cpmod

    trusted = []
    if args.checkpoint is not None:
        try:
            trusted.append(cpmod.parse(_read_text(args.checkpoint)))
        except InvalidCheckpoint as exc:
            raise CliError(f"{args.checkpoint}: {exc}", exit_code=1) from None
    if args.export is not None:
        from cisora_mesh.audit.verify import verify_export

        keys = _keys(args.public_key)
        try:
            with args.export.open("rb") as fp:
                report = verify_export(fp, keys, trusted=trusted)
        except OSError as exc:
            raise CliError(f"{args.export}: cannot read ({exc.strerror or type(exc).__name__})") from None
    else:
        with _open(args) as store:
            report = store.verify(_keys(args.public_key, store), trusted=trusted)
    _emit({"intact": report.ok, **report.to_dict()})
    if not report.ok:
        where = "" if report.first_bad_index is None else f"first bad entry {report.first_bad_index}: "
        print(f"cisora-mesh: audit log does NOT verify: {where}{report.reason}", file=sys.stderr)
    return 0 if report.ok else 1


def _prove(args: argparse.Namespace) -> int:
    if args.check is not None:
        return _check_proof(args.check, args.public_key)
    if args.since is not None:
        return _prove_since(args)
    if args.index is None:
        raise CliError("audit prove needs --index N, --since FILE or --check FILE")
    from cisora_mesh.audit import AuditError

    with _open(args) as store:
        size = store.size()
        if not 0 <= args.index < size:
            raise CliError(f"index {args.index} is outside the log (size {size})")
        try:
            latest = store.latest_checkpoint()
            signed = latest if latest is not None and latest.size > args.index else store.checkpoint()
            proof = store.inclusion_proof(args.index, signed.size)
            proof.verify(signed.root)  # never hand out a proof we could not check ourselves
        except AuditError as exc:
            raise CliError(f"cannot prove entry {args.index}: {exc}", exit_code=1) from None
        entry = next(store.backend.iter_entries(args.index, args.index + 1))[2]
    _emit({**proof.to_dict(), "checkpoint": signed.text, "entry": base64.b64encode(entry).decode()})
    return 0


def _prove_since(args: argparse.Namespace) -> int:
    """RFC 9162 consistency proof from a checkpoint the auditor kept to the newest one."""
    from cisora_mesh.audit import AuditError, VerificationError
    from cisora_mesh.audit import checkpoint as cpmod

    with _open(args) as store:
        try:
            old = cpmod.verify(cpmod.parse(_read_text(args.since)), store.public_keys(), origin=store.origin)
            if old.size > store.size():
                raise VerificationError(f"the log holds {store.size()} entries, fewer than the kept {old.size}")
            # Prove up to the whole log as it is now (signing a checkpoint of the head if the newest one is older),
            # so every stored entry after the kept checkpoint is covered.
            latest = store.latest_checkpoint()
            new = latest if latest is not None and latest.size == store.size() else store.checkpoint()
            proof = store.consistency_proof(old.size, new.size) if old.size else None
            if proof is not None:
                proof.verify(old.root, new.root)  # fails if the log was rewritten since the kept checkpoint
        except AuditError as exc:
            raise CliError(f"{args.since}: no proof that the log extends this checkpoint: {exc}", exit_code=1) from None
    if proof is None:
        raise CliError("a checkpoint of the empty log needs no proof: every log extends it")
    _emit({**proof.to_dict(), "old_checkpoint": _read_text(args.since), "checkpoint": new.text})
    return 0


def _check_consistency(data: dict[str, Any], keys: Mapping[str, Ed25519PublicKey]) -> int:
    from cisora_mesh.audit import ConsistencyProof, VerificationError
    from cisora_mesh.audit import checkpoint as cpmod

    proof = ConsistencyProof.from_dict(data)
    old = cpmod.verify(cpmod.parse(data.get("old_checkpoint")), keys)
    new = cpmod.verify(cpmod.parse(data.get("checkpoint")), keys, origin=old.origin)
    if (old.size, new.size) != (proof.old_size, proof.new_size):
        raise VerificationError("proof sizes differ from the checkpoints' sizes")
    proof.verify(old.root, new.root)
    _emit({"valid": True, "old_size": old.size, "new_size": new.size, "origin": new.origin})
    return 0


def _check_proof(path: Path, key_path: Path | None) -> int:
    from cisora_mesh.audit import InclusionProof, VerificationError
    from cisora_mesh.audit import checkpoint as cpmod
    from cisora_mesh.audit.merkle import leaf_hash

    keys = _keys(key_path)
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError:
        raise CliError(f"{path}: malformed proof (not JSON)", exit_code=1) from None
    try:
        if isinstance(data, dict) and "old_size" in data:
            return _check_consistency(data, keys)
        proof = InclusionProof.from_dict(data)
        signed = cpmod.parse(data.get("checkpoint"))
        cp = cpmod.verify(signed, keys)
        if cp.size != proof.tree_size:
            raise VerificationError(f"proof is for tree size {proof.tree_size}, checkpoint signs {cp.size}")
        proof.verify(cp.root)
        entry = data.get("entry")
        if entry is not None:
            try:
                raw = base64.b64decode(entry, validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise VerificationError("entry is not base64") from None
            if leaf_hash(raw) != proof.leaf_hash:
                raise VerificationError("entry bytes do not hash to the proven leaf")
    except VerificationError as exc:
        raise CliError(f"{path}: proof does not verify: {exc}", exit_code=1) from None
    _emit({"valid": True, "index": proof.index, "tree_size": proof.tree_size, "origin": cp.origin})
    return 0


def _checkpoint(args: argparse.Namespace) -> int:
    from cisora_mesh.audit import AuditError, InvalidCheckpoint
    from cisora_mesh.audit import checkpoint as cpmod

    if args.check is not None:
        keys = _keys(args.public_key)
        try:
            cp = cpmod.verify(cpmod.parse(_read_text(args.check)), keys)
        except InvalidCheckpoint as exc:
            raise CliError(f"{args.check}: checkpoint does not verify: {exc}", exit_code=1) from None
        _emit({"valid": True, "origin": cp.origin, "size": cp.size, "root": base64.b64encode(cp.root).decode()})
        return 0
    with _open(args, create=True) as store:
        try:
            signed = store.checkpoint()
        except AuditError as exc:
            raise CliError(f"cannot sign a checkpoint: {exc}", exit_code=1) from None
    sys.stdout.write(signed.text)
    return 0


def _export(args: argparse.Namespace) -> int:
    with _open(args) as store:
        if args.out is None:
            store.export(sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return 0
        try:
            with args.out.open("wb") as fp:
                n = store.export(fp)
        except OSError as exc:
            raise CliError(f"{args.out}: cannot write ({exc.strerror or type(exc).__name__})") from None
    print(f"exported {n} entries to {args.out}", file=sys.stderr)
    return 0


def _tail(args: argparse.Namespace) -> int:
    if args.n < 0:
        raise CliError("-n must not be negative")
    with _open(args) as store:
        out: IO[str] = sys.stdout
        for item in store.tail(args.n):
            out.write(json.dumps(item, sort_keys=True) + "\n")
    return 0


def _public_key(args: argparse.Namespace) -> int:
    from cisora_mesh.audit import AuditKeyError
    from cisora_mesh.audit.keys import KeyRing, public_pem

    data_dir, _url, _every = _data_dir(args)
    ring = KeyRing(data_dir / "keys")
    try:
        if args.all:
            sys.stdout.write("".join(public_pem(k).decode() for k in ring.public_keys().values()))
        else:
            sys.stdout.write(ring.export_public_key().decode())
    except AuditKeyError as exc:
        raise CliError(str(exc)) from None
    return 0
