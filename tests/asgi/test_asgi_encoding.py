"""Compressed bodies over real HTTP (uvicorn on loopback): decoded and scanned, never a way around the scanners."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from _asgi_support import INJECTION, TOKEN, chunks_of, client, middleware_of, serve
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from cisora_mesh.asgi import CisoraMiddleware
from cisora_mesh.asgi._encoding import DecodeError, Inflater, decoder_for

REDACTED = "[REDACTED:GITHUB_TOKEN]"


def chat(text: str) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": text}]}).encode()


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


async def echo(request: Request) -> Response:
    body = await request.body()
    h = request.headers
    return JSONResponse(
        {
            "received": body.decode(errors="replace"),
            "length": len(body),
            "content_length": h.get("content-length"),
            "content_encoding": h.get("content-encoding"),
            "accept_encoding": h.get("accept-encoding"),
        }
    )


async def gzip_json(request: Request) -> Response:
    # An app (or a proxy relaying an upstream) that compresses whatever the request asked for.
    body = gzip.compress(json.dumps({"answer": f"the token is {TOKEN}"}).encode())
    return Response(body, media_type="application/json", headers={"content-encoding": "gzip"})


async def gzip_stream(request: Request) -> Response:
    text = f"streamed start; token={TOKEN}; streamed end"
    c = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)

    async def gen() -> AsyncIterator[bytes]:
        for piece in chunks_of(text, 9):  # the token is split across several compressed chunks
            yield c.compress(piece.encode()) + c.flush(zlib.Z_SYNC_FLUSH)
        yield c.flush()

    return StreamingResponse(gen(), media_type="text/plain", headers={"content-encoding": "gzip"})


async def br_json(request: Request) -> Response:
    return Response(b"\x1b\x03\x00\xf8\xa5", media_type="application/json", headers={"content-encoding": "br"})


async def corrupt_gzip(request: Request) -> Response:
    return Response(b"\x1f\x8b\x08\x00garbage" * 4, media_type="application/json", headers={"content-encoding": "gzip"})


async def gzip_empty(request: Request) -> Response:
    return Response(b"", media_type="application/json", headers={"content-encoding": "gzip"})


async def leak(request: Request) -> Response:
    return JSONResponse({"answer": f"the token is {TOKEN}", "padding": "p" * 600})


ROUTES = [
    Route("/echo", echo, methods=["POST"]),
    Route("/gzip-json", gzip_json),
    Route("/gzip-stream", gzip_stream),
    Route("/br-json", br_json),
    Route("/corrupt-gzip", corrupt_gzip),
    Route("/leak", leak),
    Route("/gzip-empty", gzip_empty),
]


def app_with(**options: Any) -> Starlette:
    return Starlette(routes=ROUTES, middleware=[Middleware(CisoraMiddleware, max_body_bytes=64 << 10, **options)])


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve(app_with()) as base:
        yield base


@pytest.fixture(scope="module")
def lenient_url() -> Iterator[str]:
    with serve(app_with(unknown_encoding="unsafe_pass")) as base:
        yield base


def post(base: str, body: bytes, *headers: tuple[str, str]) -> httpx.Response:
    with httpx.Client(base_url=base, timeout=10) as c:
        return c.post("/echo", content=body, headers=[("content-type", "application/json"), *headers])


def assert_problem(resp: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = resp.json()
    assert body["type"] == f"urn:cisora:problem:{slug}"
    return body


# -- requests ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("coding", "encode"),
    [("gzip", gzip.compress), ("x-gzip", gzip.compress), ("deflate", zlib.compress), ("deflate", raw_deflate)],
)
def test_compressed_injection_is_blocked(url: str, coding: str, encode: Any) -> None:
    resp = post(url, encode(chat(INJECTION)), ("content-encoding", coding))
    assert_problem(resp, 403, "request-blocked")


@pytest.mark.parametrize(("coding", "encode"), [("gzip", gzip.compress), ("DEFLATE", zlib.compress)])
def test_compressed_secret_is_redacted_and_forwarded_decoded(url: str, coding: str, encode: Any) -> None:
    resp = post(url, encode(chat(f"my token {TOKEN} ok")), ("content-encoding", coding))
    assert resp.status_code == 200
    out = resp.json()
    assert json.loads(out["received"])["messages"][0]["content"] == f"my token {REDACTED} ok"
    # What the app gets is what was scanned: decoded, no coding left to decode, a length that matches.
    assert out["content_encoding"] is None
    assert int(out["content_length"]) == out["length"]
    assert TOKEN not in resp.text


def test_clean_compressed_body_reaches_the_app_decoded(url: str) -> None:
    body = chat("what is the weather like?")
    out = post(url, gzip.compress(body), ("content-encoding", "gzip")).json()
    assert out["received"].encode() == body
    assert (out["content_encoding"], int(out["content_length"])) == (None, len(body))


def test_every_gzip_member_is_scanned(url: str) -> None:
    # RFC 1952 section 2.2: a gzip body is a series of members. A decoder that stops after the first would scan
    # the harmless half and forward the rest.
    body = chat(f"harmless start. {INJECTION}")
    cut = body.index(b"Ignore")
    resp = post(url, gzip.compress(body[:cut]) + gzip.compress(body[cut:]), ("content-encoding", "gzip"))
    assert_problem(resp, 403, "request-blocked")


def test_repeated_content_encoding_fields_are_combined(url: str) -> None:
    # RFC 9110 section 5.3: two fields are one list. Reading only the first ("identity") would skip the gzip.
    resp = post(url, gzip.compress(chat(INJECTION)), ("content-encoding", "identity"), ("content-encoding", "gzip"))
    assert_problem(resp, 403, "request-blocked")


def test_zip_bomb_is_413_without_inflating_it(url: str) -> None:
    bomb = gzip.compress(b'{"messages": [{"role": "user", "content": "' + b"A" * (64 << 20) + b'"}]}')
    assert len(bomb) < 64 << 10  # small enough to pass the compressed-size limit: only the decoded cap stops it
    resp = post(url, bomb, ("content-encoding", "gzip"))
    assert_problem(resp, 413, "payload-too-large")


def test_decoded_cap_is_exact() -> None:
    # 1024 decoded bytes with a 1024-byte cap pass; 1025 do not (read asks for cap + 1 and stops there).
    for size, ok in ((1024, True), (1025, False)):
        inflater = Inflater("gzip")
        inflater.feed(gzip.compress(b"x" * size))
        assert (len(inflater.read(1025)) <= 1024) is ok


@pytest.mark.parametrize(
    "body",
    [
        b"\x1f\x8b\x08\x00not really gzip at all",  # corrupt
        gzip.compress(chat("hello"))[:-6],  # truncated: no trailer
        gzip.compress(chat("hello")) + b"trailing junk",  # not a second member
        b"x",
    ],
)
def test_corrupt_or_truncated_gzip_is_400(url: str, body: bytes) -> None:
    resp = post(url, body, ("content-encoding", "gzip"))
    assert_problem(resp, 400, "malformed-content-encoding")


def test_deflate_with_trailing_data_is_400(url: str) -> None:
    resp = post(url, zlib.compress(chat("hi")) + b"more", ("content-encoding", "deflate"))
    assert_problem(resp, 400, "malformed-content-encoding")


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip, gzip", "snappy"])
def test_unknown_or_stacked_coding_is_415_with_accept_encoding(url: str, coding: str) -> None:
    resp = post(url, b"\x00\x01opaque", ("content-encoding", coding))
    assert_problem(resp, 415, "unsupported-content-encoding")
    assert resp.headers["accept-encoding"] == "gzip, deflate"  # RFC 9110 section 12.5.3


def test_unknown_coding_passes_unread_only_when_configured_unsafe(lenient_url: str) -> None:
    resp = post(lenient_url, b"\x00\x01opaque", ("content-encoding", "br"))
    assert resp.status_code == 200
    assert resp.json()["content_encoding"] == "br"  # forwarded as it came, coding and all
    # gzip is still decoded and scanned in this mode
    blocked = post(lenient_url, gzip.compress(chat(INJECTION)), ("content-encoding", "gzip"))
    assert_problem(blocked, 403, "request-blocked")


# -- responses --------------------------------------------------------------------------------------------------


def test_app_sees_accept_encoding_identity(url: str) -> None:
    out = post(url, chat("hi"), ("accept-encoding", "gzip, br")).json()
    assert out["accept_encoding"] == "identity"


def test_response_compressed_by_the_app_anyway_is_decoded_and_redacted(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as c:
        resp = c.get("/gzip-json")
    assert resp.status_code == 200
    assert "content-encoding" not in resp.headers  # sent decoded: what was scanned
    assert resp.json() == {"answer": f"the token is {REDACTED}"}
    assert int(resp.headers["content-length"]) == len(resp.content)


def test_compressed_stream_split_secret_is_redacted(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as c, c.stream("GET", "/gzip-stream") as resp:
        assert "content-encoding" not in resp.headers
        text = "".join(resp.iter_text())
    assert text == f"streamed start; token={REDACTED}; streamed end"


def test_empty_coded_response_is_not_an_error(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as c:
        resp = c.get("/gzip-empty")
    assert (resp.status_code, resp.content) == (200, b"")


def test_response_in_unknown_coding_is_withheld(url: str, lenient_url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as c:
        assert_problem(c.get("/br-json"), 502, "response-unscannable")
        assert_problem(c.get("/corrupt-gzip"), 502, "response-unscannable")
    raw = httpx.get(f"{lenient_url}/br-json", headers={"accept-encoding": "identity"}, timeout=10)
    assert raw.status_code == 200  # unsafe_pass: forwarded unread (httpx cannot decode br here: read the bytes)


def test_gzip_middleware_inside_or_outside() -> None:
    inner = Starlette(routes=ROUTES, middleware=[Middleware(GZipMiddleware, minimum_size=100)])
    # inside: the app's own GZip sees "identity" and does not compress, so the response is scanned
    with serve(CisoraMiddleware(inner)) as base, httpx.Client(base_url=base, timeout=10) as c:
        resp = c.get("/leak")
        assert "content-encoding" not in resp.headers
        assert REDACTED in resp.text
        assert TOKEN not in resp.text
    # outside: GZip compresses what the middleware already scanned (the recommended placement)
    plain = Starlette(routes=ROUTES)
    with serve(GZipMiddleware(CisoraMiddleware(plain), minimum_size=100)) as base:
        with httpx.Client(base_url=base, timeout=10) as c:
            resp = c.get("/leak")
        assert resp.headers["content-encoding"] == "gzip"
        assert REDACTED in resp.text
        assert TOKEN not in resp.text


# -- the decoder ------------------------------------------------------------------------------------------------


def test_decoder_for() -> None:
    assert decoder_for("") is None
    assert decoder_for("identity") is None
    assert decoder_for(" GZip ") is not None
    for value in ("br", "gzip, deflate", "gzip,br"):
        with pytest.raises(LookupError):
            decoder_for(value)


@pytest.mark.parametrize("step", [1, 3, 64])
def test_inflater_chunked_input_and_bounded_reads(step: int) -> None:
    data = (b"0123456789" * 500) + TOKEN.encode()
    coded = gzip.compress(data[:2000]) + gzip.compress(data[2000:])  # two members
    inflater = Inflater("gzip")
    out = b""
    for i in range(0, len(coded), step):
        inflater.feed(coded[i : i + step])
        while piece := inflater.read(97):
            assert len(piece) <= 97
            out += piece
    inflater.finish()
    assert out == data


def test_inflater_truncated_finish_raises() -> None:
    inflater = Inflater("deflate")
    inflater.feed(zlib.compress(b"hello world" * 10)[:-3])
    inflater.read(10_000)
    with pytest.raises(DecodeError):
        inflater.finish()


async def test_stats_count_decoded_and_unscanned_bodies() -> None:
    app = app_with(unknown_encoding="unsafe_pass")
    async with client(app) as c:
        await c.post("/echo", content=gzip.compress(chat("hi")), headers={"content-encoding": "gzip"})
        await c.post("/echo", content=b"\x0b\x02\x80", headers={"content-encoding": "br"})
        await c.get("/gzip-json")
        await c.get("/br-json")
    stats = middleware_of(app).stats
    assert (stats.bodies_decoded, stats.unscanned_encoded) == (2, 2)
