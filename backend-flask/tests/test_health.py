"""The health check and /metrics: no addresses or secrets, each failure counted once, and under
gunicorn the counters of every worker added up (prometheus_client's multiprocess mode)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from cruddur import create_app
from cruddur.telemetry.core.status import IntegrationStatus, Metrics
from cruddur.telemetry.otel.tracing import CountingExporter, CountingSpanProcessor
from tests.support.faulty_http import closed_port
from tests.support.waiting import wait_for

BACKEND_DIR = Path(__file__).resolve().parents[1]
SECRET_USER, SECRET_PASSWORD = "otlp-user-7a1f", "otlp-password-9c2e"
ROLLBAR_TOKEN = "rollbar-token-health-5d8b"
HONEYCOMB_KEY = "honeycomb-key-health-3e6a"


def instance_counts(directory) -> dict[tuple[str, str], float]:
    """{(integration, event): value} summed over every worker's files in a PROMETHEUS_MULTIPROC_DIR."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    return {
        (s.labels["integration"], s.labels["event"]): s.value
        for family in registry.collect()
        if family.name == "cruddur_integration_events"
        for s in family.samples
        if s.name.endswith("_total")
    }


def test_no_url_host_port_or_token_in_the_health_check_or_metrics(config, rollbar_receiver, xray_listener):
    port = closed_port()
    app = create_app(
        config.replace(
            otlp_endpoint=f"http://{SECRET_USER}:{SECRET_PASSWORD}@127.0.0.1:{port}/otlp",
            otlp_headers={"x-honeycomb-team": HONEYCOMB_KEY},
            rollbar_access_token=ROLLBAR_TOKEN,
            rollbar_endpoint=rollbar_receiver.endpoint,
            xray_daemon_address=f"127.0.0.1:{xray_listener.port}",
            graceful_timeout=3,  # the flushes at the end give up on the closed port sooner
        )
    )
    client = app.test_client()
    health = client.get("/api/health-check").get_json()["integrations"]
    assert {name for name, status in health.items() if status["enabled"]} >= {"opentelemetry", "rollbar", "xray"}
    assert health["opentelemetry"]["reason"] == "OTLP/HTTP configured"
    text = json.dumps(health) + client.get("/metrics").get_data(as_text=True)
    forbidden = [SECRET_USER, SECRET_PASSWORD, ROLLBAR_TOKEN, HONEYCOMB_KEY, "127.0.0.1", "http", str(port)]
    forbidden += [str(rollbar_receiver.port), str(xray_listener.port), "/otlp", "/v1/traces"]
    assert not [word for word in forbidden if word in text], text
    app.extensions["cruddur.shutdown"].run()


def test_a_failed_export_is_counted_once(otlp_receiver, config):
    otlp_receiver.mode = "status500"  # not retryable for OTLP/HTTP: one attempt, one failure
    app = create_app(config.replace(otlp_endpoint=otlp_receiver.endpoint))
    client = app.test_client()
    for _ in range(3):
        client.get("/api/health-check")
    app.extensions["cruddur.tracer_provider"].force_flush()
    status = app.extensions["cruddur.integrations"]["opentelemetry"].status()
    assert otlp_receiver.request_count == 1
    assert (status["failed"], status["dropped"], status["sent"]) == (1, status["produced"], 0)
    assert status["produced"] >= 3 and status["last_error"] == "export failed"
    app.extensions["cruddur.shutdown"].run()


class _BrokenExporter(SpanExporter):
    """An exporter with a bug: it raises instead of returning a result."""

    def export(self, spans):
        raise RuntimeError("exporter bug")

    def shutdown(self):
        pass


def test_an_exporter_that_raises_is_counted_once_with_its_error_type():
    status = IntegrationStatus("opentelemetry", True, "test")
    processor = CountingSpanProcessor(CountingExporter(_BrokenExporter(), status), max_queue_size=100, batch_size=128)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    for name in ("a", "b"):
        provider.get_tracer("test").start_span(name).end()
    processor.force_flush()
    snapshot = status.status()
    assert (snapshot["produced"], snapshot["failed"], snapshot["dropped"], snapshot["sent"]) == (2, 1, 2, 0)
    assert snapshot["last_error"] == "RuntimeError"
    processor.shutdown_within(1)


def test_count_adds_named_counters_to_status_and_metrics(config):
    app = create_app(config)
    status = app.extensions["cruddur.integrations"]["opentelemetry"]
    exposed = app.test_client().get("/metrics").get_data(True)
    for event in ("sent", "dropped", "failed"):  # every integration's, at zero before anything happens
        assert f'event="{event}",integration="opentelemetry"}} 0.0' in exposed
    status.count("rerooted", 0)
    assert status.status()["rerooted"] == 0
    status.count("rerooted")
    status.count("rerooted", 2)
    assert status.status()["rerooted"] == 3
    assert 'event="rerooted",integration="opentelemetry"} 3.0' in app.test_client().get("/metrics").get_data(True)
    with pytest.raises(ValueError):
        status.count("queued")


def test_metrics_read_every_process_file(tmp_path):
    """Two processes counting into one folder: a reader sees the sum, per integration and event."""
    script = (
        "import os, sys\n"
        "from cruddur.telemetry.core.status import IntegrationStatus, Metrics\n"
        "status = IntegrationStatus('rollbar', True, 'test', Metrics(os.environ['PROMETHEUS_MULTIPROC_DIR']))\n"
        "status.record_sent(int(sys.argv[1]))\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for sent in (3, 4):
        subprocess.run([sys.executable, "-c", script, str(sent)], cwd=BACKEND_DIR, env=env, check=True, timeout=60)
    assert len(list(tmp_path.glob("counter_*.db"))) == 2
    assert instance_counts(tmp_path)[("rollbar", "sent")] == 7
    assert Metrics(str(tmp_path)).read()["rollbar"]["events"]["sent"] == 7


@pytest.mark.slow
def test_health_check_sums_every_gunicorn_worker(rollbar_receiver, app_server_factory):
    server = app_server_factory(
        {"ROLLBAR_ACCESS_TOKEN": ROLLBAR_TOKEN, "ROLLBAR_ENDPOINT": rollbar_receiver.endpoint}, workers=2
    )
    server.wait_for_workers(2)
    # Many clients at once, a new connection each, until both workers have served some (each item
    # names the pid that built it).
    items, per_worker = 0, {}
    with ThreadPoolExecutor(8) as pool:
        while len(per_worker) < 2 or items < 40:
            assert items < 400, f"one worker served everything: {per_worker}"
            answered = pool.map(lambda _: requests.get(server.url + "/rollbar/test", timeout=20), range(8))
            assert [response.status_code for response in answered] == [200] * 8
            items += 8
            per_worker = {}
            for item in rollbar_receiver.wait_for_items(count=items, timeout=30):
                per_worker[item["server"]["pid"]] = per_worker.get(item["server"]["pid"], 0) + 1
    assert max(per_worker.values()) < items, per_worker

    def rollbar_health():
        return requests.get(server.url + "/api/health-check", timeout=10).json()["integrations"]["rollbar"]

    wait_for(lambda: rollbar_health()["sent"] == items, timeout=15, message="the sum never reached every item")
    # Whichever worker answers, it reports the instance: no worker alone sent them all.
    answers = [rollbar_health() for _ in range(12)]
    assert {(a["sent"], a["dropped"], a["failed"], a["queued"]) for a in answers} == {(items, 0, 0, 0)}
    metrics = requests.get(server.url + "/metrics", timeout=10)
    assert metrics.headers["Content-Type"].startswith("text/plain")
    assert f'cruddur_integration_events_total{{event="sent",integration="rollbar"}} {float(items)}' in metrics.text

    # A worker that dies keeps its counts in the instance's sum (they are history, not state).
    victim = server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in server.worker_pids() and len(server.worker_pids()) == 2, timeout=20)
    assert rollbar_health()["sent"] == items
    _duration, returncode = server.stop()
    assert returncode == 0
