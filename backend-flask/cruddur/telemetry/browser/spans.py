"""What the browser relay accepts: the frontend's OTLP trace exports, decoded, checked, cleaned.

Both encodings decode into opentelemetry-proto's `ExportTraceServiceRequest`; OTLP/JSON is protobuf's
JSON mapping with hex ids and integer-only enums (OTLP specification, "JSON Protobuf Encoding"). Only
what the frontend's web SDK sends passes: `service.name` `frontend-react-js`, INTERNAL (page load) or
CLIENT (fetch) spans, bounded sizes. Other resource attributes are dropped: none poses as another host.
"""

from __future__ import annotations

import base64
import json
import re

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

FRONTEND_SERVICE_NAME = "frontend-react-js"
ALLOWED_KINDS = frozenset({Span.SPAN_KIND_INTERNAL, Span.SPAN_KIND_CLIENT})
MAX_SPANS = 512
MAX_ATTRIBUTES = 64
MAX_VALUE_BYTES = 4096  # one attribute value; also one attribute key, span name or event name
MAX_DEPTH = 64  # nested JSON messages; OTLP's deepest legitimate nesting (a map in an array in a map) is far less
# The resource attributes a browser SDK sets (the SDK's own and the browser detector's); any
# other (service.namespace, host.*, cloud.*, k8s.*, deployment.*) is dropped before forwarding.
BROWSER_RESOURCE_ATTRIBUTES = frozenset(
    {"service.name", "telemetry.sdk.name", "telemetry.sdk.language", "telemetry.sdk.version", "user_agent.original"}
    | {"browser.brands", "browser.platform", "browser.mobile", "browser.language"}
)
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
# OTLP/JSON's fields, each with its other spelling: hex ids (Span, Link) and integer-only enums (Span, Status).
_HEX_IDS = {"traceId": "trace_id", "spanId": "span_id", "parentSpanId": "parent_span_id"}
_HEX_IDS |= {snake: camel for camel, snake in _HEX_IDS.items()}
_INTEGER_ENUMS = frozenset({"kind", "code"})


class RejectedExport(ValueError):
    """An export the relay does not forward; `code` is the error code the client receives."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def decode_export(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    """The checked, cleaned request from an OTLP body (`application/json` or protobuf); raises RejectedExport."""
    request = from_json(body) if content_type == "application/json" else from_protobuf(body)
    check(request)
    strip_resources(request)
    request.DiscardUnknownFields()  # fields this schema does not know are never forwarded
    return request


def span_count(request: ExportTraceServiceRequest) -> int:
    """How many spans the request holds."""
    return sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)


# -- decoding --------------------------------------------------------------------------------------
def _malformed(message: str, code: str = "otlp_malformed") -> RejectedExport:
    return RejectedExport(code, f"The body is not an OTLP export: {message}")


def from_protobuf(body: bytes) -> ExportTraceServiceRequest:
    """An OTLP/protobuf body."""
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, RecursionError) as error:
        raise _malformed(str(error)) from None
    return request


def from_json(body: bytes) -> ExportTraceServiceRequest:
    """An OTLP/JSON body: OTLP/JSON's own rules where its ids and enums appear, then protobuf's parser."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise _malformed("not JSON") from None
    if not isinstance(document, dict):
        raise _malformed("an export is a JSON object")
    _otlp_json(document, MAX_SPANS)
    try:
        return json_format.ParseDict(
            document, ExportTraceServiceRequest(), ignore_unknown_fields=True, max_recursion_depth=MAX_DEPTH
        )
    except (json_format.ParseError, TypeError, ValueError, RecursionError) as error:
        raise _malformed(str(error)) from None


def _otlp_json(node, budget: int, depth: int = 0) -> int:
    """Turn hex ids into the base64 protobuf's parser expects, check enums are integers, and count spans
    against `budget` before reading them; what is left of the budget."""
    if depth > 3 * MAX_DEPTH:  # a JSON object and list per message, and one more for a list's items
        raise _malformed("nested too deeply")
    if isinstance(node, list):
        for item in node:
            budget = _otlp_json(item, budget, depth + 1)
    elif isinstance(node, dict):
        if isinstance(spans := node.get("spans"), list):
            if (budget := budget - len(spans)) < 0:
                raise _too_many_spans()
            if not all(isinstance(span, dict) for span in spans):
                raise _malformed("a span is a JSON object")
        for key, value in node.items():
            if key in _HEX_IDS and value is not None:
                if _HEX_IDS[key] in node:
                    raise _malformed(f"{key} is given in both spellings")
                if not (isinstance(value, str) and _HEX.fullmatch(value)):
                    raise _malformed(f"{key} must be a hex string, not {value!r:.80}", "otlp_invalid_id")
                node[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
            elif key in _INTEGER_ENUMS:
                if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                    raise _malformed(f"{key} must be an integer, not {value!r:.80}")
            else:
                budget = _otlp_json(value, budget, depth + 1)
    return budget


# -- the rules -------------------------------------------------------------------------------------
def _too_many_spans() -> RejectedExport:
    return RejectedExport("otlp_too_many_spans", f"At most {MAX_SPANS} spans per export.")


def check(request: ExportTraceServiceRequest) -> None:
    """Raise RejectedExport unless every resource is the frontend and every span one it would send."""
    if span_count(request) > MAX_SPANS:
        raise _too_many_spans()
    for resource_spans in request.resource_spans:
        _check_attributes(resource_spans.resource.attributes)
        # One service.name at most (no attribute twice); a value that is not a string reads as "".
        service = next(
            (kv.value.string_value for kv in resource_spans.resource.attributes if kv.key == "service.name"), None
        )
        if service != FRONTEND_SERVICE_NAME:
            raise RejectedExport("otlp_service_not_allowed", f"Only service.name {FRONTEND_SERVICE_NAME} is relayed.")
        for scope_spans in resource_spans.scope_spans:
            _check_attributes(scope_spans.scope.attributes)
            for span in scope_spans.spans:
                _check_span(span)


def _check_span(span: Span) -> None:
    _check_id(span.trace_id, 16, "trace_id")
    _check_id(span.span_id, 8, "span_id")
    if span.parent_span_id:
        _check_id(span.parent_span_id, 8, "parent_span_id")
    if span.kind not in ALLOWED_KINDS:
        raise RejectedExport("otlp_span_kind_not_allowed", "Browser spans are INTERNAL or CLIENT.")
    _check_name(span.name)
    _check_attributes(span.attributes)
    for event in span.events:
        _check_name(event.name)
        _check_attributes(event.attributes)
    for link in span.links:
        _check_id(link.trace_id, 16, "link trace_id")
        _check_id(link.span_id, 8, "link span_id")
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
    return value.ByteSize() if which in ("array_value", "kvlist_value") else 0


def strip_resources(request: ExportTraceServiceRequest) -> None:
    """Keep only the browser's resource attributes (counting the others as dropped)."""
    for resource_spans in request.resource_spans:
        old = resource_spans.resource
        kept = [KeyValue(key=kv.key, value=kv.value) for kv in old.attributes if kv.key in BROWSER_RESOURCE_ATTRIBUTES]
        dropped = len(old.attributes) - len(kept) + old.dropped_attributes_count
        resource_spans.resource.CopyFrom(Resource(attributes=kept, dropped_attributes_count=dropped))
