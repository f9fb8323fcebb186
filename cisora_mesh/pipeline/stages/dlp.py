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

from collections.abc import Callable, Iterator, Sequence
from typing import Final

from cisora_mesh._regex import SetSlice, SharedSet, compile_linear, iter_spans, iter_spans_seeking
from cisora_mesh.config import DlpAction
from cisora_mesh.events import ContentKind, Finding, Severity, Verdict
from cisora_mesh.pipeline.base import ScanContext, ScanText
from cisora_mesh.pipeline.dlp_patterns import BUILTIN_DETECTORS, Detector

DETECTOR: Final = "dlp"
CUSTOM_DETECTOR: Final = "custom_dlp"
GENERIC_RULE: Final = "DLP-SECRET-GENERIC-ASSIGNMENT"
# Context rules (a key name, a header scheme, a phone label, a national format) report a value that a specific,
# validated rule may also report. A weak finding that overlaps a stronger one of the same category adds nothing but
# a duplicate marker, so it is dropped (see `_drop_shadowed`).
WEAK_RULES: Final = frozenset(
    {
        GENERIC_RULE,
        "DLP-SECRET-GENERIC-KEY",
        "DLP-SECRET-BEARER-TOKEN",
        "DLP-SECRET-BASIC-AUTH",
        "DLP-PII-PHONE-LABELLED",
        "DLP-PII-NATIONAL-PHONE",
    }
)
# A tenant's own regex has no validator behind it, so it claims less certainty than a validated built-in.
CUSTOM_CONFIDENCE: Final = 0.8

LEAVING_KINDS: Final = frozenset({ContentKind.OUTPUT, ContentKind.TOOL_ARGUMENTS})

_ACTION_VERDICT: Final = {
    DlpAction.ALERT: Verdict.ALLOW,
    DlpAction.REDACT: Verdict.REDACT,
    DlpAction.BLOCK: Verdict.BLOCK,
}


def custom_label(name: str) -> str:
    """Redaction label for a custom pattern: its name in upper case (`internal_api_token` -> INTERNAL_API_TOKEN)."""
    return name.upper().replace("-", "_")


class _Compiled:
    """One detector with its compiled regex and boundary sets (built once)."""

    __slots__ = ("bregex", "detector", "left", "right", "seek")

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.bregex = compile_linear(detector.regex, name=detector.rule_id, as_bytes=True)
        # Boundary characters as byte values: matching runs on UTF-8 bytes (all boundary characters are ASCII).
        self.left = frozenset(detector.left.encode("ascii"))
        self.right = frozenset(detector.right.encode("ascii"))
        self.seek: tuple[int, bytes] | None = None
        if detector.seek is not None:
            byte, run = detector.seek
            if len(byte) != 1 or byte in run:
                raise ValueError(f"{detector.rule_id}: seek byte must be one character outside its run")
            self.seek = (ord(byte), run.encode("ascii"))

    def spans(self, data: bytes, pos: int) -> Iterator[tuple[int, int, int, int]]:
        """Match spans in `data` from `pos` on (the caller knows no match starts before it)."""
        if self.seek is None:
            return iter_spans(self.bregex, data, self.detector.group, pos)
        return iter_spans_seeking(self.bregex, data, *self.seek, self.detector.group, pos)


class DlpStage:
    """The inline output-DLP stage (see the module docstring for semantics)."""

    name = "dlp"

    def __init__(self, detectors: Sequence[Detector] = BUILTIN_DETECTORS, *, prefilter: SetSlice | None = None) -> None:
        """`prefilter`: this table's slice of a set shared with other stages (one pass per text for all)."""
        self._detectors = [_Compiled(d) for d in detectors]
        # One RE2 set over every built-in: a single pass says which detectors are worth running.
        if prefilter is not None and len(prefilter) != len(self._detectors):
            raise ValueError("prefilter slice does not match the detector table")
        self._prefilter = prefilter if prefilter is not None else SharedSet([[d.regex for d in detectors]]).slice(0)

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
        self._prefilter.prime(ctx.texts)
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
        hits = self._prefilter.matching(text, scan_text.set_hits)
        if not hits and not with_custom:
            return  # clean text, the common case: nothing more to do
        leaving = scan_text.kind in LEAVING_KINDS
        # Spans are found in UTF-8 bytes: for ASCII text (the common case) byte offsets are character offsets;
        # otherwise all candidate offsets are converted in one sorted sweep at the end. (The str interface of
        # the RE2 wrapper converts offsets per match, from the start of the text, which is quadratic.)
        is_ascii = text.isascii()
        data = text.encode("ascii") if is_ascii else text.encode("utf-8")
        raw: list[tuple[Detector, Verdict, int, int, float]] = []
        if hits:
            pos = self._prefilter.earliest_start(data, scan_text.set_hits) if is_ascii else 0
            for index in hits:
                compiled = self._detectors[index]
                det = compiled.detector
                if det.category not in categories or det.rule_id in disabled:
                    continue
                verdict = action if (leaving or det.category == "secret") else Verdict.ALLOW
                for start, end, confidence in self._candidates(compiled, data, pos, text if is_ascii else None):
                    raw.append((det, verdict, start, end, confidence))
        found: list[Finding] = []
        if raw:
            to_char = _identity if is_ascii else _byte_to_char(data, [o for r in raw for o in (r[2], r[3])])
            for det, verdict, start, end, confidence in raw:
                orig_start, orig_end = scan_text.original_span(to_char(start), to_char(end))
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
        ctx.findings.extend(_drop_shadowed(found))

    @staticmethod
    def _candidates(compiled: _Compiled, data: bytes, pos: int, text: str | None) -> list[tuple[int, int, float]]:
        """Validated `(start, end, confidence)` byte spans of one detector (none starts before `pos`). `text` is
        given when it is ASCII."""
        det = compiled.detector
        left, right = compiled.left, compiled.right
        out: list[tuple[int, int, float]] = []
        length = len(data)
        for _, _, start, end in compiled.spans(data, pos):
            if start < 0 or end <= start:
                continue
            if left and start > 0 and data[start - 1] in left:
                continue
            if right and end < length:
                nxt = data[end]
                # '.' right after a value is sentence punctuation unless a word character follows it.
                if nxt in right and not (nxt == _DOT and (end + 1 >= length or data[end + 1] not in _ALNUM)):
                    continue
            if det.validator is None:
                factor = 1.0
            else:
                factor = det.validator(text[start:end] if text is not None else data[start:end].decode("utf-8"))
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


_DOT: Final = ord(".")
# Bytes that count as a word character after a '.': ASCII letters/digits and any UTF-8 byte of a non-ASCII char.
_ALNUM: Final = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") | frozenset(
    range(0x80, 0x100)
)


def _identity(offset: int) -> int:
    return offset


def _byte_to_char(data: bytes, offsets: list[int]) -> Callable[[int], int]:
    """Map UTF-8 byte offsets (all on character boundaries, as RE2 reports them) to character offsets in one
    sorted sweep, decoding each stretch of bytes once."""
    table: dict[int, int] = {}
    prev_byte = prev_char = 0
    for offset in sorted(set(offsets)):
        prev_char += len(data[prev_byte:offset].decode("utf-8"))
        prev_byte = offset
        table[offset] = prev_char
    return table.__getitem__


def _drop_shadowed(found: list[Finding]) -> list[Finding]:
    """Drop each weak (context-rule) finding that overlaps a kept finding of the same category.

    Specific rules are always kept; weak findings are then considered by descending confidence, so of two weak
    rules reporting the same value (a labelled national phone number) only the more confident one stays. The
    original order of the findings is preserved.
    """
    weak = [i for i, f in enumerate(found) if f.rule_id in WEAK_RULES]
    if not weak:
        return found
    kept = [f for f in found if f.rule_id not in WEAK_RULES]
    dropped: set[int] = set()
    for i in sorted(weak, key=lambda i: -found[i].confidence):
        finding = found[i]
        if any(k.category == finding.category and _overlaps(finding, (k.start, k.end)) for k in kept):
            dropped.add(i)
        else:
            kept.append(finding)
    return [f for i, f in enumerate(found) if i not in dropped]


def _overlaps(finding: Finding, span: tuple[int | None, int | None]) -> bool:
    start, end = span
    if start is None or end is None or finding.start is None or finding.end is None:
        return False
    return start < finding.end and finding.start < end
