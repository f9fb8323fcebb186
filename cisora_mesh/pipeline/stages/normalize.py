"""Normalisation and hidden-content detection: the first stage of every pipeline.

Attackers hide instructions from humans and from naive matchers with characters that render as nothing or as
something else. This stage turns each content of the event into a `ScanText` whose `match_text` is what later
stages search, and reports what it removed:

- NFKC (Unicode TR15) folds compatibility forms: fullwidth letters, ligatures, mathematical alphanumerics.
- Confusables (Unicode TR39 idea, a curated subset) and Latin diacritics fold to ASCII, so `іgnоrе` (Cyrillic
  і/о/е) and `ïgnöre` both read `ignore` to the matchers. Stray combining marks (Zalgo text) are dropped.
- Zero-width characters, invisible fillers and bidi controls (the Trojan Source characters, CVE-2021-42574) are
  removed from `match_text`; zero-width characters inside words and bidi embeddings/overrides/isolates are findings.
- Unicode tag characters U+E0000..U+E007F mirror ASCII invisibly (the "ASCII smuggling" technique). Runs of them are
  decoded into a separate derived `ScanText` that every later stage scans too; findings in it point at the run.
  Emoji subdivision flags (U+1F3F4 followed by lowercase tag letters and CANCEL TAG) are legitimate and ignored.
- ANSI escape sequences (ECMA-48 CSI/OSC/ESC) can hide or rewrite text in a terminal; they are removed and reported.

ASCII text without ESC, the common case, takes a fast path that copies nothing. Other text without hidden
characters or escapes, whose every non-ASCII character folds to exactly one character (accented and non-Latin
prose), is folded by substituting each distinct character once over the whole text, keeping every offset; only
the rest walks the text run by run.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from cisora_mesh.events import Content, ContentKind, Finding, Severity, Verdict
from cisora_mesh.pipeline.base import OffsetMap, ScanContext, ScanText

DETECTOR: Final = "hidden_content"

# Runs the slow path has to look at: any non-ASCII run, or one ANSI escape sequence (CSI, OSC, or a 2-byte ESC).
_SPECIAL: Final = re.compile(r"[^\x00-\x7f]+|\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])?")

_ZERO_WIDTH: Final = frozenset("\u200b\u200c\u200d\u2060\ufeff\u180e\u00ad\u034f\u2061\u2062\u2063\u2064")
_INVISIBLE_FILLERS: Final = frozenset("\u115f\u1160\u3164\uffa0\u17b4\u17b5")
_BIDI_CONTROLS: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_BIDI_MARKS: Final = frozenset("\u200e\u200f\u061c")  # LRM/RLM/ALM: normal in right-to-left text, not reported
# Any character the careful loop must look at one by one.
_HIDDEN: Final = re.compile(
    "[" + "".join(sorted(_ZERO_WIDTH | _INVISIBLE_FILLERS | _BIDI_CONTROLS | _BIDI_MARKS)) + "\U000e0000-\U000e007f]"
)
_HIDDEN_CHARS: Final = _ZERO_WIDTH | _INVISIBLE_FILLERS | _BIDI_CONTROLS | _BIDI_MARKS
_ASCII_BYTES: Final = bytes(range(0x80))
# Above this many distinct characters to substitute, one `str.translate` beats one `str.replace` per character.
_MAX_REPLACES: Final = 24
_TAG_FIRST: Final = 0xE0000
_TAG_LAST: Final = 0xE007F
_CANCEL_TAG: Final = 0xE007F
_BLACK_FLAG: Final = "\U0001f3f4"
# Findings of one kind closer than this many characters are reported as one span (one obfuscated word, say).
_MERGE_GAP: Final = 4

# Letters that look like ASCII letters (a curated subset of Unicode's confusables.txt for Cyrillic, Greek and
# a few Latin lookalikes; NFKC already handles fullwidth and mathematical forms).
_CONFUSABLES: Final[dict[str, str]] = {
    **dict(zip("аеорсухіјѕԁԛԝһӏвкмнтАВЕКМНОРСТХІЈЅ", "aeopcyxijsdqwhlbkmhtABEKMHOPCTXIJS", strict=True)),
    **dict(zip("αβεικνορτυχωΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "abeiknoptuxwABEZHIKMNOPTYX", strict=True)),
    "ı": "i",
    "ȷ": "j",
    "ɡ": "g",
    "ɑ": "a",
    "ℓ": "l",
    "∕": "/",
    "⁄": "/",
    "‐": "-",
    "‑": "-",
    "‒": "-",
    "–": "-",
    "—": "-",
    "‘": "'",
    "’": "'",
    "“": '"',
    "”": '"',
    "\u00a0": " ",
    "\u2028": "\n",
    "\u2029": "\n",
}

_FOLD_CACHE: dict[str, str] = {}


def fold_char(char: str) -> str:
    """The matching form of one character (NFKC, then confusables and diacritics folded to ASCII)."""
    cached = _FOLD_CACHE.get(char)
    if cached is not None:
        return cached
    out: list[str] = []
    for ch in unicodedata.normalize("NFKC", char):
        if ch.isascii():
            out.append(ch)
        elif ch in _CONFUSABLES:
            out.append(_CONFUSABLES[ch])
        elif unicodedata.combining(ch):
            continue  # a stray combining mark (Zalgo text) carries no meaning for matching
        else:
            decomposed = unicodedata.normalize("NFD", ch)
            base = decomposed[0]
            if base.isascii() and all(unicodedata.combining(mark) for mark in decomposed[1:]):
                out.append(base)  # é -> e
            else:
                out.append(ch)
    folded = "".join(out)
    if len(_FOLD_CACHE) < 65536:
        _FOLD_CACHE[char] = folded
    return folded


def _is_word(char: str) -> bool:
    return char.isalnum()


def _fold_in_place(text: str) -> str | None:
    """`text` folded for matching when folding keeps every offset, else None (the caller takes the slow path).

    That holds when no character is hidden content (those are removed and reported) and every non-ASCII character
    folds to exactly one character. The distinct non-ASCII characters are found without a Python-level loop over
    the text (delete the ASCII bytes from its UTF-8 form), and each is substituted once across the whole text.
    """
    special = set(text.encode("utf-8", "surrogatepass").translate(None, _ASCII_BYTES).decode("utf-8", "surrogatepass"))
    changes: dict[str, str] = {}
    for char in special:
        if char in _HIDDEN_CHARS or _TAG_FIRST <= ord(char) <= _TAG_LAST:
            return None
        folded = _FOLD_CACHE.get(char)
        if folded is None:
            folded = fold_char(char)
        if len(folded) != 1:
            return None
        if folded != char:
            changes[char] = folded
    if len(changes) > _MAX_REPLACES:
        return text.translate({ord(c): f for c, f in changes.items()})
    for char, folded in changes.items():
        text = text.replace(char, folded)
    return text


class NormalizeStage:
    """Builds `ctx.texts` from the event's contents and reports hidden content."""

    name = "normalize"

    def run(self, ctx: ScanContext) -> None:
        for content in ctx.event.contents():
            text = content.text
            if "\x1b" not in text:
                folded = text if text.isascii() else _fold_in_place(text)
                if folded is not None:
                    ctx.texts.append(ScanText(content=content, match_text=folded))
                    continue
            self._slow_path(ctx, content)

    def _slow_path(self, ctx: ScanContext, content: Content) -> None:
        text = content.text
        parts: list[str] = []
        offsets = OffsetMap()
        first_derived = len(ctx.texts)
        pos = 0
        for match in _SPECIAL.finditer(text):
            start, end = match.span()
            if start > pos:
                parts.append(text[pos:start])
                offsets.copy(pos, start - pos)
            if text[start] == "\x1b":
                self._report(ctx, content, "HC-ANSI-001", "ansi_escape", start, end, Severity.MEDIUM)
            else:
                self._fold_run(ctx, content, start, end, parts, offsets)
            pos = end
        if pos < len(text):
            parts.append(text[pos:])
            offsets.copy(pos, len(text) - pos)
        # The content itself goes before the texts derived from it while folding.
        ctx.texts.insert(first_derived, ScanText(content=content, match_text="".join(parts), offsets=offsets))

    def _fold_run(
        self, ctx: ScanContext, content: Content, start: int, end: int, parts: list[str], offsets: OffsetMap
    ) -> None:
        text = content.text
        run = text[start:end]
        if _HIDDEN.search(run) is None:
            # Common case (accented or non-Latin prose): fold character by character through the cache; when no
            # character changes length the offsets are a plain range.
            cache = _FOLD_CACHE
            folded = [cache.get(c) or fold_char(c) for c in run]
            joined = "".join(folded)
            parts.append(joined)
            if len(joined) == len(run):
                offsets.copy(start, end - start)
            else:
                for i, piece in enumerate(folded, start):
                    offsets.piece(i, piece)
            return
        i = start
        while i < end:
            char = text[i]
            code = ord(char)
            if _TAG_FIRST <= code <= _TAG_LAST:
                i = self._tag_run(ctx, content, i, end)
                continue
            if char in _ZERO_WIDTH or char in _INVISIBLE_FILLERS:
                inside_word = 0 < i < len(text) - 1 and _is_word(text[i - 1]) and _is_word(text[i + 1])
                if inside_word or char in _INVISIBLE_FILLERS:
                    self._report(ctx, content, "HC-ZW-001", "zero_width", i, i + 1, Severity.MEDIUM)
            elif char in _BIDI_CONTROLS:
                self._report(ctx, content, "HC-BIDI-001", "bidi_control", i, i + 1, Severity.MEDIUM)
            elif char not in _BIDI_MARKS:
                piece = fold_char(char)
                if piece:
                    parts.append(piece)
                    offsets.piece(i, piece)
            i += 1

    def _tag_run(self, ctx: ScanContext, content: Content, start: int, limit: int) -> int:
        """Handle the run of tag characters at `start`; return the index after it."""
        text = content.text
        end = start
        while end < limit and _TAG_FIRST <= ord(text[end]) <= _TAG_LAST:
            end += 1
        run = text[start:end]
        is_flag = (
            start > 0
            and text[start - 1] == _BLACK_FLAG
            and ord(run[-1]) == _CANCEL_TAG
            and all("a" <= chr(ord(c) - _TAG_FIRST) <= "z" or "0" <= chr(ord(c) - _TAG_FIRST) <= "9" for c in run[:-1])
        )
        if is_flag:
            return end
        decoded_chars: list[str] = []
        decoded_offsets = OffsetMap()
        for j, char in enumerate(run):
            value = ord(char) - _TAG_FIRST
            if 0x20 <= value < 0x7F or value in (0x09, 0x0A, 0x0D):
                decoded_chars.append(chr(value))
                decoded_offsets.piece(start + j, chr(value))
        action = Verdict(ctx.policy.injection.hidden_content_action)
        self._report(ctx, content, "HC-TAG-001", "unicode_tags", start, end, Severity.HIGH, action=action)
        if decoded_chars:
            derived = Content(kind=content.kind, text=content.text, location=content.location)
            ctx.texts.append(
                ScanText(
                    content=derived, match_text="".join(decoded_chars), offsets=decoded_offsets, derived="unicode_tags"
                )
            )
        return end

    @staticmethod
    def _report(
        ctx: ScanContext,
        content: Content,
        rule_id: str,
        what: str,
        start: int,
        end: int,
        severity: Severity,
        *,
        action: Verdict | None = None,
    ) -> None:
        if action is None:
            # Outside tool descriptions these characters have legitimate uses (RTL text, emoji, terminals), so
            # they are recorded; inside a tool description nobody needs them and they are enforced.
            enforce = content.kind is ContentKind.TOOL_DESCRIPTION
            action = Verdict(ctx.policy.injection.hidden_content_action) if enforce else Verdict.ALLOW
        # Merge a run of identical findings (e.g. ten zero-width characters in a row) into one span.
        last = ctx.findings[-1] if ctx.findings else None
        if (
            last is not None
            and last.rule_id == rule_id
            and last.location == content.location
            and last.end is not None
            and start - last.end <= _MERGE_GAP
        ):
            ctx.findings[-1] = Finding(
                detector=DETECTOR,
                rule_id=rule_id,
                category="hidden_content",
                severity=severity,
                confidence=last.confidence,
                start=last.start,
                end=end,
                location=content.location,
                action=action,
                label=what,
            )
            return
        ctx.add(
            Finding(
                detector=DETECTOR,
                rule_id=rule_id,
                category="hidden_content",
                severity=severity,
                confidence=0.9,
                start=start,
                end=end,
                location=content.location,
                action=action,
                label=what,
            )
        )
