"""The OTLP receiver speaks OTLP/HTTP: the SDK's own exporter (protobuf, gzip) and OTLP/JSON both decode."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.support.otlp_receiver import OTLPReceiver

BACKEND_DIR = Path(__file__).resolve().parents[1]


def tracer_for(url, compression=Compression.NoCompression, headers=None):
    """A tracer exporting synchronously to ``url`` with the real OTLP/HTTP protobuf exporter."""
    exporter = OTLPSpanExporter(endpoint=url, headers=headers, compression=compression, timeout=5)
    provider = TracerProvider(resource=Resource.create({"service.name": "support-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, provider.get_tracer("tests.support")


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_sdk_exporter_spans_are_decoded(otlp_receiver, compression):
    provider, tracer = tracer_for(otlp_receiver.traces_url, compression, {"x-honeycomb-team": "secret-key"})
    with tracer.start_as_current_span("GET /api/activities/home", kind=SpanKind.SERVER) as parent:
        parent.set_attribute("http.route", "/api/activities/home")
        with tracer.start_as_current_span("home-activities") as child:
            child.set_attribute("app.result_length", 5)
            child.set_attribute("app.tags", ["a", "b"])
            child.set_attribute("app.ratio", 0.5)
            child.set_attribute("app.cached", False)
            child.add_event("cache-miss", {"key": "home"})
            child.set_status(Status(StatusCode.ERROR, "boom"))
    provider.shutdown()

    spans = otlp_receiver.wait_for_spans(count=2)
    by_name = {s["name"]: s for s in spans}
    server, inner = by_name["GET /api/activities/home"], by_name["home-activities"]
    context = parent.get_span_context()
    assert server["trace_id"] == format(context.trace_id, "032x")
    assert server["span_id"] == format(context.span_id, "016x")
    assert server["parent_span_id"] is None
    assert server["kind"] == "SERVER"
    assert server["attributes"] == {"http.route": "/api/activities/home"}
    assert inner["parent_span_id"] == server["span_id"]
    assert inner["kind"] == "INTERNAL"
    assert inner["attributes"] == {
        "app.result_length": 5,
        "app.tags": ["a", "b"],
        "app.ratio": 0.5,
        "app.cached": False,
    }
    assert inner["events"][0]["name"] == "cache-miss"
    assert inner["events"][0]["attributes"] == {"key": "home"}
    assert inner["status"] == {"code": "ERROR", "message": "boom"}
    assert inner["resource"]["service.name"] == "support-test"
    assert inner["scope"] == "tests.support"
    assert inner["end_time_unix_nano"] >= inner["start_time_unix_nano"] > 0
    assert otlp_receiver.spans_for_trace(server["trace_id"].upper()) == otlp_receiver.spans_for_trace(
        server["trace_id"]
    )
    headers = otlp_receiver.headers()
    assert headers and all(h["x-honeycomb-team"] == "secret-key" for h in headers)
    assert all(h["content-type"] == "application/x-protobuf" for h in headers)
    if compression is Compression.Gzip:
        assert all(h["content-encoding"] == "gzip" for h in headers)


def test_otlp_json_encoding_with_hex_ids(otlp_receiver):
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "frontend"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "@opentelemetry/instrumentation-fetch", "version": "0.1"},
                        "spans": [
                            {
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "EEE19B7EC3C1B174",
                                "parentSpanId": "EEE19B7EC3C1B173",
                                "name": "HTTP GET",
                                "kind": 3,
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": "1544712661000000000",
                                "attributes": [
                                    {"key": "http.status_code", "value": {"intValue": "200"}},
                                    {"key": "http.url", "value": {"stringValue": "http://localhost:4567/x"}},
                                    {
                                        "key": "nested",
                                        "value": {
                                            "kvlistValue": {"values": [{"key": "k", "value": {"boolValue": True}}]}
                                        },
                                    },
                                ],
                                "status": {"code": 1},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    response = requests.post(otlp_receiver.traces_url, json=body, timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    (span,) = otlp_receiver.spans()
    assert span["trace_id"] == "5b8efff798038103d269b633813fc60c"
    assert span["span_id"] == "eee19b7ec3c1b174"
    assert span["parent_span_id"] == "eee19b7ec3c1b173"
    assert span["kind"] == "CLIENT"
    assert span["start_time_unix_nano"] == 1544712660000000000
    assert span["attributes"] == {"http.status_code": 200, "http.url": "http://localhost:4567/x", "nested": {"k": True}}
    assert span["status"]["code"] == "OK"
    assert span["resource"] == {"service.name": "frontend"}
    assert span["scope"] == "@opentelemetry/instrumentation-fetch"


def test_protobuf_answer_is_an_export_response_and_cors_preflight_passes(otlp_receiver):
    response = requests.post(
        otlp_receiver.traces_url, data=b"", headers={"Content-Type": "application/x-protobuf"}, timeout=5
    )
    assert response.status_code == 200
    ExportTraceServiceResponse().ParseFromString(response.content)
    preflight = requests.options(
        otlp_receiver.traces_url,
        headers={"Origin": "http://localhost:3000", "Access-Control-Request-Headers": "content-type"},
        timeout=5,
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert preflight.headers["Access-Control-Allow-Headers"] == "content-type"


@pytest.mark.parametrize(
    ("content_type", "body", "headers"),
    [
        ("application/x-protobuf", b"\xff\xff\xff not protobuf", {}),
        ("application/json", b"{not json", {}),
        ("application/json", json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}), {}),
        ("application/x-protobuf", b"not gzip", {"Content-Encoding": "gzip"}),
    ],
)
def test_garbage_is_rejected_with_400_and_nothing_stored(otlp_receiver, content_type, body, headers):
    response = requests.post(
        otlp_receiver.traces_url, data=body, headers={"Content-Type": content_type, **headers}, timeout=5
    )
    assert response.status_code == 400
    assert otlp_receiver.spans() == []


def test_unknown_path_is_404(otlp_receiver):
    assert requests.post(otlp_receiver.url + "/v1/logs", data=b"", timeout=5).status_code == 404
    assert otlp_receiver.request_count == 1


def test_metrics_are_decoded_and_garbage_is_400(otlp_receiver):
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    request = ExportMetricsServiceRequest()
    metric = (
        request.resource_metrics.add().scope_metrics.add().metrics.add(name="http.server.request.duration", unit="s")
    )
    point = metric.histogram.data_points.add(count=3, sum=0.25, bucket_counts=[1, 2], explicit_bounds=[0.1])
    point.attributes.add(key="http.route").value.string_value = "/api/activities/home"
    url = otlp_receiver.url + "/v1/metrics"
    assert requests.post(url, data=request.SerializeToString(), timeout=5).status_code == 200
    (received,) = otlp_receiver.metric_points("http.server.request.duration")
    assert (received["type"], received["count"], received["sum"]) == ("histogram", 3, 0.25)
    assert received["bucket_counts"] == [1, 2] and received["attributes"] == {"http.route": "/api/activities/home"}
    assert requests.post(url, data=b"\xff\xff", timeout=5).status_code == 400


def test_cli_prints_url_then_one_line_per_span():
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.otlp_receiver", "--port", "0"],
        cwd=BACKEND_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready = json.loads(process.stdout.readline())
        assert ready["url"].startswith("http://127.0.0.1:")
        provider, tracer = tracer_for(ready["traces_url"])
        with tracer.start_as_current_span("first"), tracer.start_as_current_span("second"):
            pass
        provider.shutdown()
        lines = [json.loads(process.stdout.readline()) for _ in range(2)]
        assert [span["name"] for span in lines] == ["second", "first"]
        assert lines[0]["parent_span_id"] == lines[1]["span_id"]
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_reset_forgets_spans():
    with OTLPReceiver() as receiver:
        provider, tracer = tracer_for(receiver.traces_url)
        with tracer.start_as_current_span("one"):
            pass
        provider.shutdown()
        assert receiver.span_count == 1
        receiver.reset()
        assert receiver.spans() == [] and receiver.request_count == 0
