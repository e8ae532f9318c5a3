"""Datadog trace agent stand-in: decodes the msgpack trace payloads ddtrace sends and counts what arrives.

The agent's HTTP API as documented (docs.datadoghq.com "Send traces to the Agent by API", and the
versions in datadog-agent's pkg/trace/api/version.go):

- ``PUT``/``POST /v0.4/traces``: ``Content-Type: application/msgpack``, an array of traces, each an
  array of span maps (``trace_id``, ``span_id``, ``parent_id``, ``name``, ``service``, ``resource``,
  ``type``, ``start``, ``duration``, ``error``, ``meta``, ``metrics``); ``X-Datadog-Trace-Count``
  says how many traces the payload holds.
- ``PUT``/``POST /v0.5/traces``: ``[string table, traces]``, each span an array of 12 fields
  ``[service, name, resource, trace_id, span_id, parent_id, start, duration, error, meta, metrics,
  type]`` whose strings (and ``meta``/``metrics`` keys, ``meta`` values) are indexes into the table.
- Both answer 200 with ``{"rate_by_service": {"service:,env:": 1.0}}``, the sampling rates the
  tracer applies next; a payload that does not decode is refused with 400.
- ``GET /info``: the agent's version and the endpoints it serves (the tracer picks its API from them).
- ``POST /telemetry/proxy/api/v2/apmtelemetry``: the tracer's own telemetry, which the agent relays
  (202 here, counted, not decoded).

Traces are counted per service (``TraceTally``): a request span is a root span (``parent_id`` 0) of
``type`` ``web``, its path from ``http.url``; a SQL span has ``type`` ``sql``.
"""

from urllib.parse import urlsplit

import msgpack

from tests.support.faulty_http import BadRequest, FaultyHTTPServer, Response
from tests.support.trace_tally import TraceTally

TRACE_ENDPOINTS = ("/v0.4/traces", "/v0.5/traces")
TELEMETRY_PATH = "/telemetry/proxy/api/v2/apmtelemetry"
AGENT_VERSION = "7.60.0"
_V05_FIELDS = ("service", "name", "resource", "trace_id", "span_id", "parent_id", "start", "duration", "error")


def decode_v04(body):
    """A v0.4 payload: a list of traces, each a list of span dicts."""
    traces = msgpack.unpackb(body, raw=False, strict_map_key=False)
    if not isinstance(traces, list) or not all(isinstance(t, list) for t in traces):
        raise BadRequest("v0.4 payload must be an array of traces, each an array of spans")
    for trace in traces:
        for span in trace:
            if not isinstance(span, dict) or "span_id" not in span or "trace_id" not in span:
                raise BadRequest("v0.4 span must be a map with trace_id and span_id")
    return traces


def decode_v05(body):
    """A v0.5 payload, its string indexes resolved: the same shape as v0.4's."""
    payload = msgpack.unpackb(body, raw=False, strict_map_key=False)
    if not (isinstance(payload, list) and len(payload) == 2 and isinstance(payload[0], list)):
        raise BadRequest("v0.5 payload must be [string table, traces]")
    table, raw_traces = payload
    try:
        traces = []
        for raw_trace in raw_traces:
            trace = []
            for fields in raw_trace:
                if len(fields) != 12:
                    raise BadRequest(f"v0.5 span must have 12 fields, got {len(fields)}")
                span = dict(zip(_V05_FIELDS, fields[:9], strict=True))
                for key in ("service", "name", "resource"):
                    span[key] = table[span[key]]
                span["meta"] = {table[k]: table[v] for k, v in fields[9].items()}
                span["metrics"] = {table[k]: v for k, v in fields[10].items()}
                span["type"] = table[fields[11]]
                trace.append(span)
            traces.append(trace)
    except (IndexError, TypeError, AttributeError) as error:
        raise BadRequest(f"v0.5 payload does not resolve against its string table: {error}") from error
    return traces


class DatadogAgent(FaultyHTTPServer):
    """Answers as the trace agent does; counts traces, spans and SQL spans per service."""

    name = "datadog-agent"

    def __init__(self, **kwargs):
        """Same arguments as ``FaultyHTTPServer``."""
        kwargs.setdefault("keep_requests", 100)
        super().__init__(**kwargs)
        self.tally = TraceTally()
        self.payloads = 0
        self.telemetry_requests = 0

    def handle(self, request):
        """Serve /info, the two trace endpoints and the telemetry relay."""
        path = request.path.split("?")[0]
        if request.method == "GET" and path == "/info":
            return Response.json(
                200,
                {"version": AGENT_VERSION, "endpoints": [*TRACE_ENDPOINTS, TELEMETRY_PATH], "feature_flags": []},
            )
        if request.method == "POST" and path == TELEMETRY_PATH:
            with self._lock:
                self.telemetry_requests += 1
            return Response(202, b"", "text/plain")
        if request.method not in ("PUT", "POST") or path not in TRACE_ENDPOINTS:
            return super().handle(request)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/msgpack":
            raise BadRequest("traces must be sent as application/msgpack")
        try:
            traces = decode_v05(request.body) if path == "/v0.5/traces" else decode_v04(request.body)
        except (ValueError, msgpack.UnpackException) as error:
            raise BadRequest(f"cannot decode msgpack: {error}") from error
        count = request.headers.get("x-datadog-trace-count")
        if count is not None and int(count) != len(traces):
            raise BadRequest(f"X-Datadog-Trace-Count {count} but {len(traces)} traces in the payload")
        for trace in traces:
            self._count(trace)
        with self._lock:
            self.payloads += 1
        return Response.json(200, {"rate_by_service": {"service:,env:": 1.0}})

    def _count(self, trace):
        if not trace:
            return
        root = next((s for s in trace if not s.get("parent_id")), trace[0])
        if root.get("type") != "web":
            self.tally.add_other(root.get("service", ""))
            return
        sql = [s for s in trace if s.get("type") == "sql"]
        meta = root.get("meta") or {}
        path = urlsplit(meta.get("http.url", "")).path or root.get("resource", "")
        self.tally.add(
            root.get("service", ""),
            path,
            spans=len(trace),
            sql_spans=len(sql),
            request_span=_example(root),
            sql_span=_example(sql[0]) if sql else None,
            span_names=[s.get("name", "") for s in trace],
        )

    def reset_data(self):
        """Forget the counts."""
        self.tally.reset()
        self.payloads = 0
        self.telemetry_requests = 0

    def summary(self):
        """Counts per service, and how many payloads and telemetry posts arrived."""
        with self._lock:
            payloads, telemetry = self.payloads, self.telemetry_requests
        return {"services": self.tally.summary(), "payloads": payloads, "telemetry_requests": telemetry}


def _example(span):
    return {
        "name": span.get("name"),
        "resource": span.get("resource"),
        "type": span.get("type"),
        "meta": span.get("meta") or {},
        "metrics": span.get("metrics") or {},
    }
