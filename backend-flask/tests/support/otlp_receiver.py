"""OTLP/HTTP trace receiver: decodes ``ExportTraceServiceRequest`` (protobuf or OTLP JSON) into plain dicts.

Each span becomes::

    {"trace_id": "<32 hex>", "span_id": "<16 hex>", "parent_span_id": "<16 hex>" or None,
     "name": str, "kind": "SERVER" | "CLIENT" | "INTERNAL" | "PRODUCER" | "CONSUMER" | "UNSPECIFIED",
     "start_time_unix_nano": int, "end_time_unix_nano": int, "attributes": {...},
     "status": {"code": "UNSET" | "OK" | "ERROR", "message": str},
     "events": [{"name", "time_unix_nano", "attributes"}], "links": [{"trace_id", "span_id", "attributes"}],
     "resource": {...resource attributes...}, "scope": str, "scope_version": str}

``POST /v1/metrics`` (protobuf) is decoded too: each data point becomes::

    {"name": str, "unit": str, "type": "histogram" | "sum" | "gauge", "attributes": {...},
     "resource": {...}, "scope": str, "start_time_unix_nano": int, "time_unix_nano": int,
     "count": int, "sum": float, "bucket_counts": [...], "explicit_bounds": [...]   (histogram)
     "value": int | float, "is_monotonic": bool                                    (sum, gauge)}

Run alone (the frontend's e2e test reads the stream)::

    python -m tests.support.otlp_receiver --port 0
    -> {"url": "http://127.0.0.1:PORT", "traces_url": ".../v1/traces"}, then one JSON line per span
"""

import argparse
import base64
import json
import re
import signal
import sys
import threading

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.support.faulty_http import MODES, BadRequest, FaultyHTTPServer, Response
from tests.support.waiting import wait_for

TRACES_PATH = "/v1/traces"
METRICS_PATH = "/v1/metrics"
_KIND_NAMES = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
_STATUS_NAMES = {0: "UNSET", 1: "OK", 2: "ERROR"}
_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def any_value(value):
    """Decode an OTLP ``AnyValue`` into the matching Python value."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return key_values(value.kvlist_value.values)
    return getattr(value, which)


def key_values(pairs):
    """Decode repeated ``KeyValue`` into a dict."""
    return {pair.key: any_value(pair.value) for pair in pairs}


def _hex(raw):
    return raw.hex() if raw else None


def span_dict(span, resource, scope):
    """One protobuf ``Span`` as a plain dict (see the module docstring)."""
    return {
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": _hex(span.parent_span_id),
        "trace_state": span.trace_state,
        "name": span.name,
        "kind": _KIND_NAMES.get(span.kind, str(span.kind)),
        "start_time_unix_nano": span.start_time_unix_nano,
        "end_time_unix_nano": span.end_time_unix_nano,
        "attributes": key_values(span.attributes),
        "status": {"code": _STATUS_NAMES.get(span.status.code, str(span.status.code)), "message": span.status.message},
        "events": [
            {"name": e.name, "time_unix_nano": e.time_unix_nano, "attributes": key_values(e.attributes)}
            for e in span.events
        ],
        "links": [
            {"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(), "attributes": key_values(link.attributes)}
            for link in span.links
        ],
        "resource": resource,
        "scope": scope.name,
        "scope_version": scope.version,
    }


def _ids_hex_to_base64(node):
    """OTLP/JSON writes ids as hex, never base64 (specification, "JSON Protobuf Encoding"), of their exact size.

    protobuf's JSON parser expects base64 for bytes fields, so each id is turned into that first.
    """
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                size = 16 if key in ("traceId", "trace_id") else 8
                if not (re.fullmatch(r"[0-9a-fA-F]*", value) and len(value) in (2 * size, 0)):
                    raise BadRequest(f"{key} is not {size} bytes in hex: {value!r}")
                node[key] = base64.b64encode(bytes.fromhex(value)).decode()
            else:
                _ids_hex_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _ids_hex_to_base64(item)


def decode_request(body, content_type):
    """Parse an export request body (protobuf unless the content type says JSON)."""
    message = ExportTraceServiceRequest()
    if "json" in content_type:
        try:
            document = json.loads(body or b"{}")
        except ValueError as error:
            raise BadRequest(f"invalid JSON: {error}") from error
        _ids_hex_to_base64(document)
        try:
            json_format.ParseDict(document, message, ignore_unknown_fields=True)
        except json_format.ParseError as error:
            raise BadRequest(f"invalid OTLP JSON: {error}") from error
    else:
        try:
            message.ParseFromString(body)
        except DecodeError as error:
            raise BadRequest(f"invalid protobuf: {error}") from error
    return message


def spans_of(message):
    """Flatten an ``ExportTraceServiceRequest`` into span dicts."""
    spans = []
    for resource_spans in message.resource_spans:
        resource = key_values(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(span_dict(span, resource, scope_spans.scope))
    return spans


def _number(point):
    return point.as_int if point.WhichOneof("value") == "as_int" else point.as_double


def metric_points_of(message):
    """Flatten an ``ExportMetricsServiceRequest`` into data point dicts (see the module docstring)."""
    points = []
    for resource_metrics in message.resource_metrics:
        resource = key_values(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                data = getattr(metric, kind)
                for point in data.data_points:
                    entry = {
                        "name": metric.name,
                        "unit": metric.unit,
                        "type": kind,
                        "attributes": key_values(point.attributes),
                        "resource": resource,
                        "scope": scope_metrics.scope.name,
                        "start_time_unix_nano": point.start_time_unix_nano,
                        "time_unix_nano": point.time_unix_nano,
                    }
                    if kind == "histogram":
                        entry.update(
                            count=point.count,
                            sum=point.sum,
                            bucket_counts=list(point.bucket_counts),
                            explicit_bounds=list(point.explicit_bounds),
                        )
                    elif kind in ("sum", "gauge"):
                        entry["value"] = _number(point)
                        if kind == "sum":
                            entry["is_monotonic"] = data.is_monotonic
                    points.append(entry)
    return points


class OTLPReceiver(FaultyHTTPServer):
    """OTLP/HTTP receiver for ``POST /v1/traces``; see the module docstring for the span shape."""

    name = "otlp"

    def __init__(self, **kwargs):
        """Same arguments as ``FaultyHTTPServer``."""
        super().__init__(**kwargs)
        self._spans = []
        self._exports = []
        self._listeners = []
        self._metric_points = []

    @property
    def endpoint(self):
        """Value for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the SDK appends ``/v1/traces``)."""
        return self.url

    @property
    def traces_url(self):
        """Full signal URL, for ``OTLPSpanExporter(endpoint=...)``."""
        return self.url + TRACES_PATH

    def add_listener(self, callback):
        """Call ``callback(span_dict)`` for every span received from now on (on the server thread)."""
        with self._lock:
            self._listeners.append(callback)

    def handle(self, request):
        """Decode, store, answer with an empty ``ExportTraceServiceResponse``."""
        if request.method == "POST" and request.path.split("?")[0] == METRICS_PATH:
            return self._metrics(request)
        if request.method != "POST" or request.path.split("?")[0] != TRACES_PATH:
            return super().handle(request)
        content_type = request.headers.get("content-type", "application/x-protobuf").lower()
        spans = spans_of(decode_request(request.body, content_type))
        with self._lock:
            self._exports.append({"headers": request.headers, "span_count": len(spans), "body": request.body})
            self._spans.extend(spans)
            listeners = list(self._listeners)
        for span in spans:
            for callback in listeners:
                callback(span)
        if "json" in content_type:
            return Response(200, b"{}", "application/json")
        return Response(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

    def _metrics(self, request):
        message = ExportMetricsServiceRequest()
        try:
            message.ParseFromString(request.body)
        except DecodeError as error:
            raise BadRequest(f"invalid protobuf: {error}") from error
        points = metric_points_of(message)
        with self._lock:
            self._metric_points.extend(points)
        return Response(200, ExportMetricsServiceResponse().SerializeToString(), "application/x-protobuf")

    def reset_data(self):
        """Forget spans, metrics and exports."""
        self._spans.clear()
        self._exports.clear()
        self._metric_points.clear()

    def metric_points(self, name=None):
        """Every metric data point received (of metric ``name``, if given), in arrival order."""
        with self._lock:
            return [p for p in self._metric_points if name is None or p["name"] == name]

    # -- accessors -----------------------------------------------------------------------------

    def spans(self):
        """Every span received, in arrival order."""
        with self._lock:
            return list(self._spans)

    @property
    def span_count(self):
        """How many spans were received."""
        with self._lock:
            return len(self._spans)

    def spans_for_trace(self, trace_id):
        """Spans of one trace (32 hex digits, any case)."""
        trace_id = trace_id.lower()
        return [s for s in self.spans() if s["trace_id"] == trace_id]

    def exports(self):
        """One entry per accepted export request: ``{"headers": {...}, "span_count": n, "body": bytes}``."""
        with self._lock:
            return list(self._exports)

    def headers(self):
        """Lower-cased request headers of every accepted export (e.g. ``x-honeycomb-team``)."""
        return [export["headers"] for export in self.exports()]

    def wait_for_spans(self, predicate=lambda span: True, count=1, timeout=10.0):
        """Wait until ``count`` spans match ``predicate``; return the matching spans."""

        def matching():
            found = [s for s in self.spans() if predicate(s)]
            return found if len(found) >= count else None

        return wait_for(matching, timeout, message=f"fewer than {count} matching spans at {self.url}")


def main(argv=None):
    """Serve until SIGTERM/SIGINT; print the URL, then one JSON line per span."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", choices=MODES, default="ok")
    parser.add_argument("--delay", type=float, default=2.0)
    args = parser.parse_args(argv)

    done = threading.Event()
    print_lock = threading.Lock()

    def emit(span):
        with print_lock:
            sys.stdout.write(json.dumps(span, default=str) + "\n")
            sys.stdout.flush()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    receiver = OTLPReceiver(port=args.port, mode=args.mode, delay=args.delay)
    receiver.add_listener(emit)
    with receiver:
        with print_lock:
            sys.stdout.write(json.dumps({"url": receiver.url, "traces_url": receiver.traces_url}) + "\n")
            sys.stdout.flush()
        while not done.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
