"""The direct OTLP encoder writes exactly the bytes the SDK's encoder writes; the exporter falls back to the SDK."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from cruddur.telemetry.otel import otlp_wire
from cruddur.telemetry.otel.otlp_wire import (
    Unsupported,
    WireOTLPSpanExporter,
    encode_request,
    encode_spans_directly,
)
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
    span = ReadableSpan(name="huge", context=SpanContext(1, 1, is_remote=False), attributes={"n": 2**64})
    with pytest.raises(Unsupported):
        encode_request([span])
    # The exporter's encoder hands such a batch to the SDK's encoder: the SDK's own message.
    assert encode_spans_directly([span]) == encode_spans([span])
    written = make_spans()
    assert encode_spans_directly(written).SerializePartialToString() == encode_request(written)


# -- byte equality with the SDK's encoder, over generated spans ----------------------------------

scalars = st.one_of(
    st.text(max_size=8),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.binary(max_size=8),
)
values = st.recursive(
    st.one_of(scalars, st.none()),
    lambda inner: st.one_of(
        st.lists(st.one_of(scalars, st.none()), max_size=4),
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=4), inner, max_size=3),
    ),
    max_leaves=8,
)
attribute_dicts = st.dictionaries(st.text(max_size=6), values, max_size=5)
trace_ids = st.integers(min_value=1, max_value=2**128 - 1)
span_ids = st.integers(min_value=1, max_value=2**64 - 1)
trace_states = st.lists(
    st.tuples(
        st.from_regex(r"[a-z][a-z0-9_\-*/]{0,8}", fullmatch=True), st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True)
    ),
    max_size=3,
    unique_by=lambda kv: kv[0],
).map(TraceState)
times = st.integers(min_value=0, max_value=2**63 - 1)


def bounded(attributes, limit):
    """Attributes as the SDK keeps them: beyond `limit`, dropped and counted."""
    return BoundedAttributes(maxlen=limit, attributes=attributes, immutable=False)


@st.composite
def span_contexts(draw, remote=None):
    return SpanContext(
        draw(trace_ids),
        draw(span_ids),
        is_remote=draw(st.booleans()) if remote is None else remote,
        trace_flags=TraceFlags(draw(st.sampled_from((0, 1)))),
        trace_state=draw(trace_states),
    )


@st.composite
def readable_spans(draw, resources, scopes):
    limit = draw(st.integers(min_value=0, max_value=6))
    events = BoundedList.from_seq(
        draw(st.integers(min_value=0, max_value=3)),
        [
            Event(draw(st.text(max_size=6)), bounded(draw(attribute_dicts), limit), draw(times))
            for _ in range(draw(st.integers(min_value=0, max_value=3)))
        ],
    )
    links = BoundedList.from_seq(
        draw(st.integers(min_value=0, max_value=3)),
        [
            Link(draw(span_contexts()), bounded(draw(attribute_dicts), limit))
            for _ in range(draw(st.integers(min_value=0, max_value=3)))
        ],
    )
    code = draw(st.sampled_from(list(StatusCode)))
    return ReadableSpan(
        name=draw(st.text(max_size=10)),
        context=draw(span_contexts(remote=False)),
        parent=draw(st.one_of(st.none(), span_contexts())),
        resource=draw(st.sampled_from(resources)),
        attributes=bounded(draw(attribute_dicts), limit),
        events=events,
        links=links,
        kind=draw(st.sampled_from(list(SpanKind))),
        status=Status(code, draw(st.text(max_size=6)) if code is StatusCode.ERROR else None),
        start_time=draw(times),
        end_time=draw(st.one_of(st.none(), times)),
        instrumentation_scope=draw(st.sampled_from(scopes)),
    )


@st.composite
def batches(draw):
    resource_attributes = st.dictionaries(
        st.text(max_size=6),
        st.one_of(st.text(max_size=6), st.integers(-(2**63), 2**63 - 1), st.booleans(), st.floats(allow_nan=False)),
        max_size=4,
    )
    resources = [
        Resource(draw(resource_attributes), draw(st.sampled_from(["", "https://opentelemetry.io/schemas/1.21.0"])))
        for _ in range(draw(st.integers(min_value=1, max_value=2)))
    ]
    scopes = [None] + [
        InstrumentationScope(
            draw(st.text(max_size=6)),
            draw(st.one_of(st.none(), st.text(max_size=4))),
            draw(st.one_of(st.none(), st.just("https://opentelemetry.io/schemas/1.21.0"))),
            draw(st.one_of(st.none(), attribute_dicts)),
        )
        for _ in range(draw(st.integers(min_value=1, max_value=2)))
    ]
    return draw(st.lists(readable_spans(resources, scopes), min_size=1, max_size=4))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_same_bytes_as_the_sdk_encoder(spans):
    assert encode_spans_directly(spans).SerializePartialToString() == encode_spans(spans).SerializePartialToString()


def test_same_bytes_for_real_request_spans(traced_spans):
    assert encode_request(traced_spans) == encode_spans(traced_spans).SerializePartialToString()


# -- the guard and the exporter -------------------------------------------------------------------


def test_the_exporter_runs_the_sdk_export_with_the_direct_encoder_on_this_sdk():
    """Fails when the SDK changes under the guard: a version not verified, or an export without encode_spans."""
    assert WireOTLPSpanExporter.direct is True
    assert otlp_wire._sdk_export_with(encode_spans_directly) is not None


def test_an_unverified_sdk_gets_the_plain_sdk_export(monkeypatch):
    monkeypatch.setattr(otlp_wire, "_exporter_version", lambda: "9.0.0")
    assert otlp_wire._sdk_export_with(encode_spans_directly) is None


def test_the_fallback_exporter_delivers(otlp_receiver, monkeypatch):
    """With the guard closed, the exporter is the SDK's: its export, its encoder."""
    monkeypatch.setattr(otlp_wire, "_DIRECT_EXPORT", None)
    encoded = []
    monkeypatch.setattr(otlp_wire, "encode_request", lambda spans: encoded.append(spans) or b"")
    exporter = WireOTLPSpanExporter(endpoint=otlp_receiver.traces_url)
    spans = make_spans()
    assert exporter.export(spans).name == "SUCCESS"
    received = wait_for(lambda: len(otlp_receiver.spans()) == len(spans) and otlp_receiver.spans())
    assert {s["name"] for s in received} == {s.name for s in spans}
    assert encoded == []


def test_a_batch_the_direct_encoder_declines_is_delivered(otlp_receiver):
    span = ReadableSpan(name="huge", context=SpanContext(2**100, 7, is_remote=False), attributes={"n": 2**64, "ok": 1})
    exporter = WireOTLPSpanExporter(endpoint=otlp_receiver.traces_url)
    assert exporter.export([span, *make_spans()]).name == "SUCCESS"
    received = wait_for(lambda: otlp_receiver.spans())
    assert "huge" in {s["name"] for s in received}


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
