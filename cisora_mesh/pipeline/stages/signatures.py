"""Prompt-injection and tool-poisoning signatures: one RE2 set pass per text, work only on hits.

For every `ScanText` (including text decoded from Unicode tag characters) the stage asks the compiled
`PatternSet` which rules match at all; clean text costs that one pass. Only matching rules are re-run for spans,
and each reports its first occurrence only: the score depends only on which rules fired, and stopping at the first
match spares RE2 a scan of the rest of the text for every rule that fired (repeats add noise, not evidence).
Base64/hex blobs are decoded (bounded in number and size) and the decoded text is matched once more, so an
instruction hidden in an encoding counts as `encoded_payload` evidence plus whatever it says.

Per content, the rules that fired are combined by the fitted noisy-OR in `pipeline/scoring.py`; the probability is
raised on the context (the decision's `score`), and each finding carries its rule's own fitted precision.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from cisora_mesh._regex import PatternSet, SetSlice, first_span, iter_spans, match_subject
from cisora_mesh.events import ContentKind, Finding
from cisora_mesh.pipeline.base import ScanContext, ScanText, raise_score
from cisora_mesh.pipeline.scoring import ScoreModel, load_model
from cisora_mesh.pipeline.signatures import SIGNATURES, Signature

DETECTOR: Final = "signatures"

# Model output is the model's own words: explaining or quoting an attack there is not an attack on this agent,
# and anything it says to another agent is scanned again when it arrives (as a prompt or a tool result). The one
# thing that is dangerous *in* output is a Markdown image or link that leaks data as soon as a client renders it,
# so output is scanned for those rules only.
OUTPUT_RULES: Final = frozenset({"PI-EXFIL-001", "PI-EXFIL-005"})

# Bounds that keep the hit path cheap on hostile input: per text, how many blobs are decoded and how long a blob
# may be.
MAX_DECODES: Final = 8
MAX_BLOB: Final = 8192
_MIN_PRINTABLE: Final = 0.9


@dataclass(slots=True)
class Hit:
    signature: Signature
    start: int  # in match_text
    end: int
    decoded_from: str | None = None  # "base64" / "hex" when found inside a decoded blob


@dataclass(slots=True)
class _ContentHits:
    kind: ContentKind
    rules: dict[str, Signature] = field(default_factory=dict)


class SignatureStage:
    name = "signatures"

    def __init__(
        self,
        signatures: Sequence[Signature] = SIGNATURES,
        model: ScoreModel | None = None,
        *,
        prefilter: SetSlice | None = None,
    ) -> None:
        """`prefilter`: this table's slice of a set shared with other stages (one pass per text for all)."""
        self._signatures = tuple(signatures)
        patterns = [s.pattern for s in self._signatures]
        if prefilter is not None and len(prefilter) != len(patterns):
            raise ValueError("prefilter slice does not match the signature table")
        self._set = PatternSet(patterns, names=[s.rule_id for s in self._signatures], matcher=prefilter)
        self._prefilter = self._set.matcher
        self.model = model if model is not None else load_model()
        # Each finding's confidence is its rule's fitted precision for the content kind: a fixed table, so it is
        # computed once here rather than per finding.
        self._confidence = {
            (sig.rule_id, kind): round(self.model.rule_probability(sig, kind), 4)
            for sig in self._signatures
            for kind in ContentKind
        }

    # -- matching -----------------------------------------------------------------------------------------------

    def hits(
        self,
        text: str,
        kind: ContentKind,
        indices: Sequence[int] | None = None,
        memo: MutableMapping[object, list[int]] | None = None,
    ) -> list[Hit]:
        """Every rule hit in `text` for a content of `kind` (spans in `text`).

        `indices`: the rules the set pass found in `text`, when the caller already ran it; `memo`: the text's memo
        of that pass, which also lets the searches start at the earliest match of any pattern (ASCII text).
        """
        out: list[Hit] = []
        decodes = 0
        if indices is None:
            indices = self._set.matching(text)
        if not indices:
            return out
        subject = match_subject(text)
        pos = self._prefilter.earliest_start(subject, memo) if memo is not None and isinstance(subject, bytes) else 0
        for index in indices:
            sig = self._signatures[index]
            if not _applies(sig, kind):
                continue
            regex = self._set.regex(index)
            if not sig.candidate:
                span = first_span(regex, subject, pos)
                if span is not None:
                    out.append(Hit(sig, *span))
                continue
            # A candidate proposes blobs to decode: every blob counts (up to the bound), since a harmless one may
            # come first and hide the encoded instruction behind it.
            for start, end, _, _ in iter_spans(regex, subject, 0, pos):
                if decodes >= MAX_DECODES:
                    break
                decodes += 1
                decoded = _decode(sig.rule_id, text[start:end])  # offsets index `text` too (see match_subject)
                if decoded is None:
                    continue
                inner = self.hits_plain(decoded, kind)
                if not inner:
                    continue
                out.append(Hit(sig, start, end))
                # The decoded instruction is evidence in its own right; spans point at the blob.
                out.extend(Hit(h.signature, start, end, sig.rule_id) for h in inner)
        return out

    def hits_plain(self, text: str, kind: ContentKind) -> list[Hit]:
        """Hits of the non-candidate rules only (used on decoded text: no recursive decoding)."""
        out: list[Hit] = []
        for index in self._set.matching(text):
            sig = self._signatures[index]
            if sig.candidate or not _applies(sig, kind):
                continue
            match = self._set.regex(index).search(text)
            if match is not None:
                out.append(Hit(sig, match.start(), match.end()))
        return out

    # -- the stage ----------------------------------------------------------------------------------------------

    def run(self, ctx: ScanContext) -> None:
        if not ctx.policy.injection.enabled:
            return
        per_content: dict[int, _ContentHits] = {}
        self._prefilter.prime(ctx.texts)
        for scan_text in ctx.texts:
            kind = scan_text.kind
            text = scan_text.match_text
            found = self.hits(text, kind, self._prefilter.matching(text, scan_text.set_hits), scan_text.set_hits)
            if kind is ContentKind.OUTPUT:
                found = [h for h in found if h.signature.rule_id in OUTPUT_RULES]
            if not found:
                continue
            acc = per_content.setdefault(id(scan_text.content), _ContentHits(kind))
            for hit in found:
                acc.rules.setdefault(hit.signature.rule_id, hit.signature)
                if hit.decoded_from is None:
                    ctx.add(self._finding(scan_text, hit))
        for acc in per_content.values():
            raise_score(ctx, self.score_rules(acc.rules.values(), acc.kind))

    def score_rules(self, rules: Iterable[Signature], kind: ContentKind) -> float:
        return self.model.probability(rules, kind)

    def score_text(self, text: str, kind: ContentKind) -> float:
        """Probability for one already-normalised text (bench and tests)."""
        rules = {h.signature.rule_id: h.signature for h in self.hits(text, kind)}
        return self.score_rules(list(rules.values()), kind)

    def _finding(self, scan_text: ScanText, hit: Hit) -> Finding:
        start, end = scan_text.original_span(hit.start, hit.end)
        sig = hit.signature
        return Finding(
            detector=DETECTOR,
            rule_id=sig.rule_id,
            category=sig.category,
            severity=sig.severity,
            confidence=self._confidence[sig.rule_id, scan_text.kind],
            start=start,
            end=end,
            location=scan_text.location,
            action=None,
        )


def _applies(sig: Signature, kind: ContentKind) -> bool:
    return sig.kinds is None or kind in sig.kinds


def _decode(rule_id: str, blob: str) -> str | None:
    """Decoded text of a base64/hex blob if it is mostly printable text, else None."""
    blob = blob[:MAX_BLOB]
    try:
        if rule_id.endswith("HEX"):
            raw = bytes.fromhex(blob.replace(" ", "").replace(":", ""))
        else:
            trimmed = blob.rstrip("=")
            raw = base64.b64decode(trimmed + "=" * (-len(trimmed) % 4))
        text = raw.decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if not text:
        return None
    if text.isprintable():
        return text
    # Line breaks and tabs are not "printable" but belong in text; map() keeps the count in C.
    printable = sum(map(str.isprintable, text)) + text.count("\n") + text.count("\t") + text.count("\r")
    return text if printable / len(text) >= _MIN_PRINTABLE else None
