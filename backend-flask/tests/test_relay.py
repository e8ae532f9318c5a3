"""The browser span relay, POST /api/telemetry/v1/traces, forwarding to a real OTLP receiver."""

from __future__ import annotations

import json
import time

import pytest

from cruddur import create_app
from tests.support.waiting import wait_for

ORIGIN = "http://localhost:3000"
TRACE_ID = "5b8efff798038103d269b633813fc60c"


def otlp_json(name="documentLoad", trace_id=TRACE_ID, span_id="eee19b7ec3c1b174"):
    """A minimal OTLP/JSON export, as the browser's exporter sends it."""
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": "frontend-react-js"}}]
                    },
                    "scopeSpans": [
                        {
                            "scope": {"name": "browser"},
                            "spans": [
                                {
                                    "traceId": trace_id,
                                    "spanId": span_id,
                                    "name": name,
                                    "kind": 3,
                                    "startTimeUnixNano": "1700000000000000000",
                                    "endTimeUnixNano": "1700000000100000000",
                                }
                            ],
                        }
                    ],
                }
            ]
        }
    )


def otlp_protobuf():
    """A real protobuf ExportTraceServiceRequest, encoded by the OpenTelemetry SDK."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "frontend-react-js"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("browser").start_span("click").end()
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


def post(client, body, content_type="application/json", origin=ORIGIN, **headers):
    if origin:
        headers["Origin"] = origin
    return client.post("/api/telemetry/v1/traces", data=body, content_type=content_type, headers=headers)


@pytest.fixture
def relay_app(config, otlp_receiver):
    return create_app(config.replace(otlp_endpoint=otlp_receiver.url, otlp_headers={"x-honeycomb-team": "server-key"}))


def relay_status(app):
    return app.test_client().get("/api/health-check").json["integrations"]["browser_relay"]


def test_forwards_json_and_protobuf_with_the_server_side_key(relay_app, otlp_receiver):
    client = relay_app.test_client()
    assert post(client, otlp_json()).status_code == 204
    assert post(client, otlp_protobuf(), "application/x-protobuf").status_code == 204
    spans = otlp_receiver.wait_for_spans(lambda s: s["resource"].get("service.name") == "frontend-react-js", count=2)
    assert {s["name"] for s in spans} >= {"documentLoad", "click"}
    assert next(s for s in spans if s["name"] == "documentLoad")["trace_id"] == TRACE_ID
    assert all(h.get("x-honeycomb-team") == "server-key" for h in otlp_receiver.headers())
    wait_for(lambda: relay_status(relay_app)["sent"] == 2)


def test_the_browser_never_needs_or_sees_the_key(relay_app):
    response = post(relay_app.test_client(), otlp_json())
    assert "server-key" not in str(response.headers) + response.get_data(as_text=True)
    assert "server-key" not in json.dumps(relay_app.test_client().get("/api/health-check").json)


@pytest.mark.parametrize(
    ("origin", "status"),
    [(None, 403), ("http://evil.example", 403), ("http://localhost:4567", 403), (ORIGIN, 204)],
)
def test_only_the_frontend_origin(relay_app, origin, status):
    response = post(relay_app.test_client(), otlp_json(), origin=origin)
    assert response.status_code == status
    if status != 204:
        assert response.json["errors"] == ["forbidden"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_only_otlp_content_types(relay_app, content_type):
    response = post(relay_app.test_client(), otlp_json(), content_type)
    assert (response.status_code, response.json["errors"]) == (415, ["unsupported_media_type"])


def test_bodies_over_512_kib_are_refused(relay_app):
    client = relay_app.test_client()
    assert post(client, b"x" * (512 * 1024 + 1), "application/x-protobuf").status_code == 413
    assert post(client, otlp_json() + " " * (512 * 1024 - len(otlp_json()))).status_code == 204


def test_rate_limited_per_client(relay_app):
    client = relay_app.test_client()
    statuses = [post(client, otlp_json()).status_code for _ in range(40)]
    assert statuses[:20] == [204] * 20
    assert 429 in statuses
    limited = post(client, otlp_json())
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    other = client.post(
        "/api/telemetry/v1/traces",
        data=otlp_json(),
        content_type="application/json",
        headers={"Origin": ORIGIN},
        environ_base={"REMOTE_ADDR": "10.9.8.7"},
    )
    assert other.status_code == 204  # another client has its own budget


def test_a_slow_vendor_never_blocks_the_request(relay_app, otlp_receiver):
    otlp_receiver.delay = 3
    otlp_receiver.mode = "slow"
    client = relay_app.test_client()
    started = time.monotonic()
    for _ in range(5):
        assert post(client, otlp_json()).status_code == 204
    assert time.monotonic() - started < 1.0
    assert relay_status(relay_app)["queued"] >= 4


def test_a_blackholed_vendor_fills_the_bounded_queue_and_counts_drops(relay_app, otlp_receiver):
    otlp_receiver.mode = "blackhole"
    relay = relay_app.extensions["cruddur.relay"]
    relay.sender.max_queue = 3
    for i in range(8):
        relay.limits._buckets.clear()
        assert post(relay_app.test_client(), otlp_json(span_id=f"{i:016x}")).status_code == 204
    status = relay_status(relay_app)
    assert status["queued"] <= 4 and status["dropped"] >= 4


def test_shutdown_delivers_what_is_queued(relay_app, otlp_receiver):
    otlp_receiver.delay = 0.2
    otlp_receiver.mode = "slow"
    client = relay_app.test_client()
    for i in range(4):
        post(client, otlp_json(span_id=f"{i + 1:016x}"))
    relay_app.extensions["cruddur.shutdown"].run()
    assert len([s for s in otlp_receiver.spans() if s["name"] == "documentLoad"]) == 4


def test_off_answers_204_and_drops(client):
    assert post(client, otlp_json()).status_code == 204
    status = client.get("/api/health-check").json["integrations"]["browser_relay"]
    assert status["enabled"] is False and status["sent"] == 0


def test_preflight_from_the_frontend(relay_app):
    response = relay_app.test_client().options(
        "/api/telemetry/v1/traces",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
