"""CRUDDUR_TELEMETRY=off: the app with no trace context and no integration, even with every variable set."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest
import watchtower

from cruddur import create_app
from cruddur.config import Config
from cruddur.telemetry import integrations

TOKEN = "rollbar-test-token-0123456789"


def test_config_reads_the_switch():
    assert Config.from_env({}).telemetry == "on" and Config.from_env({}).telemetry_on
    assert Config.from_env({"CRUDDUR_TELEMETRY": "off"}).telemetry_on is False
    assert Config.from_env({"CRUDDUR_TELEMETRY": " OFF "}).telemetry == "off"
    assert Config.from_env({"CRUDDUR_TELEMETRY": "on"}).telemetry_on
    with pytest.raises(ValueError):
        Config.from_env({"CRUDDUR_TELEMETRY": "false"})


@pytest.fixture
def everything_configured(config, otlp_receiver, xray_listener, rollbar_receiver):
    """A configuration that turns every integration on."""
    return config.replace(
        otlp_endpoint=otlp_receiver.url,
        xray_daemon_address=xray_listener.daemon_address,
        rollbar_access_token=TOKEN,
        rollbar_endpoint=rollbar_receiver.endpoint,
        cloudwatch_log_group="cruddur-switch-test",
        aws_region="us-east-1",
    )


def test_off_builds_no_trace_context_and_no_integration(
    everything_configured, otlp_receiver, xray_listener, rollbar_receiver, capsys
):
    threads_before = set(threading.enumerate())
    app = create_app(everything_configured.replace(telemetry="off"))
    client = app.test_client()
    incoming = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    capsys.readouterr()
    responses = [
        client.get("/api/activities/home", headers=incoming),
        client.post("/api/activities", json={"message": "no telemetry", "ttl": "1-day"}),
        client.get("/rollbar/test"),
        client.get("/rollbar/test/exception"),
    ]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    # The /rollbar/test routes belong to the Rollbar integration: not there when telemetry is off.
    assert [r.status_code for r in responses] == [200, 200, 404, 404]
    for response in responses:
        assert "traceresponse" not in response.headers
    # The relay is part of telemetry: not there when it is off.
    relayed = client.post(
        "/api/telemetry/v1/traces",
        data=b"{}",
        headers={"Origin": everything_configured.frontend_url, "Content-Type": "application/json"},
    )
    assert relayed.status_code == 404

    health = client.get("/api/health-check").get_json()
    assert health["telemetry"] == "off"
    assert set(health["integrations"]) == {package.NAME for package in integrations()}
    for name, status in health["integrations"].items():
        assert status["enabled"] is False, name
        assert status["reason"] == "CRUDDUR_TELEMETRY=off"

    access = [line for line in lines if line["logger"] == "cruddur.access"]
    assert len(access) == 4 and all(line["trace_id"] is None for line in access)  # plain lines, no trace ids
    for key in ("cruddur.tracer_provider", "cruddur.xray", "cruddur.cloudwatch", "cruddur.rollbar", "cruddur.relay"):
        assert key not in app.extensions
    assert not [h for h in logging.getLogger().handlers if isinstance(h, watchtower.CloudWatchLogHandler)]
    # No exporter, sender or poller thread; on PostgreSQL, the store's connection pool has its own.
    started = {t.name for t in set(threading.enumerate()) - threads_before}
    assert not {name for name in started if not name.startswith(("cruddur-scheduler", "cruddur-worker-"))}

    time.sleep(0.5)  # anything sent would have arrived on loopback by now
    assert otlp_receiver.spans() == []
    assert xray_listener.documents() == []
    assert rollbar_receiver.items() == []


def test_on_is_the_default_and_traces(everything_configured, otlp_receiver, xray_listener, rollbar_receiver):
    """The same configuration with the switch on: the integrations are there (the test above can fail)."""
    app = create_app(everything_configured.replace(cloudwatch_log_group=""))
    try:
        response = app.test_client().get("/api/activities/home")
        assert response.headers["traceresponse"].startswith("00-")
        health = app.test_client().get("/api/health-check").get_json()
        assert health["telemetry"] == "on"
        assert health["integrations"]["opentelemetry"]["enabled"] is True
        assert health["integrations"]["xray"]["enabled"] is True
        assert health["integrations"]["rollbar"]["enabled"] is True
    finally:
        app.extensions["cruddur.shutdown"].run()


@pytest.mark.slow
def test_off_under_gunicorn_runs_one_thread_per_worker(otlp_receiver, xray_listener, app_server_factory):
    server = app_server_factory(
        {
            "CRUDDUR_TELEMETRY": "off",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.url,
            "AWS_XRAY_DAEMON_ADDRESS": xray_listener.daemon_address,
            "ROLLBAR_ACCESS_TOKEN": TOKEN,
        }
    )
    (worker,) = server.wait_for_workers(1)
    import urllib.request

    for _ in range(5):
        with urllib.request.urlopen(server.url + "/api/activities/home", timeout=10) as response:
            assert response.headers.get("traceresponse") is None
            json.loads(response.read())
    assert len(list(Path(f"/proc/{worker}/task").iterdir())) == 1
    time.sleep(0.5)
    assert otlp_receiver.spans() == [] and xray_listener.documents() == []


def test_off_loads_no_telemetry_sdk(tmp_path):
    """In a fresh interpreter: after create_app with telemetry off, no SDK module is loaded."""
    import subprocess
    import sys

    script = (
        "import json, sys\n"
        "from cruddur import create_app\n"
        "from cruddur.config import Config\n"
        "app = create_app(Config.from_env({}).replace(env='test', database_url=sys.argv[1], telemetry='off',"
        " otlp_endpoint='http://127.0.0.1:9', xray_daemon_address='127.0.0.1:2000', rollbar_access_token='t',"
        " cloudwatch_log_group='g', aws_region='us-east-1'))\n"
        "assert app.test_client().get('/api/activities/home').status_code == 200\n"
        "prefixes = ('opentelemetry.sdk', 'opentelemetry.instrumentation', 'opentelemetry.exporter',"
        " 'aws_xray_sdk', 'watchtower', 'rollbar')\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('aws_xray_sdk', 'watchtower', 'rollbar')"
        " or m.startswith(prefixes[:3])]\n"
        "with open(sys.argv[2], 'w') as out:\n"
        "    json.dump({'loaded': loaded, 'api': 'opentelemetry.trace' in sys.modules}, out)\n"
    )
    result = tmp_path / "loaded.json"
    subprocess.run(
        [sys.executable, "-c", script, f"sqlite:///{tmp_path / 'off.db'}", str(result)],
        cwd=Path(__file__).resolve().parents[1],
        check=True,
        timeout=120,
        capture_output=True,
    )
    found = json.loads(result.read_text())
    assert found["loaded"] == []
    assert found["api"]  # the API may load (log lines ask it for the current span): the check can see modules


def test_span_is_a_no_op_when_off(config):
    from cruddur.telemetry.otel.spans import span

    app = create_app(config.replace(telemetry="off"))
    with app.test_request_context("/"), span("anything", **{"app.x": 1}) as current:
        assert current.is_recording() is False and current.get_span_context().is_valid is False
