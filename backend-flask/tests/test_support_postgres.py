"""The PostgreSQL test support: where the server comes from, and the throwaway cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.support import postgres
from tests.support.app_server import BACKEND_DIR, free_port


def test_test_database_url_wins_without_connecting():
    url, cluster = postgres.find_server({"TEST_DATABASE_URL": "postgresql://ci@db.invalid:5432/postgres"})
    assert (url, cluster) == ("postgresql://ci@db.invalid:5432/postgres", None)


def test_without_a_server_a_throwaway_cluster_is_started_and_destroyed(monkeypatch):
    """Nothing answers where the shared server would be: initdb and pg_ctl start a private one."""
    monkeypatch.setattr(postgres, "DEFAULT_SERVER", f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    url, cluster = postgres.find_server({})
    try:
        assert cluster is not None and url == cluster.url
        database = postgres.create_database(url)
        with psycopg.connect(database) as conn:
            assert conn.execute("SHOW port").fetchone()[0] == str(cluster.port)
            assert conn.execute("SELECT current_database()").fetchone()[0] == database.rsplit("/", 1)[1]
        postgres.drop_database(url, database)
        cluster.stop()
        assert not postgres.answers(url)
        cluster.start()
        assert postgres.answers(url)
    finally:
        cluster.destroy()
    assert not cluster.root.exists()


def test_each_database_is_new_and_dropped(postgres_server):
    first, second = postgres.create_database(postgres_server), postgres.create_database(postgres_server)
    assert first != second
    postgres.drop_database(postgres_server, first)
    postgres.drop_database(postgres_server, second)
    with psycopg.connect(postgres_server) as conn:
        names = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    assert not {first.rsplit("/", 1)[1], second.rsplit("/", 1)[1]} & names


def test_a_password_in_the_url_is_set_on_its_user():
    url = postgres.with_password("postgresql://postgres@127.0.0.1:5432/db?sslmode=disable", "s3cret")
    assert url == "postgresql://postgres:s3cret@127.0.0.1:5432/db?sslmode=disable"


def test_parallel_workers_share_one_throwaway_cluster_and_the_last_one_out_destroys_it(monkeypatch, tmp_path):
    """Another process entering the same directory gets the same server; leaving, it keeps it running."""
    monkeypatch.setattr(postgres, "DEFAULT_SERVER", f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    with postgres.shared_server(tmp_path, {}) as url:
        assert postgres.answers(url) and url != postgres.DEFAULT_SERVER
        other = subprocess.run(
            [sys.executable, "-c", SHARED_SERVER_USER, str(tmp_path)],
            cwd=BACKEND_DIR,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert other.stdout.strip() == url, other.stderr
        assert postgres.answers(url), "still in use here"
        root = Path(json.loads((tmp_path / "postgres.json").read_text())["root"])
    assert not postgres.answers(url) and not root.exists() and not (tmp_path / "postgres.json").exists()


# A second worker: the shared server's URL, found with nothing answering where it would be on its own.
SHARED_SERVER_USER = """
import sys
from pathlib import Path
from tests.support import postgres
postgres.DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:1/postgres"
with postgres.shared_server(Path(sys.argv[1]), {}) as url:
    print(url)
"""
