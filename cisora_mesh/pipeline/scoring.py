"""A calibrated injection/poisoning probability from signature hits.

Model: a noisy-OR over per-rule precision. For each rule, `bench/train_signatures.py` estimates on a hashed
TRAIN split (dev data plus our own benign corpus) the probability that a content it fires on is an attack,
separately for first-party text (prompts, arguments) and third-party text (tool results, documents, tool
descriptions), with Beta smoothing towards the rule's prior weight from the table so that rarely seen rules do not
get extreme estimates. The estimates ship as data in `signature_weights.json`; the same script prints the
reliability table and Brier score on the VALIDATION split.

Combining: rules of one category usually fire on the same phrase (they are not independent evidence), so each
category contributes its strongest rule; categories are combined by noisy-OR,
`p = 1 - prod(1 - p_category)`. This is monotone by construction: another hit can never lower the score.

A content without hits scores 0.0: signatures are evidence *for* an attack, their silence is not evidence of
safety, and a non-zero floor would send every clean text to review. The score therefore reads "probability that
this is an attack, given these signature hits".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Final

from cisora_mesh.events import ContentKind
from cisora_mesh.pipeline.signatures import THIRD_PARTY, Signature

WEIGHTS_RESOURCE: Final = "signature_weights.json"
FIRST_PARTY: Final = "first_party"
THIRD: Final = "third_party"
# A single rule never claims certainty: keeps noisy-OR from saturating on one phrase and leaves room for the
# review/block thresholds to mean "more than one kind of evidence".
MAX_RULE_PROBABILITY: Final = 0.98
# Cap for `supporting` rules (persona set-up, chat markup mentioned in a question): the dev data, where prompts are
# 94% attacks, rates them as precise, but in real traffic they are mostly harmless role-play and LLM questions.
# Two of them in different categories (0.4, 0.4 -> 0.64) still reach review; with a strong rule they add up.
SUPPORTING_CAP: Final = 0.4


def kind_group(kind: ContentKind) -> str:
    return THIRD if kind in THIRD_PARTY else FIRST_PARTY


@dataclass(frozen=True, slots=True)
class ScoreModel:
    # rule_id -> {"first_party": p, "third_party": p}; rules missing here fall back to their table weight
    rules: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def rule_probability(self, sig: Signature, kind: ContentKind) -> float:
        estimate = self.rules.get(sig.rule_id, {}).get(kind_group(kind), sig.weight)
        return min(max(estimate, 0.0), SUPPORTING_CAP if kind in sig.supporting else MAX_RULE_PROBABILITY)

    def probability(self, sigs: Iterable[Signature], kind: ContentKind) -> float:
        per_category: dict[str, float] = {}
        for sig in sigs:
            p = self.rule_probability(sig, kind)
            if p > per_category.get(sig.category, 0.0):
                per_category[sig.category] = p
        if not per_category:
            return 0.0
        miss = 1.0
        for p in per_category.values():
            miss *= 1.0 - p
        return 1.0 - miss

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ScoreModel:
        rules = data.get("rules")
        if not isinstance(rules, dict):
            raise ValueError("signature weights: expected an object 'rules'")
        parsed: dict[str, dict[str, float]] = {}
        for rule_id, groups in rules.items():
            if not isinstance(groups, dict):
                raise ValueError(f"signature weights: rule {rule_id} must map kind groups to probabilities")
            parsed[str(rule_id)] = {str(g): float(p) for g, p in groups.items()}
        return cls(rules=parsed)

    def to_json(self) -> dict[str, object]:
        return {"rules": {r: dict(sorted(g.items())) for r, g in sorted(self.rules.items())}}


def load_model() -> ScoreModel:
    """The shipped fitted estimates; before the first fit, every rule uses its table weight."""
    try:
        text = resources.files("cisora_mesh.pipeline").joinpath(WEIGHTS_RESOURCE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return ScoreModel()
    return ScoreModel.from_json(json.loads(text))
