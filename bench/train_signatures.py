"""Fit the signature score model and report its calibration on a held-out split.

    python bench/train_signatures.py [--dev DIR] [--no-write] [--show-errors N]

Data: `injection.jsonl` and `tool_poisoning.jsonl` from the dev set plus our own benign corpus in `bench/benign/`.
Split: a record is VALIDATION when sha256(id) % 5 == 0, else TRAIN (anyone can reproduce it from the ids).
Each record goes through the real normalisation stage and the signature matcher. For every rule, its precision
(share of attacks among the TRAIN records it fires on) is estimated per kind group (first-party: prompt/arguments;
third-party: tool result, document, tool description) with Beta smoothing: the rule-level estimate is pulled
towards the table weight with PSEUDO pseudo-counts, the group-level one towards the rule-level one. Counting only,
no randomness: the output is deterministic. The score is the noisy-OR in `cisora_mesh.pipeline.scoring`.
Writes `cisora_mesh/pipeline/signature_weights.json` and prints, on VALIDATION only: TPR/FPR at the default
review/block thresholds, AUC, per-category figures, own-benign FPR, a reliability table and the Brier score.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from cisora_mesh.config import TenantPolicy
from cisora_mesh.events import ContentKind, ContentScan
from cisora_mesh.pipeline.base import ScanContext
from cisora_mesh.pipeline.scoring import FIRST_PARTY, THIRD, ScoreModel, kind_group
from cisora_mesh.pipeline.signatures import SIGNATURES, Signature
from cisora_mesh.pipeline.stages.normalize import NormalizeStage
from cisora_mesh.pipeline.stages.signatures import SignatureStage

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "cisora_mesh" / "pipeline" / "signature_weights.json"
BENIGN = ROOT / "bench" / "benign"
REVIEW, BLOCK = 0.50, 0.80  # config.InjectionSettings defaults
PSEUDO = 4.0  # pseudo-counts of the prior (table weight) in the Beta smoothing


@dataclass
class Row:
    id: str
    file: str
    category: str
    kind: ContentKind
    label: int
    rules: tuple[str, ...]
    sigs: tuple[Signature, ...]
    validation: bool
    text: str


def is_validation(record_id: str) -> bool:
    return int(hashlib.sha256(record_id.encode()).hexdigest(), 16) % 5 == 0


def load(dev: Path) -> list[tuple[str, dict[str, object]]]:
    out: list[tuple[str, dict[str, object]]] = []
    for name in ("injection.jsonl", "tool_poisoning.jsonl"):
        out += [(name, json.loads(line)) for line in (dev / name).read_text(encoding="utf-8").split("\n") if line]
    for path in sorted(BENIGN.glob("*.jsonl")):
        out += [
            (f"benign/{path.name}", json.loads(line)) for line in path.read_text(encoding="utf-8").split("\n") if line
        ]
    return out


def featurise(records: list[tuple[str, dict[str, object]]], stage: SignatureStage) -> list[Row]:
    normalize = NormalizeStage()
    policy = TenantPolicy.default()
    rows = []
    for file, rec in records:
        kind = ContentKind(str(rec["kind"]))
        text = str(rec["text"])
        ctx = ScanContext(event=ContentScan(kind=kind, text=text), policy=policy)
        normalize.run(ctx)
        sigs = {}
        for scan_text in ctx.texts:
            found = stage.hits(scan_text.match_text, kind)
            if kind is ContentKind.OUTPUT:
                found = [h for h in found if h.signature.rule_id in stage_output_rules()]
            for hit in found:
                sigs[hit.signature.rule_id] = hit.signature
        rows.append(
            Row(
                str(rec["id"]),
                file,
                str(rec["category"]),
                kind,
                int(str(rec["label"])),
                tuple(sorted(sigs)),
                tuple(sigs.values()),
                is_validation(str(rec["id"])),
                text,
            )
        )
    return rows


def stage_output_rules() -> frozenset[str]:
    from cisora_mesh.pipeline.stages.signatures import OUTPUT_RULES

    return OUTPUT_RULES


def fit(rows: list[Row]) -> ScoreModel:
    pos: dict[tuple[str, str], int] = defaultdict(int)
    tot: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        group = kind_group(row.kind)
        for rule in row.rules:
            for key in ((rule, group), (rule, "all")):
                tot[key] += 1
                pos[key] += row.label
    estimates: dict[str, dict[str, float]] = {}
    for sig in SIGNATURES:
        rule_p = (pos[sig.rule_id, "all"] + PSEUDO * sig.weight) / (tot[sig.rule_id, "all"] + PSEUDO)
        estimates[sig.rule_id] = {
            group: round((pos[sig.rule_id, group] + PSEUDO * rule_p) / (tot[sig.rule_id, group] + PSEUDO), 4)
            for group in (FIRST_PARTY, THIRD)
        }
    return ScoreModel(rules=estimates)


def counts(rows: list[Row]) -> dict[str, dict[str, list[int]]]:
    """Per rule and kind group: [attacks, total] among TRAIN records it fired on (shipped for transparency)."""
    out: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for row in rows:
        for rule in row.rules:
            cell = out[rule][kind_group(row.kind)]
            cell[0] += row.label
            cell[1] += 1
    return {r: dict(g) for r, g in sorted(out.items())}


def auc(pos: list[float], neg: list[float]) -> float:
    """Mann-Whitney AUC with ties counted half."""
    if not pos or not neg:
        return float("nan")
    ranked = sorted([(s, 1) for s in pos] + [(s, 0) for s in neg])
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        avg = (i + j + 1) / 2
        rank_sum += avg * sum(1 for k in range(i, j) if ranked[k][1])
        i = j
    return (rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def rate(hits: int, total: int) -> str:
    return f"{hits / total:6.1%} ({hits}/{total})" if total else "   n/a"


def report(rows: list[Row], model: ScoreModel, show_errors: int) -> dict[str, object]:
    val = [r for r in rows if r.validation]
    scored = [(r, model.probability(r.sigs, r.kind)) for r in val]
    summary: dict[str, object] = {}
    print("\n== VALIDATION (sha256(id) % 5 == 0) ==")
    for file in ("injection.jsonl", "tool_poisoning.jsonl"):
        sub = [(r, p) for r, p in scored if r.file == file]
        pos = [p for r, p in sub if r.label]
        neg = [p for r, p in sub if not r.label]
        tpr = sum(p >= REVIEW for p in pos)
        fpr = sum(p >= REVIEW for p in neg)
        blk = sum(p >= BLOCK for p in pos)
        a = auc(pos, neg)
        print(
            f"\n{file}: TPR(review+) {rate(tpr, len(pos))}  TPR(block) {rate(blk, len(pos))}  "
            f"FPR {rate(fpr, len(neg))}  AUC {a:.3f}"
        )
        summary[file] = {"tpr": tpr / max(len(pos), 1), "fpr": fpr / max(len(neg), 1), "auc": round(a, 4)}
        for cat in sorted({r.category for r, _ in sub}):
            cpos = [p for r, p in sub if r.category == cat and r.label]
            cneg = [p for r, p in sub if r.category == cat and not r.label]
            if cpos:
                print(
                    f"  {cat:28s} TPR {rate(sum(p >= REVIEW for p in cpos), len(cpos))}  AUC vs all neg "
                    f"{auc(cpos, neg):.3f}"
                )
            else:
                print(f"  {cat:28s} FPR {rate(sum(p >= REVIEW for p in cneg), len(cneg))}")
        by_kind: dict[str, list[float]] = defaultdict(list)
        for r, p in sub:
            if not r.label:
                by_kind[r.kind.value].append(p)
        for kind, ps in sorted(by_kind.items()):
            print(f"  negatives kind={kind:18s} FPR {rate(sum(p >= REVIEW for p in ps), len(ps))}")
    own = [(r, p) for r, p in scored if r.file.startswith("benign/")]
    for group in sorted({r.file for r, _ in own}):
        ps = [p for r, p in own if r.file == group]
        print(
            f"\nown benign {group:28s} FPR {rate(sum(p >= REVIEW for p in ps), len(ps))}  "
            f"any-hit {rate(sum(p > 0 for p in ps), len(ps))}"
        )
    ps = [p for _, p in own]
    summary["own_benign_fpr"] = sum(p >= REVIEW for p in ps) / max(len(ps), 1)

    for title, subset in (
        ("all validation records", scored),
        ("records with >= 1 hit", [x for x in scored if x[1] > 0]),
    ):
        print(f"\nReliability ({title}): predicted bucket -> observed positive rate")
        buckets: dict[int, list[int]] = defaultdict(list)
        for r, p in subset:
            buckets[min(int(p * 10), 9)].append(r.label)
        for b in range(10):
            labels = buckets.get(b, [])
            if labels:
                mean_p = sum(p for r, p in subset if min(int(p * 10), 9) == b) / len(labels)
                print(
                    f"  [{b / 10:.1f}, {(b + 1) / 10:.1f})  n={len(labels):5d}  mean pred {mean_p:.3f}  "
                    f"observed {sum(labels) / len(labels):.3f}"
                )
        brier = sum((p - r.label) ** 2 for r, p in subset) / max(len(subset), 1)
        print(f"  Brier score: {brier:.4f}")
        summary[f"brier_{'all' if title.startswith('all') else 'hits'}"] = round(brier, 4)

    if show_errors:
        train = [(r, model.probability(r.sigs, r.kind)) for r in rows if not r.validation]
        fps = [(r, p) for r, p in train if not r.label and p >= REVIEW]
        print(f"\n-- TRAIN false positives ({len(fps)}) --")
        for r, p in fps[:show_errors]:
            print(f"{p:.2f} {r.file} {r.kind.value} {r.rules} {r.text[:200]!r}")
        misses = [(r, p) for r, p in train if r.label and p < REVIEW and r.category != "jailbreak"]
        print(f"\n-- TRAIN misses, non-jailbreak ({len(misses)}) --")
        for r, p in misses[:show_errors]:
            print(f"{p:.2f} {r.category} {r.rules} {r.text[:300]!r}")
        rule_counts = Counter(rule for r, _ in train for rule in r.rules)
        rule_neg = Counter(rule for r, _ in train if not r.label for rule in r.rules)
        print("\n-- TRAIN rule hits (total / on negatives) --")
        for rule, count in sorted(rule_counts.items()):
            print(f"  {rule:18s} {count:5d} {rule_neg[rule]:5d}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", type=Path, default=Path("/work/shared/data/dev"))
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--show-errors", type=int, default=0)
    args = parser.parse_args()
    stage = SignatureStage()
    rows = featurise(load(args.dev), stage)
    train = [r for r in rows if not r.validation]
    print(
        f"records: {len(rows)} (train {len(train)}, validation {len(rows) - len(train)}); "
        f"train with hits: {sum(1 for r in train if r.rules)}"
    )
    model = fit(train)
    summary = report(rows, model, args.show_errors)
    if not args.no_write:
        payload = {
            **model.to_json(),
            "model": "noisy-OR over per-rule precision per kind group (cisora_mesh.pipeline.scoring.ScoreModel)",
            "fitted_by": "bench/train_signatures.py",
            "split": "validation = sha256(id) % 5 == 0",
            "pseudo_count": PSEUDO,
            "train_counts": counts(train),
            "validation": summary,
        }
        WEIGHTS.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        print(f"\nwrote {WEIGHTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
