"""Detector quality on labelled data, scored exactly as the independent evaluation scores it.

    python bench/detection.py [--data ../shared/data/dev] [--split all|validation] [--stages inline|full]

Each file's `{"id", "text", "kind"}` goes through `cisora-mesh scan --jsonl` (a real subprocess, the public
contract). Then, per file and per category:
- injection / tool poisoning / our own benign corpus: TPR, FPR, precision, F1 at the decision (block, review and
  redact count as positive), AUC of `score`, TPR at 1%/2%/5% FPR;
- PII: span level: a gold span is found when any finding overlaps it (recall per gold type), a finding is correct when
  it overlaps a gold span (precision);
- secrets (no gold spans upstream): record level, a record is flagged when it has a DLP finding.
Rates carry 95% Wilson intervals. `--split validation` keeps only records with sha256(id) % 5 == 0, the split the
signature weights were NOT fitted on (see bench/train_signatures.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from cisora_mesh.metrics import Rate, auc, tpr_at_fpr

HERE = Path(__file__).resolve().parent
POSITIVE = {"block", "review", "redact"}


def in_validation(record_id: str) -> bool:
    return int(hashlib.sha256(record_id.encode()).hexdigest(), 16) % 5 == 0


def load(path: Path, split: str) -> list[dict[str, Any]]:
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and other characters splitlines() breaks on.
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    return [r for r in rows if split == "all" or in_validation(str(r["id"]))]


def scan(rows: list[dict[str, Any]], stages: str) -> dict[str, dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
        src.write_text("".join(json.dumps({k: r[k] for k in ("id", "text", "kind")}) + "\n" for r in rows))
        cmd = [
            sys.executable,
            "-m",
            "cisora_mesh.cli",
            "scan",
            "--jsonl",
            str(src),
            "--out",
            str(out),
            "--stages",
            stages,
            "--no-audit",
        ]
        subprocess.run(cmd, check=True)
        results = [json.loads(line) for line in out.read_text(encoding="utf-8").split("\n") if line.strip()]
    return {str(r["id"]): r for r in results}


def decision_table(name: str, rows: list[dict[str, Any]], results: dict[str, dict[str, Any]]) -> None:
    labels = [int(r["label"]) for r in rows]
    scores = [float(results[str(r["id"])]["score"]) for r in rows]
    flagged = [results[str(r["id"])]["decision"] in POSITIVE for r in rows]
    tp = sum(1 for y, f in zip(labels, flagged, strict=True) if y and f)
    fp = sum(1 for y, f in zip(labels, flagged, strict=True) if not y and f)
    pos, neg = sum(labels), len(labels) - sum(labels)
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / pos if pos else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else float("nan")
    print(f"\n## {name}: {len(rows)} records ({pos} positive, {neg} negative)")
    print(f"TPR {Rate(tp, pos)}")
    print(f"FPR {Rate(fp, neg)}")
    print(f"precision {Rate(tp, tp + fp)}  F1 {f1:.3f}")
    if pos and neg:
        print(
            f"AUC {auc(scores, labels):.3f}  "
            + "  ".join(f"TPR@{int(x * 100)}%FPR {tpr_at_fpr(scores, labels, x)[0]:.3f}" for x in (0.01, 0.02, 0.05))
        )
    by_category: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_category[str(r.get("category", "?"))].append(i)
    if len(by_category) > 1:
        negatives = [i for i, y in enumerate(labels) if not y]
        print(f"{'category':<28} {'n':>5} {'flagged':>26} {'AUC vs all negatives':>22}")
        for category, idx in sorted(by_category.items()):
            hits = sum(1 for i in idx if flagged[i])
            cat_auc = ""
            if labels[idx[0]] and negatives:
                sub = idx + negatives
                cat_auc = f"{auc([scores[i] for i in sub], [labels[i] for i in sub]):.3f}"
            print(f"{category:<28} {len(idx):>5} {Rate(hits, len(idx))!s:>26} {cat_auc:>22}")


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def span_table(rows: list[dict[str, Any]], results: dict[str, dict[str, Any]]) -> None:
    found: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    correct = total_findings = 0
    for r in rows:
        gold = [(s["start"], s["end"], s["type"]) for s in r.get("spans", [])]
        spans = [
            (f["start"], f["end"])
            for f in results[str(r["id"])]["findings"]
            if f["start"] is not None and f["detector"] != "signatures"
        ]
        for start, end, kind in gold:
            found[kind][1] += 1
            if any(overlaps((start, end), s) for s in spans):
                found[kind][0] += 1
        total_findings += len(spans)
        correct += sum(1 for s in spans if any(overlaps(s, (g[0], g[1])) for g in gold))
    print(f"\n## pii (span level): finding precision {Rate(correct, total_findings)}")
    print(f"{'gold type':<20} {'recall':>28}")
    for kind, (hit, n) in sorted(found.items(), key=lambda kv: -kv[1][1]):
        print(f"{kind:<20} {Rate(hit, n)!s:>28}")


def secrets_table(rows: list[dict[str, Any]], results: dict[str, dict[str, Any]]) -> None:
    def has_secret(r: dict[str, Any]) -> bool:
        return any(f["detector"] in ("dlp", "custom_dlp") for f in results[str(r["id"])]["findings"])

    pos = [r for r in rows if r["label"]]
    neg = [r for r in rows if not r["label"]]
    print(f"\n## secrets (record level): {len(rows)} records")
    print(f"records with a secret flagged: {Rate(sum(map(has_secret, pos)), len(pos))}")
    print(f"hard negatives flagged:        {Rate(sum(map(has_secret, neg)), len(neg))}")
    families: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in pos:
        family = str(r["category"]).split(":")[-1]
        families[family][1] += 1
        families[family][0] += has_secret(r)
    top = sorted(families.items(), key=lambda kv: -kv[1][1])[:15]
    print("largest provider families: " + ", ".join(f"{k} {h}/{n}" for k, (h, n) in top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "dev")
    parser.add_argument("--split", choices=["all", "validation"], default="all")
    parser.add_argument("--stages", choices=["inline", "full"], default="inline")
    args = parser.parse_args()
    for name in ("injection", "tool_poisoning"):
        path = args.data / f"{name}.jsonl"
        if path.exists():
            rows = load(path, args.split)
            decision_table(name, rows, scan(rows, args.stages))
    own = sorted((HERE / "benign").glob("*.jsonl"))
    if own:
        rows = [r for p in own for r in load(p, args.split)]
        decision_table("own benign corpus (bench/benign)", rows, scan(rows, args.stages))
    if (args.data / "pii.jsonl").exists():
        rows = load(args.data / "pii.jsonl", args.split)
        results = scan(rows, args.stages)
        decision_table("pii (record level)", rows, results)
        span_table(rows, results)
    if (args.data / "secrets.jsonl").exists():
        rows = load(args.data / "secrets.jsonl", args.split)
        results = scan(rows, args.stages)
        decision_table("secrets (record level, decision)", rows, results)
        secrets_table(rows, results)


if __name__ == "__main__":
    main()
