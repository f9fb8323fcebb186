from __future__ import annotations

import time

import pytest

from cisora_mesh._regex import PatternSet, compile_linear
from cisora_mesh.errors import PatternError


def test_pattern_set_reports_every_match_with_character_offsets() -> None:
    patterns = PatternSet([r"\bcat\b", r"d[o0]g"], names=["cat", "dog"])
    text = "é cat and a d0g and a cat"
    assert patterns.matching(text) == [0, 1]
    assert list(patterns.find(text)) == [(0, 2, 5), (0, 22, 25), (1, 12, 15)]
    assert patterns.matching("nothing here") == []


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
