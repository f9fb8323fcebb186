"""`cisora-mesh scan`: run the detection pipeline over one text or a JSON-lines file.

Input lines are `{"id", "text", "kind"}` (kind: prompt | tool_result | document | tool_description | output;
default prompt). Each output line is `{"id", "decision", "score", "findings", "redacted_text"?}` in input order.
A line that cannot be read is reported on stderr with its line number, gets no output line, and makes the exit
code 1; every other line is still scanned.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

import msgspec

from cisora_mesh.cli._common import (
    CliError,
    add_common_options,
    async_stages,
    close_stages,
    error_line,
    load,
    open_audit,
)
from cisora_mesh.events import ContentKind, ContentScan, Decision, Subject

KINDS = [k.value for k in ContentKind if k is not ContentKind.TOOL_ARGUMENTS]


class ScanRecord(msgspec.Struct, forbid_unknown_fields=False):
    id: str | int
    text: str
    kind: Literal["prompt", "tool_result", "document", "tool_description", "output"] = "prompt"


class OutFinding(msgspec.Struct, omit_defaults=False):
    detector: str
    rule_id: str
    category: str
    severity: str
    confidence: float
    start: int | None
    end: int | None


class OutLine(msgspec.Struct, omit_defaults=True):
    id: str | int | None
    decision: str
    score: float
    findings: list[OutFinding]
    redacted_text: str | None = None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "scan",
        help="scan a text or a JSON-lines file for injection, poisoning, secrets and PII",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", nargs="?", metavar="FILE|-", help="text to scan (default: stdin)")
    parser.add_argument("--kind", choices=KINDS, default="prompt", help="what the single text is (default: prompt)")
    parser.add_argument("--jsonl", type=Path, metavar="IN", help="JSON-lines input: one {id, text, kind} per line")
    parser.add_argument("--out", type=Path, metavar="OUT", help="write results here instead of stdout")
    parser.add_argument(
        "--stages",
        choices=["inline", "full"],
        default="inline",
        help="inline: the sub-millisecond stages; full: also run the async detectors synchronously",
    )
    parser.add_argument("--store", metavar="URL", help="audit store URL (default: SQLite in the data directory)")
    parser.add_argument("--no-audit", action="store_true", help="do not record decisions in the audit log")
    add_common_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.jsonl is not None and args.file is not None:
        raise CliError("give either FILE or --jsonl, not both")
    config, data_dir = load(args)
    audit = None if args.no_audit else open_audit(config, data_dir, args.store)

    from cisora_mesh.mesh import Mesh  # after argument checks: --help and usage errors stay fast

    full = args.stages == "full"
    mesh = Mesh(config, audit=audit, async_stages=async_stages(config, data_dir) if full else ())
    subject = Subject(tenant=args.tenant)
    try:
        with _output(args.out) as out:
            if args.jsonl is not None:
                return _scan_jsonl(mesh, subject, args.jsonl, out, full=full)
            text = _read_text(args.file)
            decision = mesh.evaluate(ContentScan(kind=ContentKind(args.kind), text=text, subject=subject), full=full)
            out.write(msgspec.json.encode(_line(None, decision)).decode() + "\n")
            return 0
    finally:
        mesh.close()
        close_stages(mesh.async_stages)
        close = getattr(audit, "close", None)
        if close is not None:
            close()


def _scan_jsonl(mesh: Any, subject: Subject, path: Path, out: IO[str], *, full: bool) -> int:
    decoder = msgspec.json.Decoder(ScanRecord)
    encoder = msgspec.json.Encoder()
    bad = 0
    for lineno, raw in _progress(path):
        if not raw.strip():
            continue
        try:
            record = decoder.decode(raw)
        except msgspec.DecodeError as exc:
            # msgspec's message names the field and position, never the text itself.
            error_line(f"{path}:{lineno}: {_reason(exc)}")
            bad += 1
            continue
        event = ContentScan(kind=ContentKind(record.kind), text=record.text, subject=subject)
        decision = mesh.evaluate(event, full=full)
        out.write(encoder.encode(_line(record.id, decision)).decode())
        out.write("\n")
    if bad:
        error_line(f"{bad} line(s) of {path} could not be read")
        return 1
    return 0


def _reason(exc: msgspec.DecodeError) -> str:
    message = str(exc)
    if message.startswith("JSON is malformed") or message.startswith("Input data was truncated"):
        return "invalid JSON"
    return message


def _line(record_id: str | int | None, decision: Decision) -> OutLine:
    return OutLine(
        id=record_id,
        decision=decision.verdict.value,
        score=decision.score,
        findings=[
            OutFinding(
                detector=f.detector,
                rule_id=f.rule_id,
                category=f.category,
                severity=f.severity.value,
                confidence=f.confidence,
                start=f.start,
                end=f.end,
            )
            for f in decision.findings
        ],
        redacted_text=decision.redacted_text,
    )


def _read_text(name: str | None) -> str:
    if name is None or name == "-":
        return sys.stdin.read()
    try:
        return Path(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise CliError(f"{name}: is a directory") from None
    except UnicodeDecodeError:
        raise CliError(f"{name}: not UTF-8 text") from None
    except OSError as exc:
        raise CliError(f"{name}: cannot read ({exc.strerror})") from None


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    try:
        handle = path.open("w", encoding="utf-8")
    except OSError as exc:
        raise CliError(f"{path}: cannot write ({exc.strerror})") from None
    with handle:
        yield handle


def _progress(path: Path) -> Iterator[tuple[int, bytes]]:
    """Lines of `path` with their numbers; a progress bar on stderr when it is a terminal."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CliError(f"{path}: is a directory") from None
    except OSError as exc:
        raise CliError(f"{path}: cannot read ({exc.strerror})") from None
    with handle:
        if not sys.stderr.isatty():
            yield from enumerate(handle, start=1)
            return
        total = sum(1 for _ in handle)
        handle.seek(0)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("scanning"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("scan", total=total)
            for item in enumerate(handle, start=1):
                yield item
                bar.advance(task)
