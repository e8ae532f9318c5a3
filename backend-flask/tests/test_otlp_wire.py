"""The direct OTLP encoder writes exactly the message the SDK's encoder builds."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from cruddur.telemetry.otlp_wire import Unsupported, WireOTLPSpanExporter, encode_request
from tests.support.waiting import wait_for

ATTRIBUTES = {
    "str": "héllo ✓ \u202e",
    "empty": "",
    "int": 42,
    "zero": 0,
    "negative": -7,
    "big": 2**62,
    "float": 3.25,
    "negative_float": -0.0,
    "true": True,
    "false": False,
    "strings": ("a", "", "ç"),
    "ints": (1, -2, 3),
    "floats": (0.5, 1e300),
    "bools": (True, False),
    "empty_list": (),
}


def make_spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "backend-flask", "n": 1}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("cruddur", "1.0", schema_url="https://opentelemetry.io/schemas/1.21.0")
    other = provider.get_tracer("opentelemetry.instrumentation.sqlite3")
    remote = SpanContext(
        0x5B8EFFF798038103D269B633813FC60C,
        0xEEE19B7EC3C1B174,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "value"), ("x", "y")]),
    )
    from opentelemetry import trace

    parent_ctx = trace.set_span_in_context(trace.NonRecordingSpan(remote))
    with tracer.start_as_current_span("GET /api/activities/home", context=parent_ctx, kind=SpanKind.SERVER) as root:
        root.set_attributes(ATTRIBUTES)
        root.add_event("exception", {"exception.type": "RuntimeError", "exception.message": "boom"})
        root.add_event("bare")
        with other.start_as_current_span("SELECT", kind=SpanKind.CLIENT, attributes={"db.system": "sqlite"}):
            pass
        with tracer.start_as_current_span("linked", links=[Link(remote, {"link.kind": "follows"})]) as linked:
            linked.set_status(Status(StatusCode.ERROR, "it failed"))
        for kind in (SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.INTERNAL):
            with tracer.start_as_current_span(f"kind {kind.name}", kind=kind) as s:
                s.set_status(Status(StatusCode.OK))
    # A second provider (another resource) in the same batch.
    exporter2 = InMemorySpanExporter()
    provider2 = TracerProvider(resource=Resource.create({"service.name": "other"}))
    provider2.add_span_processor(SimpleSpanProcessor(exporter2))
    with provider2.get_tracer("x").start_as_current_span("other resource"):
        pass
    return [*exporter.get_finished_spans(), *exporter2.get_finished_spans()]


def test_same_message_as_the_sdk_encoder():
    spans = make_spans()
    assert ExportTraceServiceRequest.FromString(encode_request(spans)) == encode_spans(spans)


def test_same_message_for_real_request_spans(traced_spans):
    assert traced_spans
    assert ExportTraceServiceRequest.FromString(encode_request(traced_spans)) == encode_spans(traced_spans)


@pytest.fixture
def traced_spans(config):
    """The spans of real requests: server, service and SQL spans from the app's own tracer."""
    from cruddur import create_app

    exporter = InMemorySpanExporter()
    app = create_app(config)
    app.extensions["cruddur.tracer_provider"].add_span_processor(SimpleSpanProcessor(exporter))
    client = app.test_client()
    client.get("/api/activities/home?term=x")
    client.post("/api/activities", json={"message": "wire", "ttl": "1-day"})
    client.get("/rollbar/test/exception")
    return exporter.get_finished_spans()


def test_values_it_cannot_write_go_to_the_sdk_encoder():
    from opentelemetry.sdk.trace import ReadableSpan

    span = ReadableSpan(name="huge", context=SpanContext(1, 1, is_remote=False), attributes={"n": 2**64})
    with pytest.raises(Unsupported):
        encode_request([span])


def test_the_exporter_delivers_to_a_real_receiver(otlp_receiver):
    exporter = WireOTLPSpanExporter(endpoint=otlp_receiver.traces_url, headers={"x-honeycomb-team": "k"})
    spans = make_spans()
    assert exporter.export(spans).name == "SUCCESS"
    received = wait_for(lambda: len(otlp_receiver.spans()) == len(spans) and otlp_receiver.spans())
    assert {s["name"] for s in received} == {s.name for s in spans}
    server = next(s for s in received if s["name"] == "GET /api/activities/home")
    assert server["attributes"]["strings"] == ["a", "", "ç"]
    assert server["attributes"]["negative"] == -7
    assert otlp_receiver.headers()[0]["x-honeycomb-team"] == "k"
