"""`cisora-mesh eval`: detection quality on a labelled JSON-lines file, scored like the independent evaluation.

Input lines are `{"id", "text", "kind", "label", "category"?}`. Every record goes through the same pipeline as
`cisora-mesh scan` (`--stages full` adds the async ML detectors, run synchronously). At the decision, block, review
and redact count as positive: TPR, FPR, precision and F1, overall and per category. From `score`: AUC and the TPR at
the thresholds giving 1% and 5% FPR (per category: that category's positives against all negatives). Every rate
carries a 95% Wilson interval. `--split validation` keeps the records with sha256(id) % 5 == 0, the split the
shipped signature weights and ML head were not trained on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cisora_mesh.cli._common import CliError, add_common_options, async_stages, close_stages, load

POSITIVE = frozenset({"block", "review", "redact"})
FPR_POINTS = (0.01, 0.05)


@dataclass(frozen=True, slots=True)
class Scored:
    id: str
    category: str
    label: int
    decision: str
    score: float


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="measure detection quality on a labelled JSON-lines dataset",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", type=Path, required=True, metavar="FILE.jsonl", help="labelled records")
    parser.add_argument("--stages", choices=["inline", "full"], default="inline", help="full: add the ML detectors")
    parser.add_argument("--split", choices=["all", "validation"], default="all", help="records to use")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    add_common_options(parser)
    parser.set_defaults(handler=run)


def is_validation(record_id: str) -> bool:
    return int(hashlib.sha256(record_id.encode()).hexdigest(), 16) % 5 == 0


def read_dataset(path: Path, split: str) -> list[dict[str, Any]]:
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: cannot read ({exc})") from None
    records = []
    for lineno, line in enumerate(raw.split("\n"), start=1):  # not splitlines(): texts may hold U+2028
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            record["text"], record["label"] = str(record["text"]), int(record["label"])
        except (ValueError, KeyError, TypeError):
            raise CliError(f"{path}:{lineno}: expected a JSON object with text and label") from None
        record.setdefault("id", f"line-{lineno}")
        if split == "all" or is_validation(str(record["id"])):
            records.append(record)
    if not records:
        raise CliError(f"{path}: no records")
    return records


def run(args: argparse.Namespace) -> int:
    records = read_dataset(args.dataset, args.split)
    config, data_dir = load(args)
    from cisora_mesh.events import ContentKind, ContentScan, Subject
    from cisora_mesh.mesh import Mesh

    mesh = Mesh(config, async_stages=async_stages(config, data_dir) if args.stages == "full" else ())
    subject = Subject(tenant=args.tenant)
    full = args.stages == "full"
    scored = []
    try:
        for record in records:
            try:
                kind = ContentKind(str(record.get("kind", "prompt")))
            except ValueError:
                raise CliError(f"record {record['id']}: unknown kind {record.get('kind')!r}") from None
            decision = mesh.evaluate(ContentScan(kind=kind, text=record["text"], subject=subject), full=full)
            scored.append(
                Scored(
                    str(record["id"]),
                    str(record.get("category", "all")),
                    record["label"],
                    decision.verdict.value,
                    decision.score,
                )
            )
    finally:
        mesh.close()
        close_stages(mesh.async_stages)
    figures = evaluate(scored)
    figures["dataset"], figures["stages"], figures["split"] = str(args.dataset), args.stages, args.split
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print_table(figures, sys.stdout)
    return 0


def _rate(hits: int, total: int) -> dict[str, Any]:
    from cisora_mesh.metrics import Rate

    rate = Rate(hits, total)
    low, high = rate.interval
    return {"value": rate.value if total else None, "low": low, "high": high, "hits": hits, "total": total}


def _block(rows: list[Scored], negatives: list[Scored]) -> dict[str, Any]:
    """Decision and score figures for `rows` (a category's rows, or all); score figures against `negatives`."""
    from cisora_mesh.metrics import auc, tpr_at_fpr

    pos = [r for r in rows if r.label]
    neg = [r for r in rows if not r.label]
    tp = sum(r.decision in POSITIVE for r in pos)
    fp = sum(r.decision in POSITIVE for r in neg)
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / len(pos) if pos else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else float("nan")
    out: dict[str, Any] = {
        "n": len(rows),
        "positives": len(pos),
        "negatives": len(neg),
        "tpr": _rate(tp, len(pos)),
        "fpr": _rate(fp, len(neg)),
        "precision": _rate(tp, tp + fp),
        "f1": None if f1 != f1 else round(f1, 4),
    }
    ranked = pos + negatives
    if pos and negatives:
        scores = [r.score for r in ranked]
        labels = [r.label for r in ranked]
        out["auc"] = round(auc(scores, labels), 4)
        for point in FPR_POINTS:
            tpr, threshold = tpr_at_fpr(scores, labels, point)
            hits = round(tpr * len(pos))
            out[f"tpr_at_fpr_{int(point * 100)}"] = {**_rate(hits, len(pos)), "threshold": threshold}
    return out


def evaluate(scored: list[Scored]) -> dict[str, Any]:
    negatives = [r for r in scored if not r.label]
    by_category: dict[str, list[Scored]] = defaultdict(list)
    for row in scored:
        by_category[row.category].append(row)
    return {
        "overall": _block(scored, negatives),
        "categories": {c: _block(rows, negatives) for c, rows in sorted(by_category.items())},
    }


def _fmt(rate: dict[str, Any] | None) -> str:
    if not rate or not rate["total"]:
        return "n/a"
    return f"{rate['value']:.3f} [{rate['low']:.3f}, {rate['high']:.3f}] ({rate['hits']}/{rate['total']})"


def print_table(figures: dict[str, Any], out: Any) -> None:
    overall = figures["overall"]
    print(
        f"{figures['dataset']} ({figures['split']}, stages {figures['stages']}): {overall['n']} records, "
        f"{overall['positives']} positive, {overall['negatives']} negative",
        file=out,
    )
    rows = [("overall", overall), *figures["categories"].items()]
    header = f"{'category':<26} {'n':>5}  {'TPR':<30} {'FPR':<30} {'precision':<30} {'F1':>6} {'AUC':>6}"
    header += "".join(f"  {'TPR@' + str(int(p * 100)) + '%FPR':<30}" for p in FPR_POINTS)
    print(header, file=out)
    for name, block in rows:
        f1 = "" if block["f1"] is None else f"{block['f1']:.3f}"
        line = (
            f"{name[:26]:<26} {block['n']:>5}  {_fmt(block['tpr']):<30} {_fmt(block['fpr']):<30} "
            f"{_fmt(block['precision']):<30} {f1:>6} {block.get('auc', ''):>6}"
        )
        line += "".join(f"  {_fmt(block.get(f'tpr_at_fpr_{int(p * 100)}')):<30}" for p in FPR_POINTS)
        print(line, file=out)
