from __future__ import annotations

import itertools

import pytest
from _asgi_support import TOKEN

from cisora_mesh.asgi._stream import StreamRedactor
from cisora_mesh.events import Decision, ModelOutput, Subject, Verdict
from cisora_mesh.mesh import Mesh
from cisora_mesh.pipeline.runner import decide

MESH = Mesh()
TEXT = f"alpha {TOKEN} beta AKIAZ7Q3K4XJ2M5N8P6R gamma é ünï {TOKEN}"
EXPECTED = "alpha [REDACTED:GITHUB_TOKEN] beta [REDACTED:AWS_ACCESS_KEY] gamma é ünï [REDACTED:GITHUB_TOKEN]"


def scan(text: str) -> Decision:
    event = ModelOutput(text=text)
    ctx, timings = MESH.pipeline.run(event, MESH.policy_for("default"))
    return decide(ctx, timings)


def run(pieces: list[bytes], holdback: int = 48) -> tuple[str, StreamRedactor]:
    r = StreamRedactor(scan, holdback=holdback)
    out = [r.feed_bytes(p) for p in pieces]
    out.append(r.finish())
    return "".join(out), r


def test_one_chunk() -> None:
    out, r = run([TEXT.encode()])
    assert out == EXPECTED
    assert r.verdict is Verdict.REDACT
    assert sorted(f.start for f in r.findings) == [6, 52, TEXT.rindex(TOKEN)]


def test_every_two_way_split_of_the_bytes() -> None:
    data = TEXT.encode()  # splits inside multi-byte characters included
    for i in range(1, len(data)):
        out, _ = run([data[:i], data[i:]])
        assert out == EXPECTED, i


def test_three_way_splits_through_the_first_secret() -> None:
    data = TEXT.encode()
    start = TEXT.index(TOKEN)
    for i, j in itertools.combinations(range(start - 2, start + len(TOKEN) + 2, 3), 2):
        out, _ = run([data[:i], data[i:j], data[j:]])
        assert out == EXPECTED, (i, j)


@pytest.mark.parametrize("size", [1, 2, 5, 13])
def test_byte_at_a_time_and_small_chunks_release_progressively(size: int) -> None:
    data = TEXT.encode()
    r = StreamRedactor(scan, holdback=48)
    released = [r.feed_bytes(data[i : i + size]) for i in range(0, len(data), size)]
    assert any(released)  # text is released before the stream ends ...
    assert len(r.pending) <= 48 + size  # ... and memory stays bounded by the hold-back window
    assert "".join(released) + r.finish() == EXPECTED
    assert len({(f.rule_id, f.start) for f in r.findings}) == 3


def test_secret_longer_than_the_window_is_the_documented_limit() -> None:
    # With a window shorter than the secret, a split can release a prefix before the pattern is complete.
    data = f"xxxxxxxxxxxxxxxxxxxx {TOKEN} yyyy".encode()
    out, _ = run([data[:30], data[30:]], holdback=4)
    assert "ghp_1" in out
    assert "[REDACTED" not in out


def test_invalid_holdback() -> None:
    with pytest.raises(ValueError, match="holdback"):
        StreamRedactor(scan, holdback=0)


def test_block_stops_release() -> None:
    def blocking(text: str) -> Decision:
        verdict = Verdict.BLOCK if "STOP" in text else Verdict.ALLOW
        return Decision(
            event_id="e",
            event_type="model.output",
            subject=Subject(),
            verdict=verdict,
        )

    r = StreamRedactor(blocking, holdback=4)
    assert r.feed("hello world") == "hello w"
    assert r.feed("orld STOP") == ""
    assert r.blocked
    assert r.feed("more") == ""
