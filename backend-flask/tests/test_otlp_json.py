"""The relay's OTLP/JSON decoding (cruddur.telemetry.browser.spans) against the OTLP receiver stand-in.

The stand-in decodes OTLP/JSON on its own (every hex id anywhere into base64, then protobuf's
parser); on every valid document both must build the same message. Where OTLP/JSON is stricter
than protobuf's mapping (hex ids, integer enums), the relay refuses.
"""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from cruddur.telemetry.browser import spans as relay_spans
from cruddur.telemetry.browser.spans import RejectedExport, decode_export
from tests.support.browser_exports import json_document, json_span
from tests.support.otlp_receiver import decode_request


def reference(document: dict) -> ExportTraceServiceRequest:
    """protobuf's parser, through the receiver stand-in (which converts hex ids first)."""
    return decode_request(json.dumps(document).encode(), "application/json")


def ours(document: dict) -> ExportTraceServiceRequest:
    return relay_spans.from_json(json.dumps(document).encode())


# -- generated documents ---------------------------------------------------------------------------
hex_ids = st.binary(min_size=8, max_size=8).map(bytes.hex)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
scalars = st.one_of(
    st.text(max_size=20).map(lambda v: {"stringValue": v}),
    st.booleans().map(lambda v: {"boolValue": v}),
    int64.flatmap(lambda v: st.sampled_from([{"intValue": v}, {"intValue": str(v)}])),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda v: {"doubleValue": v}),
    st.binary(max_size=20).map(lambda v: {"bytesValue": base64.b64encode(v).decode()}),
    st.just({}),  # an empty AnyValue
)
any_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda vs: {"arrayValue": {"values": vs}}),
        st.lists(st.tuples(st.text(max_size=8), inner), max_size=4).map(
            lambda kvs: {"kvlistValue": {"values": [{"key": k, "value": v} for k, v in kvs]}}
        ),
    ),
    max_leaves=12,
)
attributes = st.lists(st.tuples(st.text(max_size=12), any_values), max_size=5).map(
    lambda kvs: [{"key": k, "value": v} for k, v in kvs]
)
uint64 = st.integers(min_value=0, max_value=2**64 - 1).flatmap(lambda v: st.sampled_from([v, str(v)]))
events = st.fixed_dictionaries(
    {"name": st.text(max_size=10), "timeUnixNano": uint64, "attributes": attributes},
    optional={"droppedAttributesCount": st.integers(0, 2**32 - 1)},
)
links = st.fixed_dictionaries(
    {"traceId": hex_ids.map(lambda h: h * 2), "spanId": hex_ids, "attributes": attributes},
    optional={"traceState": st.text(max_size=10), "flags": st.integers(0, 2**32 - 1)},
)
spans = st.fixed_dictionaries(
    {
        "traceId": hex_ids.map(lambda h: h * 2),
        "spanId": hex_ids,
        "name": st.text(max_size=20),
        "kind": st.integers(0, 5),
        "startTimeUnixNano": uint64,
        "endTimeUnixNano": uint64,
        "attributes": attributes,
    },
    optional={
        "parentSpanId": st.one_of(hex_ids, st.just("")),
        "traceState": st.text(max_size=10),
        "flags": st.integers(0, 2**32 - 1),
        "droppedAttributesCount": st.integers(0, 2**32 - 1),
        "events": st.lists(events, max_size=3),
        "droppedEventsCount": st.integers(0, 2**32 - 1),
        "links": st.lists(links, max_size=2),
        "droppedLinksCount": st.integers(0, 2**32 - 1),
        "status": st.fixed_dictionaries({}, optional={"code": st.integers(0, 2), "message": st.text(max_size=10)}),
    },
)
documents = st.lists(
    st.fixed_dictionaries(
        {
            "resource": st.fixed_dictionaries({"attributes": attributes}),
            "scopeSpans": st.lists(
                st.fixed_dictionaries(
                    {
                        "scope": st.fixed_dictionaries(
                            {"name": st.text(max_size=10), "version": st.text(max_size=5), "attributes": attributes}
                        ),
                        "spans": st.lists(spans, max_size=3),
                    },
                    optional={"schemaUrl": st.text(max_size=10)},
                ),
                max_size=2,
            ),
        },
        optional={"schemaUrl": st.text(max_size=10)},
    ),
    max_size=2,
).map(lambda rs: {"resourceSpans": rs})


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(documents)
def test_same_message_as_protobufs_parser_on_valid_documents(document):
    assert ours(document) == reference(document)


@pytest.mark.parametrize(
    "document",
    [
        json_document(),
        json_document([json_span(traceId="5B8EFFF798038103D269B633813FC60C")]),
        json_document([json_span(startTimeUnixNano=1.7e18, endTimeUnixNano="1700000000100000000")]),
        json_document([json_span(status={"code": 2, "message": "boom"}, unknownField=[1, 2])]),
        {"resource_spans": [{"scope_spans": [{"spans": [json_span()]}]}]},  # snake_case, as protobuf takes
        {"resourceSpans": [{"resource": None, "scopeSpans": []}]},  # null is the default value
        {"resourceSpans": [{"resource": {"attributes": [{"key": "d", "value": {"doubleValue": "NaN"}}]}}]},
        {"resourceSpans": [{"resource": {"attributes": [{"key": "b", "value": {"bytesValue": "_-8"}}]}}]},
    ],
    ids=["browser", "upper-hex", "float-and-string-times", "unknown-field", "snake-case", "null", "nan", "urlsafe"],
)
def test_same_message_on_edge_cases(document):
    ours_message, reference_message = ours(document), reference(document)
    assert ours_message.SerializeToString(deterministic=True) == reference_message.SerializeToString(deterministic=True)


@pytest.mark.parametrize(
    "document",
    [
        {"resourceSpans": {}},
        {"resourceSpans": [{"scopeSpans": [{"spans": [json_span(name=7)]}]}]},
        {"resourceSpans": [{"scopeSpans": [{"spans": [json_span(startTimeUnixNano="1.5")]}]}]},
        {"resourceSpans": [{"scopeSpans": [{"spans": [json_span(startTimeUnixNano=-1)]}]}]},
        {"resourceSpans": [{"scopeSpans": [{"spans": [json_span(startTimeUnixNano=2**64)]}]}]},
        {"resourceSpans": [{"scopeSpans": [{"spans": [json_span(droppedAttributesCount=True)]}]}]},
        {"resourceSpans": [{"scopeSpans": [{"spans": [json_span(attributes=[None])]}]}]},
        {"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value": {"boolValue": "true"}}]}}]},
        {"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value": {"stringValue": "\ud800"}}]}}]},
        {"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value": {"stringValue": "a", "intValue": 1}}]}}]},
    ],
    ids=[
        "object-for-list",
        "number-for-string",
        "fraction-for-integer",
        "negative-unsigned",
        "over-uint64",
        "bool-for-integer",
        "null-in-list",
        "string-for-bool",
        "lone-surrogate",
        "two-values-of-a-oneof",
    ],
)
def test_what_protobufs_parser_refuses_is_refused(document):
    with pytest.raises(RejectedExport) as refused:
        ours(document)
    assert refused.value.code == "otlp_malformed"
    with pytest.raises(Exception):  # noqa: B017 - the reference refuses it too, whichever way it says so
        reference(document)


@pytest.mark.parametrize(
    ("span", "code"),
    [
        (json_span(traceId="W47/95gDgQPSabYzgT/GDA=="), "otlp_invalid_id"),
        (json_span(spanId="eee19b7ec3c1b17"), "otlp_invalid_id"),  # odd length
        (json_span(parentSpanId=12), "otlp_invalid_id"),
        (json_span(kind="SPAN_KIND_CLIENT"), "otlp_malformed"),
        (json_span(status={"code": "STATUS_CODE_OK"}), "otlp_malformed"),
    ],
)
def test_stricter_than_protobufs_mapping_where_otlp_json_is(span, code):
    with pytest.raises(RejectedExport) as refused:
        ours(json_document([span]))
    assert refused.value.code == code


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"resourceSpans": [[]]},
        {"resourceSpans": [{"scopeSpans": [{"spans": ["span"]}]}]},
        {"resourceSpans": [{"scopeSpans": [{"spans": [json_span(status="ok")]}]}]},
        {"resourceSpans": [{"scopeSpans": [{"spans": [{**json_span(), "trace_id": "00" * 16}]}]}]},
    ],
    ids=["array", "list-for-object", "string-for-span", "string-for-status", "id-in-both-spellings"],
)
def test_refused_where_protobufs_parser_is_lenient(document):
    reference(document)  # protobuf's parser takes these (a list or a string as a message, last spelling wins)
    with pytest.raises(RejectedExport):  # by the OTLP/JSON rules, or as a span or resource with nothing in it
        decode_export(json.dumps(document).encode(), "application/json")


def test_the_span_limit_stops_before_converting():
    too_many = [json_span(traceId="not hex") for _ in range(relay_spans.MAX_SPANS + 1)]
    with pytest.raises(RejectedExport) as refused:
        ours(json_document(too_many))
    assert refused.value.code == "otlp_too_many_spans"  # refused for the count, before any id is read


def test_nesting_is_bounded():
    value: dict = {"stringValue": "x"}
    for _ in range(relay_spans.MAX_DEPTH):
        value = {"arrayValue": {"values": [value]}}
    document = {"resourceSpans": [{"resource": {"attributes": [{"key": "deep", "value": value}]}}]}
    with pytest.raises(RejectedExport, match="too deep"):
        ours(document)


@pytest.mark.parametrize(
    "trace_id",
    [
        "W47/95gDgQPSabYzgT/GDA==",  # base64
        "ABCDEF0123456789abcdef",  # base64 without padding that is all hex digits: 11 bytes as hex
        "5b 8e ff f7 98 03 81 03 d2 69 b6 33 81 3f c6 0c",  # hex with spaces (bytes.fromhex takes them)
    ],
)
def test_the_relay_and_the_receiver_stand_in_refuse_what_is_not_a_hex_id(trace_id):
    body = json.dumps(json_document([json_span(traceId=trace_id)])).encode()
    with pytest.raises(Exception, match="hex"):
        reference(json.loads(body))
    with pytest.raises(RejectedExport) as refused:
        decode_export(body, "application/json")
    assert refused.value.code == "otlp_invalid_id"
