from __future__ import annotations

import time

import pytest

from cisora_mesh import _regex
from cisora_mesh._regex import PatternSet, SharedSet, compile_linear, first_span, iter_spans
from cisora_mesh.errors import PatternError


def test_pattern_set_reports_every_match_with_character_offsets() -> None:
    patterns = PatternSet([r"\bcat\b", r"d[o0]g"], names=["cat", "dog"])
    text = "é cat and a d0g and a cat"
    assert patterns.matching(text) == [0, 1]
    assert list(patterns.find(text)) == [(0, 2, 5), (0, 22, 25), (1, 12, 15)]
    assert patterns.matching("nothing here") == []


def test_shared_set_gives_each_table_its_own_indices_from_one_pass() -> None:
    shared = SharedSet([[r"\bcat\b", r"dog"], [r"bird", r"cat", r"fish"]])
    animals, pets = shared.slice(0), shared.slice(1)
    assert (len(animals), len(pets)) == (2, 3)
    memo: dict[object, list[int]] = {}
    assert animals.matching("a cat and a fish", memo) == [0]
    assert memo == {shared: [0, 3, 4]}  # one pass over both tables, kept for the other slice
    assert pets.matching("a cat and a fish", memo) == [1, 2]
    # The memo belongs to one text: a new text needs a new memo.
    assert pets.matching("a bird", {}) == [0]
    assert SharedSet([[], []]).slice(1).matching("anything", {}) == []


def test_stages_reject_a_prefilter_slice_of_another_table() -> None:
    from cisora_mesh.pipeline.stages.dlp import DlpStage
    from cisora_mesh.pipeline.stages.signatures import SignatureStage

    wrong = SharedSet([["a", "b"]]).slice(0)
    with pytest.raises(ValueError, match="signature table"):
        SignatureStage(prefilter=wrong)
    with pytest.raises(ValueError, match="detector table"):
        DlpStage(prefilter=wrong)


def _corpus() -> list[str]:
    """Texts dense in matches of the built-in tables (their own test examples, glued in twos and threes)."""
    from tests.pipeline.test_dlp_patterns import NEGATIVES, POSITIVES
    from tests.pipeline.test_signatures import CASES

    texts = [t for _, t, _ in POSITIVES] + [t for _, t in NEGATIVES] + [t for p in CASES.values() for t, _ in p]
    return texts + [" ".join(texts[i : i + 3]) for i in range(0, len(texts), 2)]


@pytest.mark.parametrize("fallback", [False, True], ids=["direct", "public-api"])
def test_span_helpers_agree_with_the_binding(monkeypatch: pytest.MonkeyPatch, fallback: bool) -> None:
    import re2

    from cisora_mesh.pipeline.dlp_patterns import BUILTIN_DETECTORS
    from cisora_mesh.pipeline.signatures import SIGNATURES

    if fallback:
        monkeypatch.setattr(_regex, "_UNANCHORED", None)
    tables = [(re2.compile(d.regex), d.group) for d in BUILTIN_DETECTORS] + [
        (re2.compile(s.pattern), 0) for s in SIGNATURES
    ]
    texts = [t.encode() for t in _corpus() if t.isascii()]
    assert len(texts) > 300
    found = 0
    for regex, group in tables:
        for data in texts:
            expected = [(m.start(), m.end(), *m.span(group)) for m in regex.finditer(data)]
            assert list(iter_spans(regex, data, group)) == expected
            first = regex.search(data)
            assert first_span(regex, data) == (None if first is None else first.span())
            found += len(expected)
    assert found > 1000  # the comparison saw real matches, not only misses


def test_span_helpers_use_character_offsets_for_non_ascii_text() -> None:
    regex = compile_linear(r"k[eé]y=\w+")
    text = "Grüße: kéy=abc, key=def"
    assert [text[s:e] for s, e, _, _ in iter_spans(regex, text)] == ["kéy=abc", "key=def"]
    assert first_span(regex, text) == (7, 14)


def test_empty_pattern_set_matches_nothing() -> None:
    assert PatternSet([]).matching("anything") == []
    assert list(PatternSet([]).find("anything")) == []


@pytest.mark.parametrize("pattern", ["(a+)+$", "(x+x+)+y", "(a|aa)+b", "(.*a){12}"])
def test_catastrophic_patterns_run_in_linear_time(pattern: str) -> None:
    compiled = compile_linear(pattern)
    text = "a" * 20_000 + "!"
    started = time.perf_counter()
    compiled.search(text)
    # Backtracking engines take exponential time here; RE2 is linear. The bound is generous for noisy machines
    # and only catches a catastrophic regression, the benchmark measures the real figure.
    assert time.perf_counter() - started < 1.0


def test_error_names_the_pattern_but_never_echoes_it() -> None:
    with pytest.raises(PatternError) as info:
        compile_linear("secret-value-(", name="custom pattern 'token'")
    assert "custom pattern 'token'" in str(info.value)
    assert "missing )" in str(info.value)


@pytest.mark.parametrize("bad", ["", None, 5])
def test_non_string_or_empty_patterns_are_rejected(bad: object) -> None:
    with pytest.raises(PatternError):
        compile_linear(bad)  # type: ignore[arg-type]


def test_seeking_finds_exactly_what_finditer_finds() -> None:
    """`iter_spans_seeking` is only an access path: on every text it must equal the plain scan, match for match."""
    import random

    from cisora_mesh._regex import iter_spans_seeking
    from cisora_mesh.pipeline.dlp_patterns import BUILTIN_DETECTORS

    seeking = [d for d in BUILTIN_DETECTORS if d.seek is not None]
    assert seeking  # the e-mail detector at least
    rng = random.Random(2)  # noqa: S311 - reproducible test texts, not secrets
    # Dense in the seek byte, the run characters and what ends a match: runs that fail, chained addresses,
    # a byte right after a match, runs reaching back to the previous match.
    alphabet = ["@", ".", "a", "b", "Z", "9", "-", "_", "+", "%", " ", "com", "example", "@x.org", "é", "\n"]
    texts = [t.encode() for t in _corpus()] + [
        "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 60))).encode() for _ in range(3000)
    ]
    found = 0
    for detector in seeking:
        regex = compile_linear(detector.regex, as_bytes=True)
        assert detector.seek is not None
        byte, run = detector.seek
        for data in texts:
            expected = list(iter_spans(regex, data, detector.group))
            assert list(iter_spans_seeking(regex, data, ord(byte), run.encode(), detector.group)) == expected
            found += len(expected)
    assert found > 500


def test_seeking_skips_the_whole_text_between_candidates() -> None:
    from cisora_mesh._regex import iter_spans_seeking

    regex = compile_linear(r"[a-z]+@[a-z]+\.org", as_bytes=True)
    data = b"x" * 10_000 + b" a@b.org @ c@ " + b"y" * 10_000 + b"d@e.org"
    spans = list(iter_spans_seeking(regex, data, ord("@"), b"abcdefghijklmnopqrstuvwxyz"))
    assert [data[s:e] for s, e, _, _ in spans] == [b"a@b.org", b"y" * 10_000 + b"d@e.org"]


def _builtin_patterns() -> list[str]:
    from cisora_mesh.pipeline.dlp_patterns import BUILTIN_DETECTORS
    from cisora_mesh.pipeline.signatures import SIGNATURES

    return [s.pattern for s in SIGNATURES] + [d.regex for d in BUILTIN_DETECTORS]


def test_a_pattern_matching_one_text_matches_the_joined_batch() -> None:
    """What makes `SharedSet.prime` sound: no built-in pattern loses a match when its text is joined to others.

    Each match is cut out as a text of its own (so anchors and boundaries sit right at the text's edges) and
    glued between neighbours that end and start with word characters, punctuation or spaces.
    """
    import re2

    from cisora_mesh._regex import BATCH_SEPARATOR

    neighbours = ["word", "end.", "x ", "", "12", "-"]
    checked = 0
    for pattern in _builtin_patterns():
        regex = re2.compile(pattern)
        for text in _corpus():
            for match in regex.finditer(text):
                alone = match.group()
                if not alone or regex.search(alone) is None:
                    continue
                for left in neighbours:
                    for right in neighbours:
                        batch = BATCH_SEPARATOR.join([left, alone, right])
                        assert regex.search(batch) is not None, (pattern[:60], alone[:60], left, right)
                        checked += 1
    assert checked > 10_000


def test_prime_answers_a_clean_batch_in_one_pass_and_leaves_a_hit_to_the_texts() -> None:
    from dataclasses import dataclass, field

    @dataclass
    class Text:
        match_text: str
        set_hits: dict[object, list[int]] = field(default_factory=dict)

    shared = SharedSet([[r"\bcat\b"], [r"(?m)^dog"]], batchable=True)
    clean = [Text("a bird"), Text("a fish"), Text("a dogma? no: a hotdog")]
    shared.prime(clean)
    assert [t.set_hits for t in clean] == [{shared: []}] * 3
    dirty = [Text("a bird"), Text("dog days"), Text("no")]
    shared.prime(dirty)
    assert [t.set_hits for t in dirty] == [{}, {}, {}]  # left to the per-text passes
    assert shared.slice(1).matching(dirty[1].match_text, dirty[1].set_hits) == [0]
    single = [Text("a cat")]
    shared.prime(single)
    assert single[0].set_hits == {}  # one text: its own pass is the batch pass
    # `^dog` matches "dog days" alone but not after a separator: a set nobody vouched for never batches.
    unvouched = SharedSet([[r"^dog"]])
    texts = [Text("a bird"), Text("dog days")]
    unvouched.prime(texts)
    assert [t.set_hits for t in texts] == [{}, {}]
    assert unvouched.slice(0).matching(texts[1].match_text, texts[1].set_hits) == [0]


def test_earliest_start_is_where_the_first_match_of_any_hit_pattern_starts() -> None:
    shared = SharedSet([[r"\bcat\b", r"dog"], [r"b[i1]rd"]])
    data = (b"x " * 600) + b"a dog, a cat and a bird" + (b" y" * 600)
    memo: dict[object, list[int]] = {}
    assert shared.earliest_start(data, memo) == 0  # first sight of this combination: no union yet
    memo = {}
    assert shared.earliest_start(data, memo) == data.index(b"dog")  # second sight: the union finds it
    assert shared.earliest_start(b"x" * 2000 + b" cat", {}) == 0  # one pattern hit: its own search suffices
    assert shared.earliest_start(b"short dog cat", {}) == 0  # below the text size worth a union search


def test_unions_are_capped_per_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_regex, "_MAX_UNIONS", 3)
    words = [f"w{i}x" for i in range(8)]
    shared = SharedSet([words])
    padding = b"." * 1100
    for i in range(7):
        text = padding + f" {words[i]} {words[i + 1]}".encode()
        for _ in range(2):
            shared.earliest_start(text, {})
    assert len(shared._unions) == 3  # later combinations keep searching from 0
    late = padding + f" {words[6]} {words[7]}".encode()
    assert shared.earliest_start(late, {}) == 0


def test_searching_from_the_earliest_start_finds_the_same_findings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Findings of the whole pipeline, on long texts glued from the detectors' own examples, with and without
    the union search: the same rules, spans and order."""
    from cisora_mesh.events import ContentKind, ContentScan
    from cisora_mesh.mesh import Mesh

    texts = [t for t in _corpus() if t.isascii()]
    long_texts = ["\n".join(texts[i : i + 12]) for i in range(0, len(texts), 5)]
    long_texts = [t for t in long_texts if len(t) >= 1024]
    assert len(long_texts) > 40
    mesh = Mesh()

    def findings(text: str) -> list[tuple[str, int | None, int | None]]:
        decision = mesh.evaluate(ContentScan(kind=ContentKind.TOOL_RESULT, text=text))
        return [(f.rule_id, f.start, f.end) for f in decision.findings]

    monkeypatch.setattr(_regex, "_UNION_MIN_TEXT", 10**9)
    expected = [findings(t) for t in long_texts]
    monkeypatch.setattr(_regex, "_UNION_MIN_TEXT", 1024)
    for text in long_texts:
        findings(text)  # first sight of each combination
    assert [findings(t) for t in long_texts] == expected
    assert sum(len(f) for f in expected) > 500
    assert any(u is not None for s in _shared_sets(mesh) for u in s._unions.values())


def _shared_sets(mesh: object) -> list[SharedSet]:
    from cisora_mesh.pipeline.stages.dlp import DlpStage

    stages = mesh.pipeline.stages  # type: ignore[attr-defined]
    return [stage._prefilter._shared for stage in stages if isinstance(stage, DlpStage)]


@pytest.mark.parametrize("fallback", [False, True], ids=["direct", "public-api"])
def test_span_helpers_start_where_they_are_told(monkeypatch: pytest.MonkeyPatch, fallback: bool) -> None:
    if fallback:
        monkeypatch.setattr(_regex, "_UNANCHORED", None)
    regex = compile_linear(r"\bkey=\w+", as_bytes=True)
    data = b"key=a xkey=b key=c key=d"
    for pos in range(len(data) + 1):
        expected = [(m.start(), m.end(), m.start(), m.end()) for m in regex.finditer(data, pos)]
        assert list(iter_spans(regex, data, 0, pos)) == expected
        first = regex.search(data, pos)
        assert first_span(regex, data, pos) == (None if first is None else first.span())
    assert first_span(regex, data, 1) == (13, 18)  # `\b` still sees the byte before `pos`: "xkey" is no match


def test_no_union_for_a_text_that_many_patterns_hit() -> None:
    words = [f"w{i}x" for i in range(_regex._MAX_UNION_PATTERNS + 1)]
    shared = SharedSet([words])
    text = b"." * 1100 + " ".join(words).encode()
    for _ in range(3):
        assert shared.earliest_start(text, {}) == 0
    assert shared._unions == {}  # compiling it would cost the inline path ~10 ms
