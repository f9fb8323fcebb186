from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import pytest
from audit_testutil import make_record
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cisora_mesh.audit import open_store
from cisora_mesh.audit.keys import public_pem
from cisora_mesh.cli import audit as audit_cli
from cisora_mesh.cli._common import CliError


def run(argv: list[str]) -> int:
    """What the main entry point does: parse with our `register`, run the handler, map CliError to one line."""
    parser = argparse.ArgumentParser(prog="cisora-mesh")
    audit_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except CliError as exc:
        print(f"cisora-mesh: error: {exc}", file=__import__("sys").stderr)
        return exc.exit_code


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    with open_store(None, data_dir=tmp_path, checkpoint_every=10) as store:
        store.append_many([make_record(i) for i in range(23)])
    return tmp_path


def _one_line(err: str) -> None:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err


def test_verify_intact_and_tampered(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["audit", "verify", "--data-dir", str(data_dir)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["intact"] is True
    assert report["size"] == 23
    conn = sqlite3.connect(data_dir / "audit.db")
    conn.execute(
        "UPDATE entries SET entry = CAST(replace(CAST(entry AS TEXT), 'agent-1', 'agent-9') AS BLOB) WHERE idx = 4"
    )
    conn.commit()
    conn.close()
    assert run(["audit", "verify", "--data-dir", str(data_dir)]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["intact"] is False
    assert report["first_bad_index"] == 4
    _one_line(captured.err)


def test_verify_with_public_key_file_and_wrong_key(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["audit", "public-key", "--data-dir", str(data_dir)]) == 0
    pem = capsys.readouterr().out
    key_file = tmp_path / "audit.pub"
    key_file.write_text(pem)
    store_url = f"sqlite:///{data_dir / 'audit.db'}"
    auditor_dir = tmp_path / "auditor"  # no keys here: only the public key file is trusted
    assert (
        run(["audit", "verify", "--store", store_url, "--data-dir", str(auditor_dir), "--public-key", str(key_file)])
        == 0
    )
    capsys.readouterr()
    wrong = tmp_path / "wrong.pub"
    wrong.write_bytes(public_pem(Ed25519PrivateKey.generate().public_key()))
    assert (
        run(["audit", "verify", "--store", store_url, "--data-dir", str(auditor_dir), "--public-key", str(wrong)]) == 1
    )
    captured = capsys.readouterr()
    assert json.loads(captured.out)["bad_checkpoint"] == 10
    _one_line(captured.err)
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
    assert run(["audit", "verify", "--store", store_url, "--public-key", str(garbage)]) == 2
    _one_line(capsys.readouterr().err)


def test_verify_missing_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["audit", "verify", "--store", f"sqlite:///{tmp_path}/nope.db", "--data-dir", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    _one_line(captured.err)
    assert "not found" in captured.err
    assert run(["audit", "verify", "--store", "ftp://x", "--data-dir", str(tmp_path)]) == 2
    _one_line(capsys.readouterr().err)


def test_prove_and_check_offline(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["audit", "prove", "--index", "21", "--data-dir", str(data_dir)]) == 0
    proof = json.loads(capsys.readouterr().out)
    assert proof["index"] == 21
    assert proof["tree_size"] == 23  # the checkpoint signed when the writing store closed
    proof_file = tmp_path / "proof.json"
    proof_file.write_text(json.dumps(proof))
    run(["audit", "public-key", "--data-dir", str(data_dir)])
    key_file = tmp_path / "k.pub"
    key_file.write_text(capsys.readouterr().out)
    assert run(["audit", "prove", "--check", str(proof_file), "--public-key", str(key_file)]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True

    bad_cases = {
        "not-json": "{",
        "not-object": "[]",
        "bad-index-type": json.dumps({**proof, "index": "21"}),
        "wrong-index": json.dumps({**proof, "index": 20}),
        "short-path": json.dumps({**proof, "path": proof["path"][:-1]}),
        "bad-base64": json.dumps({**proof, "path": ["@@@", *proof["path"][1:]]}),
        "corrupted-checkpoint": json.dumps({**proof, "checkpoint": proof["checkpoint"].replace("\n23\n", "\n24\n")}),
        "missing-checkpoint": json.dumps({k: v for k, v in proof.items() if k != "checkpoint"}),
        "other-entry": json.dumps({**proof, "entry": "eyJ4IjoxfQ=="}),
    }
    for name, text in bad_cases.items():
        bad = tmp_path / f"{name}.json"
        bad.write_text(text)
        assert run(["audit", "prove", "--check", str(bad), "--public-key", str(key_file)]) == 1, name
        _one_line(capsys.readouterr().err)
    assert run(["audit", "prove", "--index", "99", "--data-dir", str(data_dir)]) == 2
    _one_line(capsys.readouterr().err)
    assert run(["audit", "prove", "--data-dir", str(data_dir)]) == 2
    _one_line(capsys.readouterr().err)
    assert run(["audit", "prove", "--check", str(proof_file)]) == 2  # offline check needs a key
    _one_line(capsys.readouterr().err)


def test_checkpoint_sign_and_check(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["audit", "checkpoint", "--data-dir", str(data_dir)]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[1] == "23"
    cp_file = tmp_path / "cp.txt"
    cp_file.write_text(text)
    run(["audit", "public-key", "--data-dir", str(data_dir)])
    key_file = tmp_path / "k.pub"
    key_file.write_text(capsys.readouterr().out)
    assert run(["audit", "checkpoint", "--check", str(cp_file), "--public-key", str(key_file)]) == 0
    assert json.loads(capsys.readouterr().out)["size"] == 23
    # A kept checkpoint must still match when the auditor verifies later.
    assert run(["audit", "verify", "--data-dir", str(data_dir), "--checkpoint", str(cp_file)]) == 0
    capsys.readouterr()
    corrupted = tmp_path / "bad.txt"
    corrupted.write_text(text.replace("\n23\n", "\n22\n"))
    assert run(["audit", "checkpoint", "--check", str(corrupted), "--public-key", str(key_file)]) == 1
    _one_line(capsys.readouterr().err)
    corrupted.write_text("garbage")
    assert run(["audit", "checkpoint", "--check", str(corrupted), "--public-key", str(key_file)]) == 1
    _one_line(capsys.readouterr().err)
    assert run(["audit", "verify", "--data-dir", str(data_dir), "--checkpoint", str(corrupted)]) == 1
    _one_line(capsys.readouterr().err)


def test_export_tail_public_key(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "log.jsonl"
    assert run(["audit", "export", "--data-dir", str(data_dir), "--out", str(out)]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sum(1 for x in lines if x["type"] == "entry") == 23
    assert [x["size"] for x in lines if x["type"] == "checkpoint"] == [10, 20, 23]  # 23: signed on close
    capsys.readouterr()
    assert run(["audit", "export", "--data-dir", str(data_dir)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 27  # log line, 3 checkpoints, 23 entries
    assert run(["audit", "tail", "-n", "3", "--data-dir", str(data_dir)]) == 0
    tail = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [t["index"] for t in tail] == [20, 21, 22]
    assert tail[-1]["record"]["decision_id"] == "d-22"
    assert run(["audit", "public-key", "--all", "--data-dir", str(data_dir)]) == 0
    assert capsys.readouterr().out.count("BEGIN PUBLIC KEY") == 1
    assert run(["audit", "export", "--data-dir", str(data_dir), "--out", str(tmp_path / "no" / "dir" / "x")]) == 2
    _one_line(capsys.readouterr().err)


def test_bare_audit_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["audit"]) == 2
    assert "verify" in capsys.readouterr().err


def test_verify_an_export_file_offline(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "log.jsonl"
    assert run(["audit", "export", "--data-dir", str(data_dir), "--out", str(out)]) == 0
    run(["audit", "public-key", "--data-dir", str(data_dir)])
    key_file = tmp_path / "k.pub"
    key_file.write_text(capsys.readouterr().out)
    assert run(["audit", "verify", "--export", str(out), "--public-key", str(key_file)]) == 0
    assert json.loads(capsys.readouterr().out)["signed_size"] == 23
    lines = out.read_bytes().splitlines()
    out.write_bytes(b"\n".join(x.replace(b"d-17", b"d-71") for x in lines) + b"\n")
    assert run(["audit", "verify", "--export", str(out), "--public-key", str(key_file)]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["first_bad_index"] == 17
    _one_line(captured.err)
    assert run(["audit", "verify", "--export", str(out)]) == 2  # offline needs a key
    _one_line(capsys.readouterr().err)
    assert run(["audit", "verify", "--export", str(tmp_path / "none.jsonl"), "--public-key", str(key_file)]) == 2
    _one_line(capsys.readouterr().err)


def test_consistency_proof_since_a_kept_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from audit_testutil import SqliteRaw, rewrite_suffix

    home = tmp_path / "home"
    with open_store(None, data_dir=home, checkpoint_every=1000) as store:
        store.append_many([make_record(i) for i in range(11)])
    assert run(["audit", "checkpoint", "--data-dir", str(home)]) == 0
    kept = tmp_path / "kept.txt"
    kept.write_text(capsys.readouterr().out)
    with open_store(None, data_dir=home, checkpoint_every=1000) as store:
        store.append_many([make_record(i) for i in range(11, 40)])
    run(["audit", "public-key", "--data-dir", str(home)])
    key_file = tmp_path / "k.pub"
    key_file.write_text(capsys.readouterr().out)

    assert run(["audit", "prove", "--since", str(kept), "--data-dir", str(home)]) == 0
    proof = json.loads(capsys.readouterr().out)
    assert (proof["old_size"], proof["new_size"]) == (11, 40)
    proof_file = tmp_path / "consistency.json"
    proof_file.write_text(json.dumps(proof))
    assert run(["audit", "prove", "--check", str(proof_file), "--public-key", str(key_file)]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True
    for name, bad in {
        "bit-flip": {
            **proof,
            "path": [
                proof["path"][0].replace(proof["path"][0][0], "A" if proof["path"][0][0] != "A" else "B", 1),
                *proof["path"][1:],
            ],
        },
        "size": {**proof, "old_size": 12},
        "no-old-checkpoint": {k: v for k, v in proof.items() if k != "old_checkpoint"},
        "path-not-list": {**proof, "path": "x"},
    }.items():
        bad_file = tmp_path / f"{name}.json"
        bad_file.write_text(json.dumps(bad))
        assert run(["audit", "prove", "--check", str(bad_file), "--public-key", str(key_file)]) == 1, name
        _one_line(capsys.readouterr().err)

    # Rewrite entries 13.. consistently (chain, leaves, head): the newest signed checkpoint (40) no longer
    # matches the stored leaves, so no proof can be produced.
    with open_store(None, data_dir=home, checkpoint_every=1000, checkpoint_on_close=False) as store:
        raw = SqliteRaw(home / "audit.db")
        try:
            rewrite_suffix(raw, store)
        finally:
            raw.conn.close()
    assert run(["audit", "prove", "--since", str(kept), "--data-dir", str(home)]) == 1
    _one_line(capsys.readouterr().err)
    raw = SqliteRaw(home / "audit.db")
    try:
        raw.execute("DELETE FROM checkpoints WHERE size > 11")
        entry = raw.query("SELECT entry FROM entries WHERE idx = 3")[0][0]
        from cisora_mesh.audit.merkle import leaf_hash

        changed = bytes(entry).replace(b"agent-0", b"agent-2")
        raw.execute("UPDATE entries SET entry = ?, leaf_hash = ? WHERE idx = 3", (changed, leaf_hash(changed)))
    finally:
        raw.conn.close()
    # Entry 3 is inside the kept range: the stored leaves no longer give the kept root.
    assert run(["audit", "prove", "--since", str(kept), "--data-dir", str(home)]) == 1
    _one_line(capsys.readouterr().err)
