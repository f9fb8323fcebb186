from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from audit_testutil import TAMPER_CASES, TamperCase, check_detected, fill, make_record

from cisora_mesh.audit import AuditStore, StoreError, open_store
from cisora_mesh.audit.backends.postgres import PostgresBackend

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.postgres

DSN = os.environ.get("CISORA_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def _admin() -> Any:
    try:
        return psycopg.connect(DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server answers at CISORA_TEST_POSTGRES_DSN/{DSN}: {str(exc).strip()[:120]}")


def _with_user(dsn: str, user: str, schema: str) -> str:
    # postgresql://postgres@host:port/db -> postgresql://<user>@host:port/db?schema=<schema>
    rest = dsn.split("://", 1)[1]
    hostpart = rest.split("@", 1)[1] if "@" in rest else rest
    sep = "&" if "?" in hostpart else "?"
    return f"postgresql://{user}@{hostpart}{sep}schema={schema}"


class PgEnv:
    """A unique schema and roles for this test, dropped afterwards."""

    def __init__(self) -> None:
        self.admin = _admin()
        self.run = uuid.uuid4().hex[:10]
        self.schema = f"audit_test_{self.run}"
        self.app = f"cisora_app_{self.run}"
        self.readers: list[str] = []
        db = self.admin.execute("SELECT current_database()").fetchone()[0]
        self.admin.execute(f'CREATE ROLE "{self.app}" LOGIN')
        self.admin.execute(f'GRANT CREATE ON DATABASE "{db}" TO "{self.app}"')
        self.url = _with_user(DSN, self.app, self.schema)

    def reader(self, tenant: str) -> str:
        role = f"cisora_reader_{tenant}_{self.run}"
        self.admin.execute(f'CREATE ROLE "{role}" NOLOGIN')
        self.readers.append(role)
        return role

    def cleanup(self) -> None:
        self.admin.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        for role in [*self.readers, self.app]:
            self.admin.execute(f'DROP OWNED BY "{role}" CASCADE')
            self.admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        self.admin.close()


@pytest.fixture
def pg() -> Iterator[PgEnv]:
    env = PgEnv()
    try:
        yield env
    finally:
        env.cleanup()


class PgRaw:
    def __init__(self, env: PgEnv) -> None:
        self.conn = psycopg.connect(DSN, autocommit=True)
        self.conn.execute(f'SET search_path TO "{env.schema}"')

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql.replace("?", "%s"), params).fetchall()

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self.conn.execute(sql.replace("?", "%s"), params)


def test_append_proofs_and_verify(pg: PgEnv, tmp_path: Path) -> None:
    with open_store(pg.url, data_dir=tmp_path, checkpoint_every=10) as store:
        assert store.append_many([]) == []
        assert store.append_many([make_record(i) for i in range(25)]) == list(range(25))
        assert [cp.size for cp in store.checkpoints()] == [10, 20]
        cp = store.checkpoint()
        store.inclusion_proof(7, cp.size).verify(cp.root)
        old = store.checkpoints()[0]
        store.consistency_proof(old.size, cp.size).verify(old.root, cp.root)
        assert store.tail(2)[-1]["index"] == 24
        assert store.verify().ok


def test_row_level_security_isolates_tenants(pg: PgEnv, tmp_path: Path) -> None:
    with open_store(pg.url, data_dir=tmp_path, checkpoint_every=5) as store:
        store.append_many([make_record(i, tenant="alpha" if i % 2 else "beta") for i in range(20)])
        backend = store.backend
        assert isinstance(backend, PostgresBackend)
        role_a, role_b = pg.reader("alpha"), pg.reader("beta")
        backend.grant_tenant_reader(role_a, "alpha")
        backend.grant_tenant_reader(role_b, "beta")
    conn = psycopg.connect(DSN, autocommit=True)
    try:
        conn.execute(f'SET ROLE "{role_a}"')
        tables = ["entries", "checkpoints", "head", "meta", "tenant_readers"]
        seen = {t: conn.execute(f'SELECT * FROM "{pg.schema}".{t}').fetchall() for t in tables}  # noqa: S608
        assert len(seen["entries"]) == 10
        assert {r[1] for r in seen["entries"]} == {"alpha"}
        assert all(b"beta" not in bytes(r[2]) for r in seen["entries"])
        assert seen["head"] == []
        assert seen["meta"] == []
        assert seen["tenant_readers"] == [(role_a, "alpha")]
        assert all("beta" not in r[3] for r in seen["checkpoints"])  # signed heads carry no tenant data
        # Even asking for beta explicitly returns nothing.
        n = conn.execute(f"SELECT count(*) FROM \"{pg.schema}\".entries WHERE tenant = 'beta'").fetchone()[0]  # noqa: S608
        assert n == 0
        # Readers cannot write either.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"DELETE FROM \"{pg.schema}\".entries WHERE tenant = 'alpha'")  # noqa: S608
        conn.execute("RESET ROLE")
        conn.execute(f'SET ROLE "{role_b}"')
        rows = conn.execute(f'SELECT tenant FROM "{pg.schema}".entries').fetchall()  # noqa: S608
        assert {r[0] for r in rows} == {"beta"}
        assert len(rows) == 10
    finally:
        conn.close()


_WORKER = """
import sys
from pathlib import Path
from cisora_mesh.audit import AuditRecord, open_store
url, data_dir, name, n = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
with open_store(url, data_dir=data_dir, checkpoint_every=50) as store:
    for i in range(0, n, 10):
        store.append_many([AuditRecord(tenant=name, decision_id=f"{name}-{j}") for j in range(i, i + 10)])
"""


def test_concurrent_processes_leave_no_gaps_or_forks(pg: PgEnv, tmp_path: Path) -> None:
    with open_store(pg.url, data_dir=tmp_path, checkpoint_every=50):
        pass  # create the schema once so the workers only race on appends (setup races are covered too)
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, pg.url, str(tmp_path), f"w{w}", "150"]) for w in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    with open_store(pg.url, data_dir=tmp_path, checkpoint_every=50) as store:
        assert store.size() == 600
        report = store.verify()
        assert report.ok, report
        assert report.signed_size == 600
        sizes = {cp.size for cp in store.checkpoints()}
        assert set(range(50, 601, 50)) <= sizes  # every multiple of 50, plus those signed as workers closed
        tenants = [t for _i, t, _e, _h in store.backend.iter_entries()]
        assert sorted(tenants.count(f"w{w}") for w in range(4)) == [150] * 4


@pytest.mark.parametrize("case", TAMPER_CASES, ids=lambda c: c.name)
def test_tampering_postgres_is_detected(pg: PgEnv, tmp_path: Path, case: TamperCase) -> None:
    store: AuditStore
    with open_store(pg.url, data_dir=tmp_path, checkpoint_every=10) as store:
        fill(store)
        raw = PgRaw(pg)
        try:
            case.apply(raw, store)
        finally:
            raw.conn.close()
        check_detected(store, case)


def test_bad_urls(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="schema"):
        open_store("postgresql://postgres@127.0.0.1:1/test?schema=Bad-Name", data_dir=tmp_path)
    with pytest.raises(StoreError, match="cannot connect"):
        open_store("postgresql://postgres@127.0.0.1:1/test", data_dir=tmp_path)


def test_server_side_entry_encoding_matches_python(pg: PgEnv, tmp_path: Path) -> None:
    from cisora_mesh.audit import AuditRecord
    from cisora_mesh.audit.merkle import leaf_hash
    from cisora_mesh.audit.record import encode_entry

    tenants = ['quo"te\\back', "ünï-cødé", "emoji-\U0001f600", "ctl-\x01\t", "</script>", ""]
    with open_store(pg.url, data_dir=tmp_path, checkpoint_every=4) as store:
        records = [AuditRecord(tenant=t, agent=f"a-{t}", rule_ids=("r\u2028",)) for t in tenants * 2]
        assert store.append_many(records) == list(range(12))
        prev = b""
        for (idx, tenant, entry, lh), rec in zip(store.backend.iter_entries(), records, strict=True):
            want = encode_entry(idx, prev, rec.canonical(), rec.tenant)
            assert entry == want
            assert tenant == rec.tenant
            assert lh == leaf_hash(want)
            prev = lh
        assert [cp.size for cp in store.checkpoints()] == [4, 8, 12]
        assert store.verify().ok
