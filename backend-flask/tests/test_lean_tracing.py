"""Spans nothing reads are not recorded, and carry exactly the ids and flags the SDK would give them."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState

from cruddur import create_app
from cruddur.telemetry.otel import tracing
from cruddur.telemetry.otel.tracing import LeanTracerProvider, unconsumed_spans_supported

SAMPLERS = {
    "always_on": ALWAYS_ON,
    "always_off": ALWAYS_OFF,
    "parentbased_always_on": ParentBased(ALWAYS_ON),
    "parentbased_always_off": ParentBased(ALWAYS_OFF),
    "ratio": TraceIdRatioBased(0.5),
}


class SeededIds(IdGenerator):
    """The same sequence of ids for two providers given the same seed."""

    def __init__(self, seed: int):
        self.random = random.Random(seed)

    def generate_span_id(self) -> int:
        return self.random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self.random.getrandbits(128) or 1


parents = st.one_of(
    st.none(),
    st.builds(
        SpanContext,
        trace_id=st.integers(min_value=1, max_value=2**128 - 1),
        span_id=st.integers(min_value=1, max_value=2**64 - 1),
        is_remote=st.booleans(),
        trace_flags=st.sampled_from([TraceFlags(0), TraceFlags(1)]),
        trace_state=st.sampled_from([TraceState(), TraceState([("vendor", "v1"), ("x", "y")])]),
    ),
)


# Any sampler, parent, kind of the first span and number of children under it.
SPAN_TREES = {
    "sampler": st.sampled_from(sorted(SAMPLERS)),
    "parent": parents,
    "seed": st.integers(min_value=0, max_value=2**32),
    "kind": st.sampled_from(list(SpanKind)),
    "children": st.integers(min_value=0, max_value=3),
}


def providers(sampler: str, seed: int) -> tuple[LeanTracerProvider, TracerProvider]:
    """Ours and the SDK's, with the same sampler and the same id sequence."""
    lean = LeanTracerProvider(sampler=SAMPLERS[sampler], id_generator=SeededIds(seed), shutdown_on_exit=False)
    sdk = TracerProvider(sampler=SAMPLERS[sampler], id_generator=SeededIds(seed), shutdown_on_exit=False)
    return lean, sdk


def span_tree(provider, parent, kind, children) -> list[tuple[SpanContext, SpanKind, bool]]:
    """A `kind` span under `parent` with `children` INTERNAL spans: (context, kind, recording) of each."""
    context = trace.set_span_in_context(NonRecordingSpan(parent)) if parent is not None else None
    tracer = provider.get_tracer("test")
    found = []
    with tracer.start_as_current_span("server", context=context, kind=kind) as root:
        found.append((root.get_span_context(), kind, root.is_recording()))
        for n in range(children):
            with tracer.start_as_current_span(f"child {n}") as child:
                found.append((child.get_span_context(), SpanKind.INTERNAL, child.is_recording()))
    return found


@settings(max_examples=200, deadline=None)
@given(**SPAN_TREES)
def test_unconsumed_spans_have_the_sdk_ids_flags_and_state(sampler, parent, seed, kind, children):
    """The property: for any sampler and parent, the same span contexts as the SDK's own provider."""
    lean, sdk = providers(sampler, seed)
    ours, theirs = span_tree(lean, parent, kind, children), span_tree(sdk, parent, kind, children)
    assert [c for c, _, _ in ours] == [c for c, _, _ in theirs]
    assert not any(recording for _, _, recording in ours)


@settings(max_examples=200, deadline=None)
@given(**SPAN_TREES, read_kinds=st.sets(st.sampled_from(list(SpanKind))))
def test_a_processor_that_reads_some_spans_records_just_those(sampler, parent, seed, kind, children, read_kinds):
    """With a processor that reads only some spans (`reads`), those are recorded and given to it,
    the others are not; every span has the SDK's own ids, flags and state either way."""
    lean, sdk = providers(sampler, seed)
    seen = InMemorySpanExporter()
    lean.add_span_processor(SimpleSpanProcessor(seen), reads=lambda k: k in read_kinds)
    ours, theirs = span_tree(lean, parent, kind, children), span_tree(sdk, parent, kind, children)
    assert [c for c, _, _ in ours] == [c for c, _, _ in theirs]
    for (ctx, k, recording), (_, _, sdk_recording) in zip(ours, theirs, strict=True):
        assert recording == (sdk_recording and k in read_kinds), (k, ctx)
    assert sorted(s.context.span_id for s in seen.get_finished_spans()) == sorted(
        c.span_id for c, _, recording in ours if recording
    )
    assert lean.spans_consumed


def test_spans_are_recorded_once_a_processor_is_added():
    provider = LeanTracerProvider(shutdown_on_exit=False)
    tracer = provider.get_tracer("test")
    assert not tracer.start_span("before").is_recording()
    assert not provider.spans_consumed
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert provider.spans_consumed
    with tracer.start_as_current_span("after") as span:
        assert span.is_recording()
    assert [s.name for s in exporter.get_finished_spans()] == ["after"]


def test_this_sdk_is_one_the_shortcut_was_checked_against():
    """Fails when the SDK stops making a sampled NonRecordingSpan for the decision (the guard then closes)."""
    assert unconsumed_spans_supported()


def test_without_the_shortcut_the_provider_is_the_sdk_s(monkeypatch):
    monkeypatch.setattr(tracing, "unconsumed_spans_supported", lambda: False)
    provider = LeanTracerProvider(shutdown_on_exit=False)
    assert provider.spans_consumed
    assert provider.get_tracer("test").start_span("recorded").is_recording()


@pytest.mark.parametrize("flags", ["01", "00"])
def test_bare_app_answers_with_ids_and_the_caller_s_decision(config, capsys, flags):
    """No integration: nothing recorded, yet traceresponse and log lines carry the trace and its decision."""
    app = create_app(config)
    assert not app.extensions["cruddur.tracer_provider"].spans_consumed
    caller = f"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-{flags}"
    capsys.readouterr()
    response = app.test_client().post(
        "/api/activities", json={"message": "lean", "ttl": "1-day"}, headers={"traceparent": caller}
    )
    assert response.status_code == 200
    _version, trace_id, span_id, answered_flags = response.headers["traceresponse"].split("-")
    assert trace_id == "0af7651916cd43dd8448eb211c80319c" and span_id != "b7ad6b7169203331"
    assert answered_flags == flags
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "cruddur.access"]
    assert [(line["trace_id"], line["span_id"]) for line in access] == [(trace_id, span_id)]


def test_a_new_trace_is_sampled_and_x_ray_valid(config):
    app = create_app(config)
    _version, trace_id, _span_id, flags = (
        app.test_client().get("/api/activities/home").headers["traceresponse"].split("-")
    )
    assert flags == "01"
    import time

    assert abs(int(trace_id[:8], 16) - time.time()) < 60
