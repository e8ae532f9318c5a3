"""OTLP trace exports shaped like the frontend's, in both encodings, for the relay's tests.

``export_json`` writes OTLP/JSON the way the JS exporter's JSON serializer does (hex ids, integer
enums, 64-bit integers as strings); ``export_protobuf`` builds opentelemetry-proto messages. Each
takes overrides, so a test changes one thing and keeps the rest valid.
"""

from __future__ import annotations

import json

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_ID = "eee19b7ec3c1b174"
PARENT_ID = "53995c3f42cd8ad8"
LINK_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
LINK_SPAN_ID = "b7ad6b7169203331"
FRONTEND_RESOURCE = {
    "service.name": "frontend-react-js",
    "telemetry.sdk.language": "webjs",
    "telemetry.sdk.name": "opentelemetry",
    "telemetry.sdk.version": "2.12.0",
}
KIND_INTERNAL, KIND_SERVER, KIND_CLIENT = 1, 2, 3


def json_attributes(values: dict) -> list[dict]:
    """OTLP/JSON KeyValue list (strings, ints as strings, bools, floats)."""
    out = []
    for key, value in values.items():
        if isinstance(value, bool):
            out.append({"key": key, "value": {"boolValue": value}})
        elif isinstance(value, int):
            out.append({"key": key, "value": {"intValue": str(value)}})
        elif isinstance(value, float):
            out.append({"key": key, "value": {"doubleValue": value}})
        else:
            out.append({"key": key, "value": {"stringValue": value}})
    return out


def json_span(name="HTTP GET", kind=KIND_CLIENT, trace_id=TRACE_ID, span_id=SPAN_ID, **fields) -> dict:
    """One span as the JS exporter writes it (a fetch span with an event and a link)."""
    span = {
        "traceId": trace_id,
        "spanId": span_id,
        "parentSpanId": PARENT_ID,
        "name": name,
        "kind": kind,
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000000100000000",
        "attributes": json_attributes(
            {"http.method": "GET", "http.url": "http://localhost:4567/api/activities/home", "http.status_code": 200}
        ),
        "droppedAttributesCount": 0,
        "events": [{"name": "fetchStart", "timeUnixNano": "1700000000000100000", "attributes": []}],
        "droppedEventsCount": 0,
        "status": {"code": 0},
        "links": [{"traceId": LINK_TRACE_ID, "spanId": LINK_SPAN_ID, "attributes": [], "droppedAttributesCount": 0}],
        "droppedLinksCount": 0,
        "flags": 257,
    }
    span.update(fields)
    return span


def json_document(spans=None, resource=None, scope="@opentelemetry/instrumentation-fetch") -> dict:
    """An OTLP/JSON ExportTraceServiceRequest as a dict."""
    attributes = resource if isinstance(resource, list) else json_attributes(resource or FRONTEND_RESOURCE)
    spans = spans if spans is not None else [json_span()]
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": attributes, "droppedAttributesCount": 0},
                "scopeSpans": [{"scope": {"name": scope, "version": "0.223.0"}, "spans": spans}],
            }
        ]
    }


def export_json(spans=None, resource=None, **kwargs) -> bytes:
    """An OTLP/JSON body."""
    return json.dumps(json_document(spans, resource, **kwargs)).encode()


def any_value(value) -> AnyValue:
    """A Python value as an OTLP AnyValue (lists become arrays, dicts key-value lists)."""
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        out = AnyValue()
        out.array_value.values.extend(any_value(v) for v in value)
        return out
    if isinstance(value, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(key_values(value))
        return out
    return AnyValue(string_value=value)


def key_values(values: dict) -> list[KeyValue]:
    """A dict as repeated KeyValue."""
    return [KeyValue(key=key, value=any_value(value)) for key, value in values.items()]


def proto_span(name="documentLoad", kind=KIND_INTERNAL, trace_id=TRACE_ID, span_id=SPAN_ID, attributes=None, **fields):
    """One protobuf Span (a page-load span by default)."""
    span = Span(
        trace_id=bytes.fromhex(trace_id),
        span_id=bytes.fromhex(span_id),
        name=name,
        kind=kind,
        start_time_unix_nano=1_700_000_000_000_000_000,
        end_time_unix_nano=1_700_000_000_200_000_000,
        attributes=key_values(attributes if attributes is not None else {"http.url": "http://localhost:3000/"}),
        **fields,
    )
    return span


def proto_request(spans=None, resource=None, scope="@opentelemetry/instrumentation-document-load"):
    """An ExportTraceServiceRequest message."""
    resource_attributes = resource if isinstance(resource, list) else key_values(resource or FRONTEND_RESOURCE)
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=Resource(attributes=resource_attributes),
                scope_spans=[
                    ScopeSpans(
                        scope=InstrumentationScope(name=scope, version="0.68.0"),
                        spans=spans if spans is not None else [proto_span()],
                    )
                ],
            )
        ]
    )


def export_protobuf(spans=None, resource=None, **kwargs) -> bytes:
    """An OTLP protobuf body."""
    return proto_request(spans, resource, **kwargs).SerializeToString()
