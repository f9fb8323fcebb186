"""Train the ML injection/poisoning head and report it on the held-out split.

    HF_HUB_OFFLINE=1 python bench/train_classifier.py [--dev DIR] [--no-write] [--embed-only] [--show-errors N]

Data: `injection.jsonl` and `tool_poisoning.jsonl` of the dev set, our benign corpora `bench/benign/` and
`bench/benign_ml/`. Split: VALIDATION when sha256(id) % 5 == 0, else TRAIN: the same split as
bench/train_signatures.py, so the figures of both detectors are comparable.

Features: every record is cut into segments (tool definitions: one per natural-language field, see
`cisora_mesh.ml.segments`) and token windows; each window is embedded with MiniLM (cached under
~/.cache/cisora-mesh/ml-train, keyed by the text and the window settings, so re-runs only embed what changed).
The head is a small MLP over [embedding, kind one-hot], trained with numpy (full batch Adam, fixed seed, fixed
number of steps: deterministic on one machine). A record's score is the maximum over its windows.

Window labels: windows of benign records are negatives. A positive record may be mostly benign text with one
inserted instruction, so its windows are not all positives (multiple-instance learning): round 1 trains with every
window of a positive record as positive; round 2 keeps, per positive record, only the windows round 1 scores at
least 0.5 (or its top window) and drops the others. For tool definitions the field that carries the instruction is
known without a model: a field text that occurs in no benign definition.

Calibration: Platt scaling (a, b on the logit) fitted on TRAIN out-of-fold scores... is not needed in practice for
a weighted logistic output; the script prints the reliability table and Brier score on VALIDATION so it can be
checked, and the model file records the validation thresholds for 1% and 5% FPR.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from cisora_mesh.metrics import Rate, auc, tpr_at_fpr
from cisora_mesh.ml.classifier import KINDS, Head, kind_features, load_head, save_head
from cisora_mesh.ml.embedder import MiniLmEmbedder
from cisora_mesh.ml.segments import segments

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT.parent / "shared" / "data" / "dev"
MODEL = ROOT / "cisora_mesh" / "ml" / "models" / "injection-v1.npz"
CACHE = Path.home() / ".cache" / "cisora-mesh" / "ml-train"
SEED = 20261122
Array = npt.NDArray[np.float32]


def is_validation(record_id: str) -> bool:
    return int(hashlib.sha256(record_id.encode()).hexdigest(), 16) % 5 == 0


@dataclass
class Record:
    id: str
    file: str
    category: str
    kind: str
    label: int
    text: str
    validation: bool
    segments: list[str] = field(default_factory=list)
    seg_positive: list[bool] = field(default_factory=list)  # known-positive fields of poisoned tool definitions


def load(dev: Path) -> list[Record]:
    files = [dev / "injection.jsonl", dev / "tool_poisoning.jsonl"]
    files += sorted((ROOT / "bench" / "benign").glob("*.jsonl")) + sorted(
        (ROOT / "bench" / "benign_ml").glob("*.jsonl")
    )
    out = []
    for path in files:
        for line in path.read_text(encoding="utf-8").split("\n"):
            if not line.strip():
                continue
            r = json.loads(line)
            rid = str(r["id"])
            out.append(
                Record(
                    rid,
                    path.name,
                    str(r["category"]),
                    str(r["kind"]),
                    int(r["label"]),
                    str(r["text"]),
                    is_validation(rid),
                )
            )
    for rec in out:
        rec.segments = segments(rec.text, rec.kind)
    benign_fields = {s for r in out if r.kind == "tool_description" and r.label == 0 for s in r.segments}
    for rec in out:
        if rec.kind == "tool_description" and rec.label == 1:
            rec.seg_positive = [s not in benign_fields for s in rec.segments]
    return out


class Cache:
    """Chunk embeddings per segment text, stored as one .npy per 1,000-entry shard plus a JSON index."""

    def __init__(self, embedder: MiniLmEmbedder) -> None:
        self.embedder = embedder
        tag = f"w{embedder.window}-o{embedder.overlap}-m{embedder.max_chunks}"
        self.dir = CACHE / tag
        self.dir.mkdir(parents=True, exist_ok=True)
        self.vectors: dict[str, Array] = {}
        for shard in sorted(self.dir.glob("*.json")):
            index = json.loads(shard.read_text())
            data = np.load(shard.with_suffix(".npy"))
            for key, (start, end) in index.items():
                self.vectors[key] = data[start:end]

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    def get_many(self, texts: list[str]) -> list[Array]:
        missing = sorted({t for t in texts if self.key(t) not in self.vectors}, key=len)
        if missing:
            print(f"embedding {len(missing)} new segments", file=sys.stderr)
        started = time.perf_counter()
        for begin in range(0, len(missing), 512):
            part = missing[begin : begin + 512]
            vectors = self.embedder.embed_chunks(part)
            index, rows, at = {}, [], 0
            for text, v in zip(part, vectors, strict=True):
                self.vectors[self.key(text)] = v
                index[self.key(text)] = (at, at + len(v))
                rows.append(v)
                at += len(v)
            name = self.dir / f"{time.time_ns()}"
            np.save(name.with_suffix(".npy"), np.concatenate(rows))
            name.with_suffix(".json").write_text(json.dumps(index))
            done = begin + len(part)
            print(f"  {done}/{len(missing)} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        return [self.vectors[self.key(t)] for t in texts]


@dataclass
class Windows:
    x: Array  # (n, 384 + len(KINDS))
    record: npt.NDArray[np.int64]  # record index of each window
    known: npt.NDArray[np.int8]  # 1 known positive, 0 known negative, -1 unknown (window of a positive record)
    sentence: npt.NDArray[np.bool_]  # a sentence segment of prose (not the whole text, not a tool field)


def windows(records: list[Record], cache: Cache) -> Windows:
    texts = [s for r in records for s in r.segments]
    vectors = iter(cache.get_many(texts))
    xs, rec_idx, known, sentence = [], [], [], []
    for i, r in enumerate(records):
        kind = kind_features(r.kind)
        for j, _ in enumerate(r.segments):
            v = next(vectors)
            xs.append(np.hstack([v, np.repeat(kind[None, :], len(v), axis=0)]))
            rec_idx += [i] * len(v)
            sentence += [j > 0 and r.kind != "tool_description"] * len(v)
            if r.label == 0:
                known += [0] * len(v)
            elif r.seg_positive:
                # A field seen in benign definitions is benign; a new one holds the instruction, or part of it
                # (a field and its sentences are all segments): leave it to the MIL round.
                known += ([-1] * len(v)) if r.seg_positive[j] else ([0] * len(v))
            else:
                known += [-1] * len(v)
    return Windows(
        np.vstack(xs).astype(np.float32), np.array(rec_idx), np.array(known, dtype=np.int8), np.array(sentence)
    )


def record_scores(head: Head, w: Windows, n: int) -> npt.NDArray[np.float64]:
    p = head.predict_features(w.x)
    out = np.zeros(n)
    np.maximum.at(out, w.record, p)
    return out


def sample_weights(records: list[Record], w: Windows, mask: npt.NDArray[np.bool_], y: npt.NDArray[np.float32]) -> Array:
    """Each (kind group, label) gets the same total weight, and each record the same weight within it.

    The dev files are 86% attacks for prompts: unweighted, the head would learn "prompts are attacks". Splitting a
    record's weight over its windows keeps a 40-window jailbreak from counting as 40 examples.
    """
    group = np.array(["tool" if records[i].kind == "tool_description" else "text" for i in w.record])
    per_record: dict[int, int] = defaultdict(int)
    for i, m in zip(w.record, mask, strict=True):
        if m:
            per_record[int(i)] += 1
    weights = np.array([1.0 / per_record[int(i)] if m else 0.0 for i, m in zip(w.record, mask, strict=True)])
    for g in ("tool", "text"):
        for label in (0.0, 1.0):
            sel = mask & (group == g) & (y == label)
            total = weights[sel].sum()
            if total > 0:
                weights[sel] *= 1.0 / total
    return (weights / weights[mask].mean()).astype(np.float32)


NEAR_DUPLICATE = 0.97


def near_duplicates_benign(w: Windows, win_train: npt.NDArray[np.bool_]) -> npt.NDArray[np.int8]:
    """Windows of positive records that (nearly) repeat a window of a TRAIN benign record become negatives.

    The dev positives are often a benign text with an instruction inserted (WHOIS records with a filled slot, tool
    definitions with an added sentence); the untouched parts of such a record are benign text, and labelling them
    positive would teach the head the carrier ("WHOIS records are attacks") instead of the instruction.
    """
    known = w.known.copy()
    emb = w.x[:, :384]
    negatives = emb[win_train & (w.known == 0)]
    unknown = np.flatnonzero(known < 0)
    for begin in range(0, len(unknown), 2048):
        idx = unknown[begin : begin + 2048]
        best = (emb[idx] @ negatives.T).max(axis=1)
        known[idx[best >= NEAR_DUPLICATE]] = 0
    print(
        f"{int((known == 0).sum() - (w.known == 0).sum())} windows of positive records relabelled benign "
        f"(near-duplicates of benign windows)",
        file=sys.stderr,
    )
    return known


def train(records: list[Record], w: Windows, train_mask: npt.NDArray[np.bool_], *, hidden: int, steps: int) -> Head:
    n = len(records)
    labels = np.array([r.label for r in records], dtype=np.float32)
    win_train = train_mask[w.record]
    known = near_duplicates_benign(w, win_train)
    w = Windows(w.x, w.record, known, w.sentence)
    # Round 1: every whole-text window and tool field of a positive record counts as positive, except those known
    # to be benign; sentences of positive records wait for round 2 (most sentences of an attack are ordinary).
    y = np.where(w.known >= 0, w.known, labels[w.record]).astype(np.float32)
    mask = win_train & ~(w.sentence & (w.known < 0))
    head = Head.fit(
        w.x[mask], y[mask], sample_weights(records, w, mask, y)[mask], hidden=hidden, steps=steps, seed=SEED
    )
    # Round 2: in positive records, keep whole-text windows and tool fields the first head already finds
    # attack-like (and the record's top one), and only the single most attack-like SENTENCE: an attack text is
    # mostly ordinary sentences, and labelling them all positive teaches the head to flag ordinary sentences
    # everywhere (measured: FPR on benign prose x3 when every sentence of a positive record was positive).
    p = head.predict_features(w.x)
    unknown = w.known < 0
    top = np.full(n, -1.0)
    np.maximum.at(top, w.record[~w.sentence], p[~w.sentence])
    top_sentence = np.full(n, -1.0)
    np.maximum.at(top_sentence, w.record[w.sentence & unknown], p[w.sentence & unknown])
    keep_whole = ~w.sentence & ((p >= 0.5) | (p >= top[w.record] - 1e-9))
    keep_sentence = w.sentence & (p >= top_sentence[w.record] - 1e-9)
    keep = ~unknown | keep_whole | keep_sentence
    mask = win_train & keep
    y = np.where(unknown, 1.0, y).astype(np.float32)
    return Head.fit(
        w.x[mask], y[mask], sample_weights(records, w, mask, y)[mask], hidden=hidden, steps=steps, seed=SEED
    )


def poisoning_style(record: Record) -> tuple[str, str]:
    """The wrapper and insertion place of a poisoned dev definition, inferred from its text (the dev records do not
    carry them): used to check that misses do not cluster in one insertion style (the dev README's warning)."""
    text = record.text
    if "<IMPORTANT>" in text:
        wrapper = "important_tag"
    elif "important message from me" in text.lower():
        wrapper = "important_instructions"
    else:
        wrapper = "plain"
    new = [s for s, positive in zip(record.segments, record.seg_positive, strict=True) if positive]
    if not new:
        return wrapper, "unknown"
    first = record.segments[0]
    if new[0] != first:
        return wrapper, "property_description"
    try:
        description = str(json.loads(text).get("description", ""))
    except ValueError:
        return wrapper, "unknown"
    others = _BENIGN_TOOLS.get(str(json.loads(text).get("name")), [])
    if any(description.startswith(o) for o in others):
        return wrapper, "description_end"
    if any(description.endswith(o) for o in others):
        return wrapper, "description_start"
    return wrapper, "description"


_BENIGN_TOOLS: dict[str, list[str]] = {}


def reliability(scores: npt.NDArray[np.float64], labels: npt.NDArray[np.float64]) -> None:
    print(f"{'bin':<12} {'n':>6} {'mean p':>8} {'attack rate':>12}")
    edges = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0001]
    for lo, hi in itertools.pairwise(edges):
        sel = (scores >= lo) & (scores < hi)
        if sel.any():
            print(f"[{lo:.1f}, {min(hi, 1):.1f}) {sel.sum():>6} {scores[sel].mean():>8.3f} {labels[sel].mean():>12.3f}")
    print(f"Brier {np.mean((scores - labels) ** 2):.4f}")


def report(
    name: str,
    scores: npt.NDArray[np.float64],
    labels: npt.NDArray[np.float64],
    cats: list[str],
    review: float,
    block: float,
) -> None:
    pos, neg = int(labels.sum()), int(len(labels) - labels.sum())
    s, y = scores.tolist(), [int(v) for v in labels]
    print(f"\n## {name}: {len(y)} records ({pos} positive, {neg} negative)")
    if pos and neg:
        print(
            f"AUC {auc(s, y):.4f}  "
            + "  ".join(
                f"TPR@{int(f * 100)}%FPR {tpr_at_fpr(s, y, f)[0]:.3f} (t={tpr_at_fpr(s, y, f)[1]:.3f})"
                for f in (0.01, 0.05)
            )
        )
    for t, label in ((review, "review"), (block, "block")):
        flagged = scores >= t
        tp, fp = int((flagged & (labels == 1)).sum()), int((flagged & (labels == 0)).sum())
        print(f"at {label} {t:.2f}: TPR {Rate(tp, pos)}  FPR {Rate(fp, neg)}")
    by_cat: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(cats):
        by_cat[c].append(i)
    for c, idx in sorted(by_cat.items()):
        hits = int((scores[idx] >= review).sum())
        print(f"  {c:<30} {Rate(hits, len(idx))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", type=Path, default=DEV)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--out", type=Path, default=MODEL, help="where to write the model (default: the shipped file)")
    parser.add_argument("--embed-only", action="store_true")
    parser.add_argument("--hidden", type=int, default=128, help="hidden units (0 = logistic regression)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--show-errors", type=int, default=0)
    parser.add_argument("--report-only", action="store_true", help="report the shipped model instead of training")
    args = parser.parse_args()

    records = load(args.dev)
    for r in records:
        if r.file == "tool_poisoning.jsonl" and r.label == 0:
            tool = json.loads(r.text)
            _BENIGN_TOOLS.setdefault(str(tool.get("name")), []).append(str(tool.get("description", "")))
    embedder = MiniLmEmbedder()
    cache = Cache(embedder)
    w = windows(records, cache)
    print(f"{len(records)} records, {len(w.x)} windows", file=sys.stderr)
    if args.embed_only:
        return
    train_mask = np.array([not r.validation for r in records])
    head = load_head() if args.report_only else train(records, w, train_mask, hidden=args.hidden, steps=args.steps)
    scores = record_scores(head, w, len(records))
    labels = np.array([r.label for r in records], dtype=np.float64)
    val = ~train_mask

    def sel(pred: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        return np.flatnonzero(pred)

    inj = val & np.array([r.file in ("injection.jsonl",) for r in records])
    own = val & np.array([r.file not in ("injection.jsonl", "tool_poisoning.jsonl") for r in records])
    inj_own = inj | (own & np.array([r.kind != "tool_description" for r in records]))
    tool = val & np.array([r.kind == "tool_description" for r in records])
    tool_dev = val & np.array([r.file == "tool_poisoning.jsonl" for r in records])
    cats = [r.category for r in records]
    for name, m in (
        ("injection (validation)", inj),
        ("injection + own benign non-tool (validation)", inj_own),
        ("tool_poisoning (validation)", tool_dev),
        ("tool_poisoning + own benign tool descriptions (validation)", tool),
        ("own corpora: benign + written attacks (validation)", own),
    ):
        idx = sel(m)
        report(name, scores[idx], labels[idx], [cats[i] for i in idx], 0.5, 0.85)
    print("\n## tool-poisoning positives (validation) by inferred wrapper and position: caught at p >= 0.70")
    by_style: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i in np.flatnonzero(tool_dev & (labels == 1)):
        wrapper, position = poisoning_style(records[i])
        by_style[wrapper, position].append(int(i))
    for (wrapper, position), idx in sorted(by_style.items()):
        caught = int((scores[idx] >= 0.70).sum())
        print(f"  {wrapper:<24} {position:<22} {Rate(caught, len(idx))}")
    if args.no_write or args.report_only:
        args.no_write = True
    print("\n## operating points on validation (ML alone): TPR / FPR when p >= t")
    print(f"{'t':>5}  {'injection + own benign text':<56} {'tool definitions (dev + own)':<56}")
    for t in (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95):
        cells = []
        for m in (inj_own, tool):
            flagged = scores >= t
            pos, neg = m & (labels == 1), m & (labels == 0)
            tpr = Rate(int((flagged & pos).sum()), int(pos.sum()))
            fpr = Rate(int((flagged & neg).sum()), int(neg.sum()))
            cells.append(f"{tpr.value:.3f} ({tpr.hits}/{tpr.total}) / {fpr.value:.3f} ({fpr.hits}/{fpr.total})")
        print(f"{t:>5.2f}  {cells[0]:<56} {cells[1]:<56}")
    print("\n## reliability, all validation records")
    reliability(scores[val], labels[val])
    for name, m in (("text kinds", val & ~tool), ("tool descriptions", tool)):
        print(f"\n## reliability, {name}")
        reliability(scores[m], labels[m])
    if args.show_errors:
        order = np.argsort(-scores)
        fps = [i for i in order if val[i] and labels[i] == 0][: args.show_errors]
        fns = [i for i in order[::-1] if val[i] and labels[i] == 1][: args.show_errors]
        for title, items in (("false positives", fps), ("false negatives", fns)):
            print(f"\n## top {title}")
            for i in items:
                print(f"{scores[i]:.3f} {records[i].id} {records[i].category}: {records[i].text[:160]!r}")
    if not args.no_write:
        save_head(
            head,
            args.out,
            meta={
                "seed": SEED,
                "window": embedder.window,
                "overlap": embedder.overlap,
                "train_records": int(train_mask.sum()),
                "kinds": list(KINDS),
            },
        )
        print(f"\nwrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
