"""End to end over real HTTP against gunicorn.

A crud posted to a running server is first in the home feed, a reply makes its replies_count 1,
SIGTERM stops the server cleanly and quickly, and a new server on the same DATABASE_URL still has
both. Then several gunicorn processes with several threads each post at once into one SQLite file:
every post is stored exactly once and nobody sees a 5xx.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.slow

STOP_BOUND_SECONDS = 35  # gunicorn's graceful_timeout is 30 s; an idle server should need far less
TIMEOUT = 20


def get_json(server, path):
    """GET a path, assert 200 JSON, return the body."""
    response = requests.get(server.url + path, timeout=TIMEOUT)
    assert response.status_code == 200, (path, response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()


def post_json(server, path, body, session=None):
    """POST JSON, assert 200, return the body."""
    response = (session or requests).post(server.url + path, json=body, timeout=TIMEOUT)
    assert response.status_code == 200, (path, response.status_code, response.text[:300])
    return response.json()


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of a process, in clock ticks (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def assert_clean_stop(server):
    """SIGTERM: the master exits 0 within the bound, its workers logged their exit, nothing crashed."""
    workers = server.worker_pids()
    assert workers
    duration, returncode = server.stop()
    assert not server.killed, "gunicorn ignored SIGTERM and had to be killed"
    assert returncode == 0, server.stderr_text()[-3000:]
    assert duration < STOP_BOUND_SECONDS, duration
    stderr = server.stderr_text()
    assert "Shutting down: Master" in stderr, stderr[-3000:]
    assert "Traceback" not in stderr and "WORKER TIMEOUT" not in stderr, stderr[-3000:]
    for pid in workers:
        assert f"Worker exiting (pid: {pid})" in stderr, (pid, stderr[-3000:])
    return duration


def test_post_reply_restart_still_there(app_server_factory, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'e2e.db'}"
    assert database_url.startswith("sqlite:////")
    first = app_server_factory({"DATABASE_URL": database_url}, workers=2)

    seeded = get_json(first, "/api/activities/home")
    assert len(seeded) >= 5, "a fresh database is seeded on first start"

    text = f"e2e crud {uuid.uuid4()} \u00e9\U0001f680 <b>'quotes'</b>"
    crud = post_json(first, "/api/activities", {"message": text, "ttl": "7-days"})
    assert (crud["message"], crud["handle"], crud["replies_count"]) == (text, "andrewbrown", 0)

    home = get_json(first, "/api/activities/home")
    assert home[0]["uuid"] == crud["uuid"], "the newest crud comes first"
    assert len(home) == len(seeded) + 1

    reply = post_json(first, f"/api/activities/{crud['uuid']}/reply", {"message": "e2e reply"})
    assert reply["reply_to_activity_uuid"] == crud["uuid"]

    home = get_json(first, "/api/activities/home")
    assert home[0]["uuid"] == crud["uuid"]
    assert home[0]["replies_count"] == 1
    assert [r["uuid"] for r in home[0]["replies"]] == [reply["uuid"]]

    assert_clean_stop(first)
    with pytest.raises(requests.ConnectionError):
        requests.get(first.url + "/api/health-check", timeout=2)

    second = app_server_factory({"DATABASE_URL": database_url}, workers=1)
    assert second.db_path != tmp_path / "e2e.db", "the database comes from DATABASE_URL, not the runner"
    home = get_json(second, "/api/activities/home")
    assert home[0]["uuid"] == crud["uuid"] and home[0]["message"] == text
    assert home[0]["replies_count"] == 1
    assert [(r["uuid"], r["message"]) for r in home[0]["replies"]] == [(reply["uuid"], "e2e reply")]
    assert len(home) == len(seeded) + 1, "the second start did not seed again"
    shown = get_json(second, f"/api/activities/{crud['uuid']}")
    assert (shown["replies_count"], shown["created_at"], shown["expires_at"]) == (
        1,
        crud["created_at"],
        crud["expires_at"],
    )
    assert_clean_stop(second)


def test_three_workers_four_threads_concurrent_posts(app_server_factory, tmp_path):
    posts, replies, clients = 60, 20, 12
    server = app_server_factory(
        {"DATABASE_URL": f"sqlite:///{tmp_path / 'concurrent.db'}", "GUNICORN_THREADS": "4"}, workers=3
    )
    workers = server.wait_for_workers(3)
    assert "gthread" in server.stderr_text(), "GUNICORN_THREADS > 1 runs the threaded worker"

    parent = post_json(server, "/api/activities", {"message": "reply to me, all at once", "ttl": "1-day"})
    run = uuid.uuid4().hex[:8]
    statuses: list[int] = []
    lock = threading.Lock()

    def send(kind: str, index: int):
        # A new connection per request, so the kernel spreads them over the three workers.
        if kind == "post":
            path, body = "/api/activities", {"message": f"concurrent {run} #{index}", "ttl": "1-day"}
        elif kind == "reply":
            path, body = f"/api/activities/{parent['uuid']}/reply", {"message": f"reply {run} #{index}"}
        else:
            path, body = "/api/activities/home", None
        if body is None:
            response = requests.get(server.url + path, timeout=TIMEOUT)
        else:
            response = requests.post(server.url + path, json=body, timeout=TIMEOUT)
        with lock:
            statuses.append(response.status_code)
        assert response.status_code == 200, (kind, index, response.status_code, response.text[:300])
        return kind, response.json()

    jobs = [("post", i) for i in range(posts)] + [("reply", i) for i in range(replies)]
    jobs += [("read", i) for i in range(20)]
    jobs.sort(key=lambda job: (job[1], job[0]))  # interleave writes and reads
    before = {pid: cpu_ticks(pid) for pid in workers}
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda job: send(*job), jobs))
    busy = {pid: cpu_ticks(pid) - ticks for pid, ticks in before.items()}
    # An idle worker burns ~0 ticks; one that served a share of 100 requests burns tens (10 ms each).
    assert sum(ticks >= 3 for ticks in busy.values()) >= 2, f"the load did not reach several processes: {busy}"

    assert len(statuses) == len(jobs)
    assert all(status < 500 for status in statuses), sorted(set(statuses))
    created = {body["uuid"]: body["message"] for kind, body in results if kind == "post"}
    assert len(created) == posts

    home = get_json(server, "/api/activities/home")
    mine = [a for a in home if a["message"].startswith(f"concurrent {run} #")]
    assert len(mine) == posts, f"{len(mine)} of {posts} posts in the feed"
    assert sorted(a["uuid"] for a in mine) == sorted(created), "every post present exactly once"
    assert {a["uuid"]: a["message"] for a in mine} == created
    times = [a["created_at"] for a in home]
    assert times == sorted(times, reverse=True)

    shown = get_json(server, f"/api/activities/{parent['uuid']}")
    assert shown["replies_count"] == replies, "replies_count stays true under concurrent replies"
    assert sorted(r["message"] for r in shown["replies"]) == sorted(f"reply {run} #{i}" for i in range(replies))

    assert server.worker_pids() == workers, "no worker died or was replaced"
    assert_clean_stop(server)
