"""Request metrics: the Flask instrumentation's stable HTTP server metrics, over OTLP to a real receiver."""

from __future__ import annotations

import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from cruddur import create_app
from cruddur.config import Config
from tests.support.waiting import wait_for

DURATION = "http.server.request.duration"
ACTIVE = "http.server.active_requests"
HOME = "/api/activities/home"


@pytest.fixture
def database_url(tmp_path) -> str:
    """Telemetry transports do not depend on the database: SQLite only (not both databases)."""
    return f"sqlite:///{tmp_path / 'cruddur.db'}"


def duration_points(receiver, route=None):
    return [p for p in receiver.metric_points(DURATION) if route is None or p["attributes"].get("http.route") == route]


def test_red_metrics_reach_the_receiver_with_the_stable_attributes(config, otlp_receiver):
    app = create_app(config.replace(otlp_endpoint=otlp_receiver.endpoint))
    try:
        client = app.test_client()
        statuses = [client.get(HOME).status_code for _ in range(3)]
        statuses.append(client.get("/api/activities/@nobody-here").status_code)
        statuses.append(client.get("/rollbar/test/exception").status_code)
        assert statuses == [200, 200, 200, 404, 500]
        assert app.extensions["cruddur.meter_provider"].force_flush(10_000)
    finally:
        app.extensions["cruddur.meter_provider"].shutdown(timeout_millis=5_000)
        app.extensions["cruddur.tracer_provider"].shutdown()

    home = duration_points(otlp_receiver, HOME)[-1]  # cumulative: the last export holds the totals
    assert home["type"] == "histogram" and home["unit"] == "s"
    assert home["count"] == 3 and 0 < home["sum"] < 3
    assert home["attributes"]["http.request.method"] == "GET"
    assert home["attributes"]["http.response.status_code"] == 200
    assert home["attributes"]["url.scheme"] == "http"
    assert home["resource"]["service.name"] == "backend-flask"
    by_status = {p["attributes"]["http.response.status_code"]: p for p in duration_points(otlp_receiver)}
    assert {200, 404, 500} <= set(by_status)
    assert by_status[500]["attributes"].get("error.type") == "500"
    active = otlp_receiver.metric_points(ACTIVE)
    assert active and active[-1]["type"] == "sum" and active[-1]["value"] == 0
    # No old-convention duplicates: the stable set only.
    assert not otlp_receiver.metric_points("http.server.duration")
    state = app.extensions["cruddur.integrations"]["metrics"].status()
    assert state["enabled"] and state["sent"] >= 3 and state["failed"] == 0


def test_metrics_are_off_without_an_endpoint_or_with_exporter_none(config, otlp_receiver):
    app = create_app(config)
    assert "cruddur.meter_provider" not in app.extensions
    assert app.extensions["cruddur.integrations"]["metrics"].enabled is False
    app = create_app(config.replace(otlp_endpoint=otlp_receiver.endpoint, metrics_exporter="none"))
    assert "cruddur.meter_provider" not in app.extensions
    assert "OTEL_METRICS_EXPORTER=none" in app.extensions["cruddur.integrations"]["metrics"].reason
    app.extensions["cruddur.tracer_provider"].shutdown()


def test_honeycomb_key_sets_a_default_metrics_dataset():
    config = Config.from_env({"HONEYCOMB_API_KEY": "hc-key"})
    assert config.metrics_url == "https://api.honeycomb.io/v1/metrics"
    assert config.metrics_headers == {"x-honeycomb-team": "hc-key", "x-honeycomb-dataset": "backend-flask-metrics"}
    assert "x-honeycomb-dataset" not in config.otlp_headers  # spans are filed by service name
    config = Config.from_env(
        {"HONEYCOMB_API_KEY": "hc-key", "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "x-honeycomb-dataset=red"}
    )
    assert config.metrics_headers["x-honeycomb-dataset"] == "red"
    config = Config.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert config.metrics_url == "http://collector:4318/v1/metrics" and config.metrics_headers == {}
    assert Config.from_env({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://m/v1/metrics"}).metrics_url == (
        "http://m/v1/metrics"
    )


def test_the_dataset_header_travels_with_the_metrics_only(config, otlp_receiver):
    headers = {"x-honeycomb-team": "hc-key"}
    app = create_app(
        config.replace(
            otlp_endpoint=otlp_receiver.endpoint,
            otlp_headers=headers,
            metrics_headers={**headers, "x-honeycomb-dataset": "backend-flask-metrics"},
        )
    )
    try:
        app.test_client().get(HOME)
        app.extensions["cruddur.meter_provider"].force_flush(10_000)
        app.extensions["cruddur.tracer_provider"].force_flush(10_000)
    finally:
        app.extensions["cruddur.meter_provider"].shutdown(timeout_millis=5_000)
        app.extensions["cruddur.tracer_provider"].shutdown()
    by_path = {r.path: r.headers for r in otlp_receiver.requests()}
    assert by_path["/v1/metrics"]["x-honeycomb-dataset"] == "backend-flask-metrics"
    assert by_path["/v1/metrics"]["x-honeycomb-team"] == "hc-key"
    assert "x-honeycomb-dataset" not in by_path["/v1/traces"]


def test_two_gunicorn_workers_each_export_their_own_series(otlp_receiver, app_server_factory):
    server = app_server_factory(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint, "OTEL_METRIC_EXPORT_INTERVAL": "500"}, workers=2
    )
    workers = server.wait_for_workers()
    sent = 0

    def get(_):
        with urllib.request.urlopen(server.url + HOME, timeout=10) as response:
            return response.status

    def instances():
        found = {p["resource"]["service.instance.id"] for p in duration_points(otlp_receiver, HOME)}
        return found if len(found) == 2 else None

    # Concurrent clients, so that both workers take requests from the shared socket; on a busy machine
    # one worker may win every accept for a while, so rounds go on until both have exported.
    deadline = time.monotonic() + 30
    with ThreadPoolExecutor(max_workers=8) as pool:
        while True:
            assert set(pool.map(get, range(40))) == {200}
            sent += 40
            try:
                wait_for(instances, 2)  # the export interval is 0.5 s
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
    wait_for(instances, 15, message="metrics from fewer than 2 workers")
    _seconds, returncode = server.stop()
    assert returncode == 0
    latest = {}
    for point in duration_points(otlp_receiver, HOME):
        latest[point["resource"]["service.instance.id"]] = point  # cumulative: the last one has the total
    assert {int(instance.rsplit("/", 1)[1]) for instance in latest} == set(workers)
    assert sum(p["count"] for p in latest.values()) == sent
    for point in latest.values():
        assert point["attributes"]["http.request.method"] == "GET"
        assert point["attributes"]["http.response.status_code"] == 200
        assert point["attributes"]["http.route"] == HOME
