"""The store's own rules: DATABASE_URL parsing and redaction, migrations (upgrading a database made
before migrations existed, `make db-migrate`, the advisory lock) and the pool's bounds."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from cruddur import create_app
from cruddur.config import BACKEND_DIR, Config
from cruddur.store import open_store
from cruddur.store.dialect import Database
from cruddur.store.migrations import ADVISORY_LOCK_KEY, VERSIONS, migrate, version_ids

LEGACY_SCHEMA = (Path(str(VERSIONS)) / "0001.initial-schema.sql").read_text()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@db:5432/cruddur", "postgresql://u:p@db:5432/cruddur"),
        ("postgres://u:p@db/cruddur?sslmode=require", "postgresql://u:p@db/cruddur?sslmode=require"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_database_url_schemes(url, expected):
    assert Config.from_env({"DATABASE_URL": url}).database == expected


def test_other_schemes_are_refused_and_the_default_is_sqlite():
    with pytest.raises(ValueError):
        _ = Config.from_env({"DATABASE_URL": "mysql://u:p@db/cruddur"}).database
    assert Config.from_env({}).database == f"sqlite:///{BACKEND_DIR / 'instance' / 'cruddur-development.db'}"


def test_pool_size_and_timeouts():
    assert Config.from_env({}).pool_size == 1
    assert Config.from_env({"GUNICORN_THREADS": "4"}).pool_size == 4
    config = Config.from_env(
        {
            "GUNICORN_THREADS": "4",
            "DATABASE_POOL_SIZE": "2",
            "DATABASE_CONNECT_TIMEOUT": "3",
            "DATABASE_STATEMENT_TIMEOUT": "1.5",
        }
    )
    assert (config.pool_size, config.database_connect_timeout, config.database_statement_timeout) == (2, 3.0, 1.5)


def test_redacted_url_and_cleaned_text_never_hold_the_password():
    database = Database.parse("postgresql://app:p%40ss-w0rd@db.example:6432/cruddur?sslmode=require&password=x")
    assert database.redacted == "postgresql://app@db.example:6432/cruddur"
    assert database.password == "p@ss-w0rd"
    assert database.clean("auth failed for p@ss-w0rd and p%40ss-w0rd") == "auth failed for *** and ***"
    assert database.yoyo_url.startswith("postgresql+psycopg://app:")


def test_a_sqlite_database_made_before_migrations_adopts_them_unchanged(tmp_path):
    """The hand-written schema (CREATE TABLE IF NOT EXISTS ... and schema_meta) of earlier versions."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(LEGACY_SCHEMA)
    conn.execute("INSERT INTO users VALUES ('u1', 'andrewbrown', 'Andrew Brown', '2024-01-01T00:00:00.000000+00:00')")
    conn.execute(
        "INSERT INTO activities (uuid, user_uuid, message, created_at, expires_at) VALUES"
        " ('a1', 'u1', 'kept', '2024-01-01T00:00:00.000000+00:00', '2999-01-01T00:00:00.000000+00:00')"
    )
    conn.execute("INSERT INTO schema_meta VALUES ('seeded', '2024-01-01T00:00:00.000000+00:00')")
    conn.commit()
    conn.close()
    config = Config.from_env({}).replace(env="development", database_url=f"sqlite:///{path}", code_version="test")
    home = create_app(config).test_client().get("/api/activities/home").json
    assert [a["message"] for a in home] == ["kept"], "not seeded again, nothing lost"
    with open_store(config) as store:
        applied = [r["migration_id"] for r in store._execute("SELECT migration_id FROM _yoyo_migration")]
    assert applied == version_ids()


def test_make_db_migrate_applies_once_and_seeds_in_development(postgres_url):
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": postgres_url, "CRUDDUR_ENV": "development"}
    command = [sys.executable, "-m", "cruddur.store.migrations"]
    first = subprocess.run(command, cwd=BACKEND_DIR, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert first.returncode == 0, first.stderr
    versions = version_ids()
    assert f"{len(versions)} migration(s) applied ({', '.join(versions)})" in first.stdout, first.stdout
    second = subprocess.run(command, cwd=BACKEND_DIR, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert "0 migration(s) applied (up to date)" in second.stdout, second.stdout + second.stderr
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 5


def test_migrations_wait_for_the_advisory_lock(postgres_url):
    """While another session holds the lock, migrate waits; it proceeds the moment it is released."""
    database = Database.parse(postgres_url)
    finished = []
    with psycopg.connect(postgres_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        worker = threading.Thread(target=lambda: finished.append(migrate(database, "andrewbrown", False)))
        worker.start()
        time.sleep(1.0)
        assert not finished, "migrated while another process held the lock"
        holder.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
        worker.join(30)
    assert finished == [version_ids()]


def test_the_pool_is_bounded_and_made_in_the_worker(postgres_url):
    """No pool until a request needs one; then at most DATABASE_POOL_SIZE connections, and a request
    that finds them all busy waits at most the connect timeout, then answers 503."""
    config = Config.from_env({}).replace(
        env="test",
        database_url=postgres_url,
        code_version="test",
        database_pool_size=1,
        database_connect_timeout=0.5,
        database_statement_timeout=1.5,
    )
    app = create_app(config)
    connections = app.extensions["cruddur.connections"]
    assert connections._pool is None
    held = connections.get()  # the only connection, busy elsewhere
    assert held.execute("SHOW statement_timeout").fetchone()["statement_timeout"] == "1500ms"
    assert connections.pool().get_stats()["pool_max"] == 1
    started = time.monotonic()
    response = app.test_client().get("/api/activities/home")
    assert response.status_code == 503 and time.monotonic() - started < 2
    connections.put(held)
    assert app.test_client().get("/api/activities/home").status_code == 200
