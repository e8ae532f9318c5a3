"""``python -m tests.support.sinks`` runs all four stand-ins in another process, switchable and countable."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import requests
from aws_xray_sdk.core.emitters.udp_emitter import UDPEmitter
from aws_xray_sdk.core.models.segment import Segment
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

BACKEND_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture
def sinks_process():
    """The sinks CLI, started and read until ready; yields (process, addresses)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.sinks", "--otlp-port", "0", "--xray-port", "0"],
        cwd=BACKEND_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield process, json.loads(process.stdout.readline())
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_everything_arrives_and_the_summary_counts_it(sinks_process):
    process, ready = sinks_process
    env = ready["env"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == ready["otlp_url"]
    assert env["ROLLBAR_ENDPOINT"].endswith("/api/1/")
    assert env["AWS_ENDPOINT_URL_CLOUDWATCH_LOGS"] == ready["cloudwatch_endpoint"]
    assert all(
        value.startswith(("http://127.0.0.1:", "127.0.0.1:"))
        for key, value in env.items()
        if "ADDR" in key or "URL" in key or "ENDPOINT" in key
    )

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=ready["otlp_traces_url"], timeout=5)))
    with provider.get_tracer("sinks").start_as_current_span("GET /", kind=SpanKind.SERVER):
        pass
    provider.shutdown()

    UDPEmitter(ready["xray_daemon_address"]).send_entity(Segment("backend-flask"))

    item = {"access_token": "t", "data": {"body": {"message": {"body": "hi"}}}}
    assert requests.post(ready["rollbar_endpoint"] + "item/", json=item, timeout=5).json()["err"] == 0

    logs = boto3.client(
        "logs",
        endpoint_url=ready["cloudwatch_endpoint"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    logs.create_log_group(logGroupName="cruddur")
    logs.create_log_stream(logGroupName="cruddur", logStreamName="s")
    logs.put_log_events(
        logGroupName="cruddur",
        logStreamName="s",
        logEvents=[{"timestamp": int(time.time() * 1000), "message": "{}"} for _ in range(3)],
    )

    stats = requests.get(ready["control_url"] + "/stats", timeout=10).json()
    assert stats["spans"] == 1 and stats["server_spans"] == 1
    assert stats["log_events_by_group"] == {"cruddur": 3}

    mode = requests.post(ready["control_url"] + "/mode", json={"sink": "rollbar", "mode": "status429"}, timeout=5)
    assert mode.status_code == 200
    assert requests.post(ready["rollbar_endpoint"] + "item/", json=item, timeout=5).status_code == 429
    bad = requests.post(ready["control_url"] + "/mode", json={"sink": "nope", "mode": "ok"}, timeout=5)
    assert bad.status_code == 400

    process.send_signal(signal.SIGTERM)
    summary = json.loads(process.stdout.readline())
    assert process.wait(timeout=15) == 0
    assert summary["spans"] == 1
    assert summary["segments"] == 1
    assert summary["rollbar_items"] == 1
    assert summary["log_events"] == 3
    assert summary["requests"]["rollbar"] == {"ok": 1, "status429": 1}


def test_starting_in_a_fault_mode_applies_to_every_http_sink():
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.sinks", "--mode", "refuse"],
        cwd=BACKEND_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready = json.loads(process.stdout.readline())
        for url in (ready["otlp_traces_url"], ready["rollbar_endpoint"] + "item/", ready["cloudwatch_endpoint"]):
            with pytest.raises(requests.ConnectionError):
                requests.post(url, data=b"{}", timeout=2)
        process.send_signal(signal.SIGINT)
        summary = json.loads(process.stdout.readline())
        assert summary["spans"] == 0 and summary["requests"]["otlp"] == {}
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
