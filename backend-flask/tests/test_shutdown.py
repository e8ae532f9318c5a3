"""The shutdown flushes: priority order, one budget, a fair share each, never raising."""

from __future__ import annotations

import logging
import time

import pytest
import requests

from cruddur import create_app
from cruddur.config import Config
from cruddur.telemetry.core.shutdown import MAX_FLUSHES, Flushes, min_share
from cruddur.telemetry.otel.tracing import EXPORT_TIMEOUT_SECONDS, export_timeout
from tests.support.faulty_http import FaultyHTTPServer
from tests.support.moto_logs import unique_log_group
from tests.support.waiting import wait_for
from tests.test_health import instance_counts


def test_each_flush_gets_a_fair_share_of_what_is_left():
    flushes = Flushes(budget=1.2)
    given = {}

    def hog(name):
        def flush(seconds):
            given[name] = seconds
            time.sleep(seconds)  # a dead vendor: uses all it is given

        return flush

    flushes.add(10, "spans", hog("spans"))
    flushes.add(20, "errors", lambda seconds: given.setdefault("errors", seconds))  # done at once
    flushes.add(90, "logs", hog("logs"))
    started = time.monotonic()
    flushes.run()
    assert time.monotonic() - started < 2.0  # the budget (1.2 s), not 1.2 s for each hog
    assert abs(given["spans"] - 0.4) < 0.05  # a third of the budget, not all of it
    assert given["logs"] > 0.7  # the logs, last, get what the others left


def test_a_failing_flush_does_not_stop_the_others_and_run_is_once():
    flushes = Flushes(budget=1)
    ran = []

    def broken(_seconds):
        raise RuntimeError("vendor SDK bug")

    flushes.add(10, "broken", broken)
    flushes.add(20, "logs", lambda _s: ran.append("logs"))
    flushes.run()
    flushes.run()
    assert ran == ["logs"]


def test_the_budget_is_gunicorns_graceful_timeout_less_a_margin(config):
    assert config.graceful_timeout == 30  # gunicorn's default, like gunicorn.conf.py's
    assert config.replace(graceful_timeout=30).shutdown_budget == 22.5
    assert config.replace(graceful_timeout=10).shutdown_budget == 7.5
    assert config.replace(graceful_timeout=4).shutdown_budget == 2.0  # the margin is at least 2 s
    assert Config.from_env({"GUNICORN_GRACEFUL_TIMEOUT": "10"}).graceful_timeout == 10
    app = create_app(config.replace(graceful_timeout=10))
    assert app.extensions["cruddur.shutdown"].budget == 7.5


@pytest.mark.parametrize("graceful", [4, 10, 30, 90])
def test_one_otlp_export_fits_in_opentelemetrys_share(config, graceful):
    settings = config.replace(graceful_timeout=graceful)
    # OpenTelemetry flushes first, so its share is the budget over the number of flushes at most.
    assert export_timeout(settings) <= min_share(settings.shutdown_budget) <= settings.shutdown_budget / MAX_FLUSHES
    assert export_timeout(settings) <= EXPORT_TIMEOUT_SECONDS


def test_every_integration_on_fits_the_flush_count(config, otlp_receiver, rollbar_receiver, moto_logs, monkeypatch):
    for name, value in moto_logs.env().items():
        monkeypatch.setenv(name, value)
    app = create_app(
        config.replace(
            otlp_endpoint=otlp_receiver.endpoint,
            rollbar_access_token="token",
            rollbar_endpoint=rollbar_receiver.endpoint,
            cloudwatch_log_group=unique_log_group(),
        )
    )
    names = [name for _, name, _ in sorted(app.extensions["cruddur.shutdown"]._callbacks, key=lambda c: c[0])]
    assert names[-1] == "cloudwatch"  # logs go last
    assert len(names) <= MAX_FLUSHES
    handler = app.extensions["cruddur.cloudwatch"]
    app.extensions["cruddur.shutdown"].run()
    logging.getLogger().removeHandler(handler)


@pytest.mark.slow
def test_a_worker_stops_inside_a_10s_graceful_timeout_with_otlp_blackholed(app_server_factory, tmp_path):
    metrics_dir = tmp_path / "metrics"
    with FaultyHTTPServer(mode="blackhole") as blackhole:
        server = app_server_factory(
            {
                "GUNICORN_GRACEFUL_TIMEOUT": "10",
                "OTEL_EXPORTER_OTLP_ENDPOINT": blackhole.url,
                "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            },
            workers=2,
        )
        workers = server.wait_for_workers(2)
        for _ in range(30):
            assert requests.get(server.url + "/api/activities/home", timeout=10).status_code == 200
        # The batch processor's 5 s schedule: an export is stuck on the blackhole when SIGTERM comes.
        wait_for(lambda: blackhole.request_count >= 1, timeout=15, message="no export reached the endpoint")
        duration, returncode = server.stop()

    assert not server.killed and returncode == 0, server.stderr_text()[-3000:]
    assert duration < 10, duration
    stderr = server.stderr_text()
    assert "WORKER TIMEOUT" not in stderr and "SIGKILL" not in stderr and "Traceback" not in stderr, stderr[-3000:]
    for pid in workers:
        assert f"Worker exiting (pid: {pid})" in stderr
    counts = {
        event: value
        for (integration, event), value in instance_counts(metrics_dir).items()
        if integration == "opentelemetry"
    }
    assert counts["produced"] >= 30
    assert counts["sent"] + counts["dropped"] == counts["produced"], counts
    assert counts["sent"] == 0
    given_up = [r for r in server.log_records() if "spans not exported within" in r.get("message", "")]
    assert len(given_up) <= len(workers)  # at most one line per worker


def test_spans_still_queued_or_in_flight_when_time_runs_out_are_dropped_and_logged_once(config, caplog):
    with FaultyHTTPServer(mode="blackhole") as blackhole:
        app = create_app(config.replace(otlp_endpoint=blackhole.url))
        [flush] = [f for _, name, f in app.extensions["cruddur.shutdown"]._callbacks if name == "opentelemetry"]
        processor = flush.__self__
        tracer = app.extensions["cruddur.tracer"]
        for i in range(600):  # more than one batch (512): the first goes out at once and hangs
            tracer.start_span(f"span {i}").end()
        wait_for(lambda: blackhole.request_count >= 1, timeout=10, message="the first batch was never sent")
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="cruddur.telemetry.otel.tracing"):
            processor.shutdown_within(0.3)
        assert time.monotonic() - started < 2.0
        status = app.extensions["cruddur.integrations"]["opentelemetry"].status()
        assert (status["produced"], status["sent"], status["dropped"], status["queued"]) == (600, 0, 600, 0)
        lines = [r.getMessage() for r in caplog.records if "spans not exported" in r.getMessage()]
        assert lines == ["opentelemetry: 600 spans not exported within 0.3 s of shutdown; dropped"]
        tracer.start_span("after shutdown").end()
        status = app.extensions["cruddur.integrations"]["opentelemetry"].status()
        assert (status["produced"], status["dropped"]) == (601, 601)
