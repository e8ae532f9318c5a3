"""What the browser relay accepts: the frontend's OTLP trace exports, decoded, checked, re-encoded.

Both OTLP/HTTP encodings are decoded into opentelemetry-proto's `ExportTraceServiceRequest`:
protobuf as it is, OTLP/JSON by the OTLP/JSON rules (trace and span ids are hex strings, not the
base64 of protobuf's JSON mapping; enum values are integers; 64-bit integers are strings or numbers).
The request must then look like what the frontend's web SDK sends (`@opentelemetry/sdk-trace-web`
with the document-load and fetch instrumentations): resource `service.name` `frontend-react-js`,
spans of kind INTERNAL (page load) or CLIENT (fetch), bounded sizes. Resource attributes other
than the browser's own are dropped, so no export can describe itself as another service or host.
What is forwarded is this request encoded again as protobuf, never the client's bytes.
"""

from __future__ import annotations

import json

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from . import otlp_json

FRONTEND_SERVICE_NAME = "frontend-react-js"
ALLOWED_KINDS = frozenset({Span.SPAN_KIND_INTERNAL, Span.SPAN_KIND_CLIENT})
MAX_SPANS = 512
MAX_ATTRIBUTES = 64
MAX_VALUE_BYTES = 4096  # one attribute value; also one attribute key, span name or event name
# The resource attributes a browser SDK sets (the SDK's own and the browser detector's); any
# other (service.namespace, host.*, cloud.*, k8s.*, deployment.*) is dropped before forwarding.
BROWSER_RESOURCE_ATTRIBUTES = frozenset(
    {
        "service.name",
        "telemetry.sdk.name",
        "telemetry.sdk.language",
        "telemetry.sdk.version",
        "browser.brands",
        "browser.platform",
        "browser.mobile",
        "browser.language",
        "user_agent.original",
    }
)
TRACE_ID_BYTES = 16
SPAN_ID_BYTES = 8


class RejectedExport(ValueError):
    """An export the relay does not forward; `code` is the error code the client receives."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def decode_export(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    """The checked, cleaned request from an OTLP body (`application/json` or protobuf); raises RejectedExport."""
    request = _from_json(body) if content_type == "application/json" else _from_protobuf(body)
    check(request)
    strip_resources(request)
    request.DiscardUnknownFields()  # fields this schema does not know are never forwarded
    return request


def span_count(request: ExportTraceServiceRequest) -> int:
    """How many spans the request holds."""
    return sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)


# -- decoding --------------------------------------------------------------------------------------
def _from_protobuf(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RecursionError) as error:
        raise RejectedExport("otlp_malformed", f"The body is not an OTLP protobuf export: {error}") from None
    return request


def _from_json(body: bytes) -> ExportTraceServiceRequest:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise RejectedExport("otlp_malformed", "The body is not JSON.") from None
    try:
        return otlp_json.parse(document, ExportTraceServiceRequest, limits={Span.DESCRIPTOR.full_name: MAX_SPANS})
    except otlp_json.TooMany:
        raise _too_many_spans() from None
    except otlp_json.MalformedOTLP as error:
        raise RejectedExport(error.code, f"The body is not an OTLP/JSON export: {error}") from None


# -- the rules -------------------------------------------------------------------------------------
def _too_many_spans() -> RejectedExport:
    return RejectedExport("otlp_too_many_spans", f"At most {MAX_SPANS} spans per export.")


def check(request: ExportTraceServiceRequest) -> None:
    """Raise RejectedExport unless every resource is the frontend and every span one it would send."""
    if span_count(request) > MAX_SPANS:
        raise _too_many_spans()
    for resource_spans in request.resource_spans:
        _check_attributes(resource_spans.resource.attributes)
        names = [kv.value for kv in resource_spans.resource.attributes if kv.key == "service.name"]
        if (
            len(names) != 1
            or names[0].WhichOneof("value") != "string_value"
            or (names[0].string_value != FRONTEND_SERVICE_NAME)
        ):
            raise RejectedExport("otlp_service_not_allowed", f"Only service.name {FRONTEND_SERVICE_NAME} is relayed.")
        for scope_spans in resource_spans.scope_spans:
            _check_attributes(scope_spans.scope.attributes)
            for span in scope_spans.spans:
                _check_span(span)


def _check_span(span: Span) -> None:
    _check_id(span.trace_id, TRACE_ID_BYTES, "trace_id")
    _check_id(span.span_id, SPAN_ID_BYTES, "span_id")
    if span.parent_span_id:
        _check_id(span.parent_span_id, SPAN_ID_BYTES, "parent_span_id")
    if span.kind not in ALLOWED_KINDS:
        raise RejectedExport("otlp_span_kind_not_allowed", "Browser spans are INTERNAL or CLIENT.")
    _check_name(span.name)
    _check_attributes(span.attributes)
    for event in span.events:
        _check_name(event.name)
        _check_attributes(event.attributes)
    for link in span.links:
        _check_id(link.trace_id, TRACE_ID_BYTES, "link trace_id")
        _check_id(link.span_id, SPAN_ID_BYTES, "link span_id")
        _check_attributes(link.attributes)


def _check_id(value: bytes, size: int, what: str) -> None:
    if len(value) != size or not any(value):
        raise RejectedExport("otlp_invalid_id", f"{what} must be {size} bytes, not all zero.")


def _check_name(name: str) -> None:
    if len(name.encode("utf-8")) > MAX_VALUE_BYTES:
        raise RejectedExport("otlp_name_too_long", f"Names and attribute keys are at most {MAX_VALUE_BYTES} bytes.")


def _check_attributes(attributes) -> None:
    if len(attributes) > MAX_ATTRIBUTES:
        raise RejectedExport("otlp_too_many_attributes", f"At most {MAX_ATTRIBUTES} attributes each.")
    keys = set()
    for attribute in attributes:
        _check_name(attribute.key)
        if attribute.key in keys:
            raise RejectedExport("otlp_duplicate_attribute", f"Attribute {attribute.key!r:.80} appears twice.")
        keys.add(attribute.key)
        if _value_bytes(attribute.value) > MAX_VALUE_BYTES:
            raise RejectedExport("otlp_attribute_too_large", f"An attribute value is at most {MAX_VALUE_BYTES} bytes.")


def _value_bytes(value: AnyValue) -> int:
    """A string's UTF-8 length, a byte string's length, an array's or map's encoded size."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return len(value.string_value.encode("utf-8"))
    if which == "bytes_value":
        return len(value.bytes_value)
    if which in ("array_value", "kvlist_value"):
        return value.ByteSize()
    return 0


def strip_resources(request: ExportTraceServiceRequest) -> None:
    """Keep only the browser's resource attributes (counting the others as dropped)."""
    for resource_spans in request.resource_spans:
        old = resource_spans.resource
        kept = [KeyValue(key=kv.key, value=kv.value) for kv in old.attributes if kv.key in BROWSER_RESOURCE_ATTRIBUTES]
        dropped = len(old.attributes) - len(kept) + old.dropped_attributes_count
        resource_spans.resource.CopyFrom(Resource(attributes=kept, dropped_attributes_count=dropped))
