"""`cisora-mesh token ...` driven in-process through the real console entry point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _cap_support import NOW

from capability import SigningKey, make_pop
from cisora_mesh.cli import main

CAP = '{"res":"mcp://files/tools/*","act":["call"],"args":{"/path":[{"op":"prefix","value":"/srv/"}]}}'
NARROW = '{"res":"mcp://files/tools/read_file","act":["call"],"args":{"/path":[{"op":"prefix","value":"/srv/pub/"}]}}'


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(["token", *argv])  # the real console entry point
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture
def keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    files = {}
    for name in ("anchor", "alice", "bob"):
        path = tmp_path / f"{name}.jwk"
        code, out, _ = run(["keygen", "--out", str(path)], capsys)
        assert code == 0
        public = json.loads(out)
        assert "d" not in public
        assert public["kty"] == "OKP"
        assert path.stat().st_mode & 0o777 == 0o600
        (tmp_path / f"{name}.pub").write_text(out)
        files[name] = path
        files[name + "_pub"] = tmp_path / f"{name}.pub"
    return files


def issue_and_attenuate(keys: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    code, out, err = run(
        [
            "issue",
            "--key",
            str(keys["anchor"]),
            "--holder",
            str(keys["alice_pub"]),
            "--aud",
            "proxy",
            "--cap",
            CAP,
            "--budget",
            "5",
            "--now",
            str(NOW),
        ],
        capsys,
    )
    assert code == 0, err
    root = out.strip()
    code, out, err = run(
        [
            "attenuate",
            "--token",
            root,
            "--key",
            str(keys["alice"]),
            "--holder",
            str(keys["bob_pub"]),
            "--cap",
            NARROW,
            "--ttl",
            "600",
            "--budget",
            "2",
            "--now",
            str(NOW),
        ],
        capsys,
    )
    assert code == 0, err
    return root, out.strip()


def test_full_flow(keys: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    _, child = issue_and_attenuate(keys, capsys)
    code, out, _ = run(["inspect", child], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["verified"] is False
    assert len(report["links"]) == 2
    assert report["links"][1]["claims"]["budget"] == 2
    base = [
        "verify",
        child,
        "--trust",
        str(keys["anchor_pub"]),
        "--aud",
        "proxy",
        "--resource",
        "mcp://files/tools/read_file",
        "--now",
        str(NOW + 1),
    ]
    code, out, err = run([*base, "--args", '{"path":"/srv/pub/a"}'], capsys)
    assert code == 0, err
    assert json.loads(out)["budget"] == 2
    code, out, err = run([*base, "--args", '{"path":"/etc/passwd"}'], capsys)
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert "not_granted" in err
    bob = SigningKey.from_jwk(json.loads(keys["bob"].read_text()))
    pop = make_pop(
        bob,
        child,
        method="call",
        resource="mcp://files/tools/read_file",
        args={"path": "/srv/pub/a"},
        audience="proxy",
        now=NOW + 1,
    )
    code, _, err = run([*base, "--args", '{"path":"/srv/pub/a"}', "--pop", pop], capsys)
    assert code == 0, err


def test_verify_failures_exit_1(keys: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = issue_and_attenuate(keys, capsys)
    base = ["--aud", "proxy", "--resource", "mcp://files/tools/x", "--args", '{"path":"/srv/a"}']
    code, _, err = run(["verify", root, "--trust", str(keys["bob_pub"]), *base, "--now", str(NOW)], capsys)
    assert code == 1
    assert "unknown_issuer" in err
    code, _, err = run(["verify", root, "--trust", str(keys["anchor_pub"]), *base, "--now", str(NOW + 4000)], capsys)
    assert code == 1
    assert "expired" in err
    code, _, err = run(["verify", "garbage", "--trust", str(keys["anchor_pub"]), *base], capsys)
    assert code == 1


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["issue", "--aud", "x"],
        ["issue", "--key", "/nonexistent.jwk", "--holder", "AAAA", "--aud", "p", "--cap", CAP],
        ["inspect", "not-a-token"],
        ["verify", "x", "--trust", "not-base64!", "--aud", "p", "--resource", "mcp://a/tools/b"],
        ["issue", "--key", "{key}", "--holder", "{pub}", "--aud", "p", "--cap", "{not json"],
        ["issue", "--key", "{key}", "--holder", "{pub}", "--aud", "p", "--cap", '{"res":"http://x","act":["call"]}'],
        [
            "issue",
            "--key",
            "{key}",
            "--holder",
            "{pub}",
            "--aud",
            "p",
            "--cap",
            '{"res":"mcp://a/tools/b","act":["call"],"args":{"/p":[{"op":"regex","pattern":"(a"}]}}',
        ],
        ["issue", "--key", "{key}", "--holder", "{pub}", "--aud", "p", "--cap", CAP, "--ttl", "soon"],
        ["issue", "--key", "{pub}", "--holder", "{pub}", "--aud", "p", "--cap", CAP],
        [
            "attenuate",
            "--token",
            "{token}",
            "--key",
            "{key}",
            "--holder",
            "{pub}",
            "--cap",
            '{"res":"mcp://*/tools/*","act":["call"]}',
        ],
        ["attenuate", "--token", "{token}", "--key", "{alice}", "--holder", "{pub}", "--budget", "50"],
        ["verify", "{token}", "--trust", "{pub}", "--aud", "p", "--resource", "mcp://a/tools/b", "--args", "[1"],
        ["keygen", "--out", "{key}"],
    ],
)
def test_bad_input_exit_2(argv: list[str], keys: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = issue_and_attenuate(keys, capsys)
    subst = {
        "{key}": str(keys["anchor"]),
        "{alice}": str(keys["alice"]),
        "{pub}": str(keys["alice_pub"]),
        "{token}": root,
    }
    code, out, err = run([subst.get(a, a) for a in argv], capsys)
    assert code == 2, (out, err)
    assert err.count("\n") == 1
    assert "error" in err
