"""Output DLP: secrets and personal data in text, with the tenant's alert / redact / block action.

How it runs (inline path, so it must stay cheap):

1. All built-in detectors (`pipeline.dlp_patterns`) are compiled once, at construction, into one RE2 set. One
   linear-time pass over `match_text` says which detectors match at all; clean text costs exactly that pass.
2. Only the detectors that matched are re-run (`finditer`) to get spans, and only those candidates go through the
   boundary checks and validators (Luhn, SSN structure, entropy, JWT header, ...).
3. The tenant's custom patterns (`ctx.policy.custom_patterns`, compiled by RE2 when the config was saved) run the
   same way, as detector `custom_dlp` with rule id `DLP-CUSTOM-<name>`.

Spans are found in the normalised `match_text` and mapped back to offsets in the original content text, so a
redaction rewrites exactly the characters the user sent. Texts derived by normalisation (e.g. decoded Unicode tag
characters) are not scanned for DLP: their spans cannot be redacted in place, and hidden content is already
reported by the normalisation stage.

Enforcement scope (which findings carry the tenant's action):

- Data *leaving* the protected side (`ContentKind.OUTPUT`, `ContentKind.TOOL_ARGUMENTS`): every category (secret,
  pii, custom) gets the configured action, since that is where a leak happens.
- Data *entering* (`PROMPT`, `TOOL_RESULT`, `DOCUMENT`, `TOOL_DESCRIPTION`): only `secret` findings get the
  action (a credential should not travel into model context or memory at all); PII findings are recorded with
  `Verdict.ALLOW` and not enforced, because users and tools legitimately hand personal data to the agent.

Tenant action -> finding action: `alert` -> `Verdict.ALLOW` (recorded only), `redact` -> `Verdict.REDACT`,
`block` -> `Verdict.BLOCK`. No matched value is ever logged or put in an exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import re2

from cisora_mesh._regex import compile_linear
from cisora_mesh.config import DlpAction
from cisora_mesh.errors import PatternError
from cisora_mesh.events import ContentKind, Finding, Severity, Verdict
from cisora_mesh.pipeline.base import ScanContext, ScanText
from cisora_mesh.pipeline.dlp_patterns import BUILTIN_DETECTORS, Detector

DETECTOR: Final = "dlp"
CUSTOM_DETECTOR: Final = "custom_dlp"
GENERIC_RULE: Final = "DLP-SECRET-GENERIC-ASSIGNMENT"
# A tenant's own regex has no validator behind it, so it claims less certainty than a validated built-in.
CUSTOM_CONFIDENCE: Final = 0.8

LEAVING_KINDS: Final = frozenset({ContentKind.OUTPUT, ContentKind.TOOL_ARGUMENTS})

_ACTION_VERDICT: Final = {
    DlpAction.ALERT: Verdict.ALLOW,
    DlpAction.REDACT: Verdict.REDACT,
    DlpAction.BLOCK: Verdict.BLOCK,
}

_RE2_MAX_MEM: Final = 64 << 20


def _set_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = _RE2_MAX_MEM
    return options


def custom_label(name: str) -> str:
    """Redaction label for a custom pattern: its name in upper case (`internal_api_token` -> INTERNAL_API_TOKEN)."""
    return name.upper().replace("-", "_")


class _Compiled:
    """One detector with its compiled regex and boundary sets (built once)."""

    __slots__ = ("bregex", "detector", "left", "regex", "right")

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.regex = compile_linear(detector.regex, name=detector.rule_id)
        # The bytes twin serves ASCII text (the common case): byte offsets are character offsets there, and the
        # str wrapper would otherwise convert UTF-8 offsets back to characters for every match.
        self.bregex = re2.compile(detector.regex.encode(), _set_options())
        self.left = frozenset(detector.left)
        self.right = frozenset(detector.right)


class DlpStage:
    """The inline output-DLP stage (see the module docstring for semantics)."""

    name = "dlp"

    def __init__(self, detectors: Sequence[Detector] = BUILTIN_DETECTORS) -> None:
        self._detectors = [_Compiled(d) for d in detectors]
        # One RE2 set over every built-in: a single pass says which detectors are worth running. The set is
        # built here rather than through `_regex.PatternSet` because that class treats `Set.Compile()`'s return
        # value as a success flag, and google-re2 1.1 returns None from it.
        self._set = re2.Set.SearchSet(_set_options())
        for detector in detectors:
            if self._set.Add(detector.regex) < 0:
                raise PatternError(f"{detector.rule_id}: rejected by the pattern set")
        self._set.Compile()

    @property
    def detectors(self) -> tuple[Detector, ...]:
        return tuple(c.detector for c in self._detectors)

    def run(self, ctx: ScanContext) -> None:
        settings = ctx.policy.dlp
        if not settings.enabled:
            return
        categories = frozenset(settings.categories)
        disabled = frozenset(settings.disabled_rules)
        action = _ACTION_VERDICT[settings.action]
        with_custom = bool(settings.custom_patterns)
        for scan_text in ctx.texts:
            if scan_text.derived is not None or not scan_text.match_text:
                continue
            self._scan(ctx, scan_text, categories, disabled, action, with_custom)

    def _scan(
        self,
        ctx: ScanContext,
        scan_text: ScanText,
        categories: frozenset[str],
        disabled: frozenset[str],
        action: Verdict,
        with_custom: bool,
    ) -> None:
        text = scan_text.match_text
        leaving = scan_text.kind in LEAVING_KINDS
        found: list[Finding] = []
        data: str | bytes = text.encode("ascii") if text.isascii() else text
        hits = self._set.Match(data)
        if hits:
            for index in sorted(hits):
                compiled = self._detectors[index]
                det = compiled.detector
                if det.category not in categories or det.rule_id in disabled:
                    continue
                verdict = action if (leaving or det.category == "secret") else Verdict.ALLOW
                for start, end, confidence in self._candidates(compiled, text, data):
                    orig_start, orig_end = scan_text.original_span(start, end)
                    found.append(
                        Finding(
                            detector=DETECTOR,
                            rule_id=det.rule_id,
                            category=det.category,
                            severity=det.severity,
                            confidence=confidence,
                            start=orig_start,
                            end=orig_end,
                            location=scan_text.location,
                            action=verdict,
                            label=det.label,
                        )
                    )
        if with_custom:
            found.extend(self._custom(ctx, scan_text, categories, disabled, action, leaving))
        if not found:
            return
        ctx.findings.extend(_drop_shadowed_generic(found))

    @staticmethod
    def _candidates(compiled: _Compiled, text: str, data: str | bytes) -> list[tuple[int, int, float]]:
        det = compiled.detector
        left, right = compiled.left, compiled.right
        out: list[tuple[int, int, float]] = []
        length = len(text)
        matches = compiled.bregex.finditer(data) if isinstance(data, bytes) else compiled.regex.finditer(data)
        for match in matches:
            start, end = match.span(det.group)
            if start < 0 or end <= start:
                continue
            if left and start > 0 and text[start - 1] in left:
                continue
            if right and end < length:
                nxt = text[end]
                # '.' right after a value is sentence punctuation unless a word character follows it.
                if nxt in right and not (nxt == "." and (end + 1 >= length or not text[end + 1].isalnum())):
                    continue
            factor = det.validator(text[start:end]) if det.validator is not None else 1.0
            if factor <= 0.0:
                continue
            out.append((start, end, round(det.confidence * min(factor, 1.0), 3)))
        return out

    @staticmethod
    def _custom(
        ctx: ScanContext,
        scan_text: ScanText,
        categories: frozenset[str],
        disabled: frozenset[str],
        action: Verdict,
        leaving: bool,
    ) -> list[Finding]:
        patterns = ctx.policy.dlp.custom_patterns
        out: list[Finding] = []
        for index, start, end in ctx.policy.custom_patterns.find(scan_text.match_text):
            pattern = patterns[index]
            rule_id = f"DLP-CUSTOM-{pattern.name}"
            if pattern.category not in categories or rule_id in disabled:
                continue
            verdict = action if (leaving or pattern.category == "secret") else Verdict.ALLOW
            orig_start, orig_end = scan_text.original_span(start, end)
            out.append(
                Finding(
                    detector=CUSTOM_DETECTOR,
                    rule_id=rule_id,
                    category=pattern.category,
                    severity=Severity(pattern.severity),
                    confidence=CUSTOM_CONFIDENCE,
                    start=orig_start,
                    end=orig_end,
                    location=scan_text.location,
                    action=verdict,
                    label=custom_label(pattern.name),
                )
            )
        return out


def _drop_shadowed_generic(found: list[Finding]) -> list[Finding]:
    """A `password=`/`secret=` match that overlaps a provider-specific finding adds nothing but noise."""
    generic = [f for f in found if f.rule_id == GENERIC_RULE]
    if not generic:
        return found
    specific = [(f.start, f.end) for f in found if f.rule_id != GENERIC_RULE and f.category == "secret"]
    if not specific:
        return found
    return [
        f
        for f in found
        if f.rule_id != GENERIC_RULE
        or not any(
            s is not None and e is not None and f.start is not None and f.end is not None and s < f.end and f.start < e
            for s, e in specific
        )
    ]
