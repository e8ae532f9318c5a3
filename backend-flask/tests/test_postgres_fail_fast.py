"""While PostgreSQL is known to be down, requests are answered 503 at once; its return is noticed at once.

Two gunicorn instances (2 workers x 2 threads each) share one database on a private cluster; six
clients keep writing, reading and asking for the health check across both while the database
goes away, in the two ways it does: refusing connections (`ALLOW_CONNECTIONS false` with every
session terminated) and a real shutdown (`pg_ctl stop`), then comes back. What they must see:

- the slowest request takes at most the connect timeout plus 0.5 s (only the first of an outage
  may wait for a connection, and at most the connect timeout);
- every 503 after the first answers within 0.5 s;
- within 1 s of the database accepting connections again, requests and the health check are
  served;
- every acknowledged write is stored.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

import psycopg
import pytest
import requests
from psycopg import sql

from tests.support.postgres import create_database

pytestmark = [pytest.mark.slow, pytest.mark.serial]

CONNECT_TIMEOUT = 2.0  # DATABASE_CONNECT_TIMEOUT of the instances
CLIENTS = 6
PAUSE = 0.05  # seconds a client waits between two requests
UP_BEFORE, DOWN_FOR, UP_AFTER = 1.0, 3.0, 2.5  # seconds of each phase
FAST_503 = 0.5
RECOVERY = 1.0
TIMEOUT = 20


@dataclass
class Answer:
    """One request and what it was told."""

    path: str
    sent: float
    done: float
    status: int
    served: bool  # a 200 (for the health check: one that says the database is ok)
    written: str | None = None  # the uuid of an acknowledged write

    @property
    def took(self) -> float:
        return self.done - self.sent


def ask(server_url: str, what: int, label: str) -> Answer:
    """A write, a read or a health check (by `what`), each on a new connection as a new user's would be."""
    sent = time.monotonic()
    if what == 0:
        path = "/api/activities"
        response = requests.post(
            server_url + path, json={"message": f"{label} {uuid.uuid4().hex[:8]}", "ttl": "1-day"}, timeout=TIMEOUT
        )
    else:
        path = "/api/activities/home" if what == 1 else "/api/health-check"
        response = requests.get(server_url + path, timeout=TIMEOUT)
    done = time.monotonic()
    body = response.json()
    if response.status_code == 503:
        assert body["errors"] == ["database_unavailable"], body
        assert int(response.headers["Retry-After"]) > 0
        return Answer(path, sent, done, 503, False)
    assert response.status_code == 200, (path, response.status_code, response.text[:300])
    if path == "/api/health-check":
        assert body["database"] in ("ok", "unavailable"), body
        return Answer(path, sent, done, 200, body["database"] == "ok")
    return Answer(path, sent, done, 200, True, body["uuid"] if what == 0 else None)


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


class Refusing:
    """The database refuses new sessions and every open one is terminated."""

    def __init__(self, cluster, database_url):
        self.cluster, self.name = cluster, database_name(database_url)

    def _admin(self, statement):
        with psycopg.connect(self.cluster.url, autocommit=True) as admin:
            admin.execute(sql.SQL(statement).format(sql.Identifier(self.name)))
            if "false" in statement:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (self.name,))

    def down(self):
        self._admin("ALTER DATABASE {} ALLOW_CONNECTIONS false")

    def up(self):
        self._admin("ALTER DATABASE {} ALLOW_CONNECTIONS true")


class Stopped:
    """The server shuts down (`pg_ctl stop -m fast`, which ends every session) and starts again."""

    def __init__(self, cluster, database_url):
        self.cluster = cluster

    def down(self):
        self.cluster.stop("fast")

    def up(self):
        self.cluster.start()  # returns once the server accepts connections (pg_ctl -w)


@pytest.mark.parametrize("outage", [Refusing, Stopped], ids=["allow_connections_false", "pg_ctl_stop"])
def test_outage_is_answered_at_once_and_its_end_noticed_at_once(outage, postgres_cluster, app_server_factory):
    database_url = create_database(postgres_cluster.url)
    env = {"DATABASE_URL": database_url, "GUNICORN_THREADS": "2", "DATABASE_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT)}
    servers = [app_server_factory(env, workers=2), app_server_factory(env, workers=2)]
    for server in servers:
        server.wait_for_workers(2)
    database = outage(postgres_cluster, database_url)

    answers: list[Answer] = []
    lock = threading.Lock()
    stop = threading.Event()
    errors = []

    def client(number):
        n = number
        try:
            while not stop.is_set():
                answer = ask(servers[n % 2].url, n % 3, f"client {number}")
                with lock:
                    answers.append(answer)
                n += 1
                time.sleep(PAUSE)
        except Exception as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=client, args=(number,)) for number in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(UP_BEFORE)
        went_down = time.monotonic()
        database.down()
        time.sleep(DOWN_FOR)
        database.up()
        came_back = time.monotonic()
        psycopg.connect(database_url, connect_timeout=2).close()  # it accepts connections again
        time.sleep(UP_AFTER)
    finally:
        stop.set()
        for thread in threads:
            thread.join(TIMEOUT + 5)
    assert not errors, errors

    before = [a for a in answers if a.done < went_down]
    refused = sorted((a for a in answers if not a.served), key=lambda a: a.done)
    assert before and all(a.served for a in before), "all served while the database was up"
    assert refused, "the outage was seen"
    first = refused[0]
    after_first = [a for a in refused if a.sent >= first.done]
    late = [a for a in refused if a.sent >= came_back]
    slowest = max(answers, key=lambda a: a.took)
    served_again = min((a.done for a in answers if a.served and a.sent >= came_back), default=float("inf"))
    recovery = max((a.done for a in late), default=came_back) - came_back
    print(
        f"\n{outage.__name__}: {len(answers)} answers; first 503 {first.done - went_down:.2f} s after the outage "
        f"began (took {first.took:.2f} s); slowest request {slowest.took:.2f} s ({slowest.path}); "
        f"503s after the first: {len(after_first)}, slowest {max((a.took for a in after_first), default=0):.2f} s; "
        f"first served {served_again - came_back:.2f} s after the database accepted again, "
        f"last refused {recovery:.2f} s after ({len(late)} refused since)"
    )

    assert slowest.took <= CONNECT_TIMEOUT + 0.5, slowest
    assert after_first and max(a.took for a in after_first) <= FAST_503, [a for a in after_first if a.took > FAST_503]
    assert recovery <= RECOVERY, [(a.path, round(a.sent - came_back, 3), round(a.took, 3)) for a in late]
    for path in ("/api/activities", "/api/activities/home", "/api/health-check"):
        assert any(a.served and a.path == path and a.sent >= came_back for a in answers), f"{path} served again"

    acknowledged = {a.written for a in answers if a.written}
    with psycopg.connect(database_url) as conn:
        stored = {str(row[0]) for row in conn.execute("SELECT uuid FROM activities")}
    assert acknowledged and acknowledged <= stored, f"{len(acknowledged - stored)} acknowledged writes lost"
    for server in servers:
        assert "Traceback" not in server.stderr_text() + server.stdout_text()
