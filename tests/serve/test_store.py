"""The service database, API keys and the prediction log (visor.serve.db, keys, predictions)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable

from storage_backends import run_together  # tests/storage_backends.py
from visor.errors import ConfigError, InvalidInput, VisorError
from visor.serve.db import Base, PredictionRow, ServiceDB, default_db_url
from visor.serve.keys import ApiKey, KeyExists, KeyNotFound, KeyStore, hash_key
from visor.serve.predictions import PredictionLog

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(db_url):
    """A fresh database, once on SQLite and once on PostgreSQL (see the ``db_url`` fixture)."""
    d = ServiceDB(db_url)
    yield d
    d.close()


@pytest.fixture
def sqlite_db(tmp_path):
    d = ServiceDB(f"sqlite:///{tmp_path / 'serve.db'}")
    yield d
    d.close()


# --------------------------------------------------------------------------- db


def test_default_url_follows_visor_home(tmp_path, monkeypatch):
    home = tmp_path / "home" / "visor"
    monkeypatch.setenv("VISOR_HOME", os.fspath(home))
    assert default_db_url() == f"sqlite:///{home / 'serve.db'}"
    assert home.is_dir()  # the folder is created, the file only when opened
    assert not (home / "serve.db").exists()
    with ServiceDB() as d:
        assert d.url == f"sqlite:///{home / 'serve.db'}"
    assert (home / "serve.db").is_file()


def test_default_url_without_visor_home(tmp_path, monkeypatch):
    monkeypatch.delenv("VISOR_HOME", raising=False)
    monkeypatch.setenv("HOME", os.fspath(tmp_path))
    assert default_db_url() == f"sqlite:///{tmp_path / '.local/share/visor/serve.db'}"
    assert (tmp_path / ".local/share/visor").is_dir()


def test_import_has_no_side_effects(tmp_path):
    env = {**os.environ, "VISOR_HOME": os.fspath(tmp_path / "vh"), "HOME": os.fspath(tmp_path)}
    code = "import visor.serve.db, visor.serve.keys, visor.serve.review, visor.serve.predictions"
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_sqlite_pragmas_wal_busy_timeout_foreign_keys(sqlite_db, tmp_path):
    with sqlite_db.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    # WAL is a property of the file: a plain sqlite3 connection sees it too
    con = sqlite3.connect(tmp_path / "serve.db")
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        con.close()
    assert tables == {"api_keys", "aws_keys", "review_items", "predictions", "events"}


def test_bare_path_and_in_memory(tmp_path):
    with ServiceDB(os.fspath(tmp_path / "sub" / "x.db")) as d:
        assert d.url == f"sqlite:///{tmp_path / 'sub' / 'x.db'}"
        KeyStore(d).create("a")
    assert (tmp_path / "sub" / "x.db").is_file()
    with ServiceDB("sqlite://") as d:  # one shared in-memory database across threads
        KeyStore(d).create("a")
        seen = []
        t = threading.Thread(target=lambda: seen.append(KeyStore(d).count_active()))
        t.start()
        t.join()
        assert seen == [1]


def test_bad_urls_are_config_errors():
    with pytest.raises(ConfigError, match="not a database URL"):
        ServiceDB("nosuchdialect://:::")
    with pytest.raises(ConfigError, match="cannot open database"):
        ServiceDB("nosuchdialect://host/db")


def test_schema_compiles_for_postgresql():
    ddl = {t.name: str(CreateTable(t).compile(dialect=postgresql.dialect())) for t in Base.metadata.sorted_tables}
    assert set(ddl) == {"api_keys", "aws_keys", "review_items", "predictions", "events"}
    assert "BYTEA" in ddl["review_items"] and "BYTEA" in ddl["aws_keys"]
    assert "TIMESTAMP WITH TIME ZONE" in ddl["predictions"]


def test_session_rolls_back_on_error(db):
    with pytest.raises(RuntimeError), db.session() as s:
        s.add(PredictionRow(created_at=datetime.now(UTC), route="/r", model="m", image_sha256="h",
                            result="{}", latency_ms=1.0))
        s.flush()
        raise RuntimeError("boom")
    assert PredictionLog(db).count() == 0


# --------------------------------------------------------------------------- keys


def test_keys_are_stored_only_hashed(db, tmp_path):
    store = KeyStore(db)
    record, key = store.create("ci-runner")
    assert key.startswith("visor_") and len(key) == len("visor_") + 43
    assert record == ApiKey(record.id, "ci-runner", key[:12], record.created_at, False)
    assert record.created_at.tzinfo is UTC
    assert abs(datetime.now(UTC) - record.created_at) < timedelta(minutes=1)
    with db.session(write=False) as s:  # the table as stored
        rows = [tuple(r) for r in s.execute(text("SELECT name, prefix, key_sha256, revoked_at FROM api_keys"))]
    assert rows == [("ci-runner", key[:12], hash_key(key), None)]
    assert hash_key(key) == __import__("hashlib").sha256(key.encode()).hexdigest()
    db.close()
    if db.engine.dialect.name != "sqlite":
        return
    # SQLite: read the whole file directly, the plaintext is nowhere
    con = sqlite3.connect(tmp_path / "serve.db")
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    secret = key[12:].encode()
    for f in tmp_path.iterdir():
        assert secret not in f.read_bytes(), f


def test_verify_and_revoke(db):
    store = KeyStore(db)
    a, key_a = store.create("alice")
    b, key_b = store.create("bob")
    assert key_a != key_b
    assert store.verify(key_a) == a and store.verify(key_b) == b
    for bad in (None, "", "visor_nope", key_a + "x", key_a[:-1], key_a.upper()):
        assert store.verify(bad) is None
    assert store.count_active() == 2
    revoked = store.revoke("alice")
    assert revoked.revoked and revoked.name == "alice" and revoked.id == a.id
    assert store.verify(key_a) is None and store.verify(key_b) == b
    assert store.count_active() == 1
    assert store.revoke("alice") == revoked  # again: no change
    assert [(k.name, k.revoked) for k in store.list()] == [("alice", True), ("bob", False)]


def test_duplicate_and_unknown_names(db):
    store = KeyStore(db)
    _, old_key = store.create("ci-runner")
    with pytest.raises(KeyExists, match="already exists") as e:
        store.create("ci-runner")
    assert e.value.http_status == 409 and e.value.code == "key_exists" and isinstance(e.value, VisorError)
    with pytest.raises(KeyNotFound) as e:
        store.revoke("ci-runer")
    assert e.value.http_status == 404 and str(e.value) == "no key named 'ci-runer'. Did you mean 'ci-runner'?"
    with pytest.raises(KeyNotFound, match=r"^no key named 'zz'$"):
        store.revoke("zz")
    store.revoke("ci-runner")
    again, new_key = store.create("ci-runner")  # a revoked name can be reused; the old key stays dead
    assert not again.revoked and store.verify(new_key) == again and store.verify(old_key) is None
    assert [k.name for k in store.list()] == ["ci-runner"]
    for bad in ("", "   ", "a\nb", "x" * 256):
        with pytest.raises(InvalidInput):
            store.create(bad)


def test_keys_survive_reopen(db_url):
    with ServiceDB(db_url) as d:
        rec, key = KeyStore(d).create("k")
    with ServiceDB(db_url) as d:
        assert KeyStore(d).verify(key) == rec


# --------------------------------------------------------------------------- prediction log


def test_prediction_log_and_retention(db):
    log = PredictionLog(db)
    for i in range(5):
        log.log(route="/v1/classify", model="efficientnet_lite0", image_sha256=f"{i:064x}",
                result={"predictions": [{"label": "tench", "confidence": 0.9}]}, latency_ms=12.5, key_name="ci")
    assert log.count() == 5
    now = datetime.now(UTC)
    ages = [timedelta(days=40), timedelta(days=31), timedelta(days=29), timedelta(hours=1), timedelta(0)]
    with db.session() as s:
        for row_id, age in zip(range(1, 6), ages, strict=True):
            s.execute(update(PredictionRow).where(PredictionRow.id == row_id).values(created_at=now - age))
    assert log.purge(timedelta(days=30)) == 2
    assert log.count() == 3
    assert log.purge(timedelta(days=30)) == 0
    assert log.purge(timedelta(minutes=30)) == 2
    assert log.count() == 1
    with db.session(write=False) as s:
        rows = s.execute(text("SELECT route, key_name, latency_ms, result FROM predictions ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [("/v1/classify", "ci", 12.5,
                                         '{"predictions": [{"label": "tench", "confidence": 0.9}]}')]
    with pytest.raises(InvalidInput):
        log.purge(timedelta(days=-1))


def test_concurrent_writers_do_not_fail(db_url):
    """Threads reading then writing, each on its own engine: never 'locked' (SQLite: BEGIN IMMEDIATE + busy
    timeout), never a lost update or a serialization error (PostgreSQL)."""
    from visor.serve.review import ReviewQueue

    url = db_url
    with ServiceDB(url) as d:
        queue = ReviewQueue(d)
        ids = [queue.add(image=b"\xff\xd8\xffdata", filename=f"{i}.jpg", media_type="image/jpeg", model="m",
                         task="classify", prediction={"predictions": [{"label": "a", "confidence": 0.1}]},
                         labels=["a", "b"], reason="sample") for i in range(8)]
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            with ServiceDB(url) as d:  # each thread a separate engine, as separate processes would be
                q, log, keys = ReviewQueue(d), PredictionLog(d), KeyStore(d)
                for k in range(15):
                    q.decide(ids[(n + k) % len(ids)], "correct" if k % 2 else "accept",
                             "b" if k % 2 else None, reviewer=f"r{n}")
                    log.log(route="/v1/classify", model="m", image_sha256="h", result={}, latency_ms=1.0,
                            key_name=None)
                    keys.create(f"t{n}-{k}")
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with ServiceDB(url) as d:
        assert PredictionLog(d).count() == 60
        assert KeyStore(d).count_active() == 60
        assert ReviewQueue(d).counts()["reviewed"] == 8


def test_everything_survives_a_restart(db_url):
    """Keys, review items with their images and decisions, and the log, through a new engine on the same
    database (a restarted or second server); datetimes come back timezone-aware UTC on both backends."""
    from visor.serve.review import ReviewQueue

    backend = db_url.split(":", 1)[0]
    with ServiceDB(db_url) as d:
        assert d.engine.dialect.name == backend
        rec, key = KeyStore(d).create("pg")
        item = ReviewQueue(d).add(image=b"\xff\xd8\xffx", filename="a.jpg", media_type="image/jpeg", model="m",
                                  task="classify", prediction={"predictions": [{"label": "a", "confidence": 0.1}]},
                                  labels=["a", "b"], reason="sample")
        ReviewQueue(d).decide(item, "correct", "b")
        PredictionLog(d).log(route="/r", model="m", image_sha256="h", result={}, latency_ms=1.0, key_name="pg")
    with ServiceDB(db_url) as d:  # a restart
        assert KeyStore(d).verify(key) == rec and rec.created_at.tzinfo is UTC
        got = ReviewQueue(d).get(item)
        assert (got.status, got.label) == ("corrected", "b") and got.decided_at.tzinfo is UTC
        assert got.created_at.tzinfo is UTC and got.created_at <= got.decided_at
        assert ReviewQueue(d).image(item) == (b"\xff\xd8\xffx", "image/jpeg")
        assert PredictionLog(d).purge(timedelta(0)) == 1


@pytest.mark.filterwarnings("error::sqlalchemy.exc.SAWarning")  # the old code: "DELETE ... 0 were matched"
@pytest.mark.parametrize("revoked_before", [False, True])
def test_racing_key_creations_under_one_name(db_url, revoked_before):
    """Six engines create the same key name at once (over a revoked key of that name, or none): one key
    comes out, every other call is a KeyExists (409), never another error."""
    with ServiceDB(db_url) as d:
        if revoked_before:
            KeyStore(d).create("shared")
            KeyStore(d).revoke("shared")
    barrier = threading.Barrier(6)
    made: list[str] = []
    refused: list[str] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with ServiceDB(db_url) as d:
                store = KeyStore(d)
                store.count_active()  # connect first, so the creations start together
                barrier.wait(10)
                made.append(store.create("shared")[1])
        except KeyExists as e:
            refused.append(str(e))
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(made) == 1 and len(refused) == 5
    with ServiceDB(db_url) as d:
        store = KeyStore(d)
        assert [(k.name, k.revoked) for k in store.list()] == [("shared", False)]
        assert store.verify(made[0]) is not None


def test_services_start_together_on_a_new_database(db_url):
    """Six engines open one new database at once, as replicas starting together would: each creates the
    tables if missing. The old code failed: 'database is locked' (SQLite) or a duplicate pg_type row
    (PostgreSQL, two CREATE TABLE at once)."""
    def open_once() -> None:
        with ServiceDB(db_url) as d:
            KeyStore(d).count_active()

    errors = run_together(open_once)
    assert errors == []
    with ServiceDB(db_url) as d, d.engine.connect() as c:
        assert set(d.engine.dialect.get_table_names(c)) == {"api_keys", "aws_keys", "review_items", "predictions",
                                                            "events"}


def test_switching_to_wal_is_retried_while_the_new_file_is_locked(monkeypatch):
    """Several connections opening a new file at once: ``PRAGMA journal_mode=WAL`` may answer
    'database is locked' without waiting on the busy timeout (2 in 900 openings here); it is retried
    until it succeeds, and any other error, or a lock outlasting the timeout, is raised."""
    import visor.serve.db as db_mod

    class Cursor:
        def __init__(self, failures: list[str]):
            self.failures, self.calls = failures, 0

        def execute(self, sql: str):
            assert sql == "PRAGMA journal_mode=WAL"
            self.calls += 1
            if self.failures:
                raise sqlite3.OperationalError(self.failures.pop(0))

    monkeypatch.setattr(db_mod.time, "sleep", lambda s: None)
    cursor = Cursor(["database is locked", "database is locked"])
    db_mod._switch_to_wal(cursor)
    assert cursor.calls == 3
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        db_mod._switch_to_wal(Cursor(["disk I/O error"]))
    monkeypatch.setattr(db_mod, "WAL_SWITCH_TIMEOUT_S", 0.0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        db_mod._switch_to_wal(Cursor(["database is locked"]))
