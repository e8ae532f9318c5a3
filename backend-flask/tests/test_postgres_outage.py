"""PostgreSQL stops and starts under a running gunicorn, with every integration on.

The cluster is a private one on a random port (never the shared server), stopped and started with
pg_ctl: a real shutdown, which closes every connection the app holds. The password in DATABASE_URL
is then searched for in every sink: spans, segments, log lines, CloudWatch events, Rollbar items,
the health check and every response body.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
import requests

from tests.support.postgres import create_database, with_password
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

CONNECT_TIMEOUT = 2  # DATABASE_CONNECT_TIMEOUT for the app under test
TIMEOUT = 20


def test_outage_answers_503_reports_once_recovers_and_never_shows_the_password(
    postgres_cluster, app_server_factory, otlp_receiver, xray_listener, rollbar_receiver, moto_logs, log_group
):
    password = f"pw-{uuid.uuid4().hex}"
    database_url = with_password(create_database(postgres_cluster.url), password)
    assert password in database_url
    server = app_server_factory(
        {
            "DATABASE_URL": database_url,
            "DATABASE_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
            "GUNICORN_THREADS": "2",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
            "AWS_XRAY_DAEMON_ADDRESS": xray_listener.daemon_address,
            "ROLLBAR_ACCESS_TOKEN": "rollbar-token",
            "ROLLBAR_ENDPOINT": rollbar_receiver.endpoint,
            "CLOUDWATCH_LOG_GROUP": log_group,
            **moto_logs.env(),
        },
        workers=1,
    )
    bodies: list[str] = []

    def call(method, path, **kwargs):
        started = time.monotonic()
        response = requests.request(method, server.url + path, timeout=TIMEOUT, **kwargs)
        bodies.append(response.text)
        return response, time.monotonic() - started

    # Up: a committed write, SQL in the trace, the health check says ok.
    crud, _ = call("POST", "/api/activities", json={"message": "written before the outage", "ttl": "1-day"})
    assert crud.status_code == 200, crud.text
    health, _ = call("GET", "/api/health-check")
    assert health.json()["database"] == "ok"
    call("GET", "/rollbar/test/exception")  # a 500 and a Rollbar item that carry the request
    call("GET", "/api/activities/home", params={"password": password})  # redacted in the URL everywhere

    # Down: every request is a JSON 503 with Retry-After, within the connect timeout.
    postgres_cluster.stop("fast")
    stopped = time.monotonic()
    answers = []
    for method, path, body in [
        ("GET", "/api/activities/home", None),
        ("POST", "/api/activities", {"message": "during the outage", "ttl": "1-day"}),
        ("GET", f"/api/activities/{crud.json()['uuid']}", None),
        ("POST", "/api/messages", {"message": "hello?", "user_receiver_handle": "worf"}),
    ]:
        response, took = call(method, path, json=body)
        answers.append((time.monotonic() - stopped, took))
        assert response.status_code == 503, (path, response.status_code, response.text[:300])
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.json()["errors"] == ["database_unavailable"]
        assert int(response.headers["Retry-After"]) > 0
        assert took < CONNECT_TIMEOUT + 2, (path, took)
    health, took = call("GET", "/api/health-check")
    assert (health.status_code, health.json()["database"]) == (200, "unavailable")
    assert took < CONNECT_TIMEOUT + 2

    # Back: the same workers serve again without a restart; the committed write is there.
    workers = server.worker_pids()
    postgres_cluster.start()
    started = time.monotonic()
    home = wait_for(
        lambda: (r := call("GET", "/api/activities/home")[0]).status_code == 200 and r.json(),
        timeout=30,
        interval=0.2,
        message="the app did not serve again after PostgreSQL came back",
    )
    recovered = time.monotonic() - started
    assert crud.json()["uuid"] in {a["uuid"] for a in home}
    assert not any(a["message"] == "during the outage" for a in home), "a refused write was not half-done"
    after, _ = call("POST", "/api/activities", json={"message": "written after the outage", "ttl": "1-day"})
    assert after.status_code == 200
    assert call("GET", "/api/health-check")[0].json()["database"] == "ok"
    assert server.worker_pids() == workers, "recovered without a worker restart"
    print(
        f"\noutage timeline: 503s at {', '.join(f'{at:.2f}s (took {took:.2f}s)' for at, took in answers)} "
        f"after pg_ctl stop; first 200 {recovered:.2f}s after pg_ctl start"
    )

    # One warning and one Rollbar item for the whole outage; no traceback anywhere.
    time.sleep(1)
    warnings = [r for r in server.log_records() if r.get("logger") == "cruddur.store.connection"]
    assert [r["level"] for r in warnings] == ["WARNING", "INFO"], warnings  # unavailable, available again
    assert server.stdout_text().count("Traceback") == 1, "only the deliberate /rollbar/test/exception"
    assert "Traceback" not in server.stderr_text()
    assert not [r for r in server.log_records() if r.get("logger", "").startswith("psycopg")]
    items = rollbar_receiver.wait_for_items(lambda i: "unavailable" in json.dumps(i.get("body")), count=1)
    time.sleep(1)
    assert len([i for i in rollbar_receiver.items() if "database" in json.dumps(i.get("body"))]) == 1, items

    # The password is nowhere.
    server.stop()
    events = moto_logs.events(log_group)
    assert events, "CloudWatch received the log"
    assert otlp_receiver.spans() and xray_listener.documents()
    assert any(s["attributes"].get("db.system") == "postgresql" for s in otlp_receiver.spans())
    sql = [e["sql"] for e in xray_listener.entities() if "sql" in e]
    assert sql and all(
        q["database_type"] == "PostgreSQL" and q["url"].startswith("postgresql://postgres@") for q in sql
    )
    sinks = {
        "spans": json.dumps(otlp_receiver.spans()),
        "segments": json.dumps(xray_listener.documents()),
        "stdout": server.stdout_text(),
        "stderr": server.stderr_text(),
        "cloudwatch": json.dumps(events, default=str),
        "rollbar": json.dumps(rollbar_receiver.payloads()),
        "responses": "\n".join(bodies),
    }
    for name, text in sinks.items():
        assert password not in text, f"the database password reached {name}"
    assert "database_unavailable" in sinks["responses"] and "unavailable" in sinks["stdout"]
