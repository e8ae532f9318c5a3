"""AWS X-Ray: the request's segment, sharing the OpenTelemetry trace id, sent to the X-Ray daemon.

How the two tracers stay one trace with one sampling decision:
- OpenTelemetry starts first (its ids come from AwsXRayIdGenerator, so they are valid X-Ray ids),
  continues an incoming `traceparent` or `X-Amzn-Trace-Id` and takes the sampling decision
  (telemetry/sampling.py).
- Before XRayMiddleware opens the segment, the request's X-Ray header is rewritten from that
  decision: `Root=<the OpenTelemetry trace id>`, the caller's span as `Parent`, and `Sampled=1`
  when the caller decided "sampled", `Sampled=0` when OpenTelemetry does not record, no `Sampled`
  when OpenTelemetry recorded by local decision (X-Ray's sampling rules then decide). The SDK's
  header parser never sees what the caller sent. The middleware begins the segment from that header,
  and the segment takes the server span's id.
- A trace id X-Ray would refuse (its time outside X-Ray's window: a random W3C id, an old one) gets
  a fresh X-Ray trace id for the segment, annotated `otel_trace_id` with the original; the logs
  and Rollbar items of the request carry both (telemetry/context.py), the health check counts it.
- Spans that the request creates (service spans, SQL statements) become subsegments through a
  span processor, so nothing is traced twice by hand and SQL appears in X-Ray as well.
- Every hook, the span processor and the emitter are contained (telemetry/containment.py).
"""

from __future__ import annotations

import logging
import math
import re
import socket
from pathlib import Path

from aws_xray_sdk.core import AWSXRayRecorder
from aws_xray_sdk.core.emitters.udp_emitter import PROTOCOL_DELIMITER, PROTOCOL_HEADER, UDPEmitter
from aws_xray_sdk.core.models.default_dynamic_naming import DefaultDynamicNaming
from aws_xray_sdk.core.models.subsegment import Subsegment
from aws_xray_sdk.core.models.trace_header import TraceHeader
from aws_xray_sdk.core.models.traceid import TraceId
from aws_xray_sdk.ext.flask.middleware import XRayMiddleware
from flask import Flask, request
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from ..config import Config
from . import disabled
from .containment import ContainedSpanProcessor, Containment
from .context import rerooted_xray_id, set_rerooted_xray_id, xray_accepts, xray_trace_id
from .propagation import caller_decision
from .ratelimit import RateLimitedWarning
from .status import IntegrationStatus, announce, register
from .tracing import LeanTracerProvider
from .xray_rules import DEFAULT_RULE_FILES, load_local_sampling_rules

log = logging.getLogger(__name__)
XRAY_ENVIRON_KEY = "HTTP_X_AMZN_TRACE_ID"
XRAY_ROOT_KEY = "cruddur.xray_root"  # the segment's trace id, for the response header
REROOTED = "rerooted"  # the health-check counter
# X-Ray's segment document rules (developer guide, "Segment documents"): a name is up to 200
# characters of Unicode letters, numbers, whitespace and _ . : / % & # = + \ - @; annotation keys
# are alphanumeric or underscore; annotation values are strings, numbers or booleans.
MAX_NAME_CHARS = 200
# "A segment document can be up to 64 kB" (same guide): a larger one is dropped and counted, not sent.
MAX_DOCUMENT_BYTES = 64_000
_NAME_INVALID = re.compile(r"[^\w\s.:/%&#=+\\\-@]")
_ANNOTATION_KEY_INVALID = re.compile(r"[^A-Za-z0-9_]")


class CountingUDPEmitter(UDPEmitter):
    """The SDK's UDP emitter, counting what it sends; a failure is a counted, rate-limited warning.

    The stock emitter logs a full traceback for every segment it fails to send.
    """

    def __init__(self, daemon_address: str, status: IntegrationStatus):
        super().__init__(daemon_address)
        self.status = status
        self._warning = RateLimitedWarning(log)

    def send_entity(self, entity) -> None:
        """Serialize and send one segment or subsegment; never raises."""
        try:
            document = entity.serialize()
            if len(document) > MAX_DOCUMENT_BYTES:  # the SDK escapes non-ASCII: characters are bytes
                raise ValueError(f"a {len(document)}-character document is over X-Ray's 64 kB")
            self._send_data(f"{PROTOCOL_HEADER}{PROTOCOL_DELIMITER}{document}")
        except Exception as error:  # a send or serialization failure must never reach end_segment
            self.status.record_error(error)
            self.status.record_dropped()
            self._warning.warn("X-Ray daemon at %s:%s did not take a segment: %s", self.ip, self.port, error)
            return
        self.status.record_sent()

    def _send_data(self, data: str) -> None:
        self._socket.sendto(data.encode("utf-8"), (self._ip, self._port))


DATABASE_TYPES = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}


def sql_block(attributes, database_url: str = "", database_user: str = "") -> dict:
    """X-Ray's `sql` of a statement span: the query with its placeholders (values are never in it),
    the database type, and the app's database URL and user, without the password."""
    system = attributes.get("db.system")
    sql = {"sanitized_query": attributes["db.statement"], "database_type": DATABASE_TYPES.get(system, system)}
    if database_url:
        sql["url"] = database_url
    if database_user:
        sql["user"] = database_user
    return sql


class SubsegmentProcessor(SpanProcessor):
    """Mirrors the request's non-server spans as subsegments of its sampled X-Ray segment."""

    def __init__(self, recorder: AWSXRayRecorder, database_url: str = "", database_user: str = ""):
        self.recorder = recorder
        # The connection instrumentation puts no server address on its spans; the app has one database.
        self.database_url = database_url
        self.database_user = database_user
        self._open: dict[int, Subsegment] = {}

    def reads(self, kind: SpanKind | None) -> bool:
        """Whether a span starting now would be read: a server span (X-Ray follows its ids and its
        caller), and any span of a request whose segment X-Ray samples."""
        if kind is SpanKind.SERVER:
            return True
        segment = self.recorder.context.get_trace_entity()
        return segment is not None and getattr(segment, "sampled", False)

    def on_start(self, span: Span, parent_context=None) -> None:
        """Open a subsegment under the parent span's subsegment, or under the segment."""
        if span.kind is SpanKind.SERVER:
            return
        segment = self.recorder.context.get_trace_entity()
        if segment is None or not getattr(segment, "sampled", False):
            return  # no X-Ray work for requests X-Ray does not sample
        segment = getattr(segment, "parent_segment", segment)
        parent = (self._open.get(span.parent.span_id) if span.parent else None) or segment
        if not parent.in_progress:
            return  # the segment (or parent) was already closed: a subsegment would be lost or refused
        subsegment = Subsegment(xray_name(span.name), "remote" if span.kind is SpanKind.CLIENT else "local", segment)
        subsegment.id = format(span.context.span_id, "016x")
        subsegment.start_time = span.start_time / 1e9
        parent.add_subsegment(subsegment)
        self._open[span.context.span_id] = subsegment

    def on_end(self, span: ReadableSpan) -> None:
        """Copy attributes (app.* as annotations, SQL as sql) and close the subsegment."""
        subsegment = self._open.pop(span.context.span_id, None)
        if subsegment is None or not subsegment.in_progress:
            return
        attributes = span.attributes or {}
        for key, value in attributes.items():
            if not _finite(value):
                continue  # NaN and infinities are not JSON: the whole document would be refused
            if key.startswith("app.") and isinstance(value, str | int | float | bool):
                subsegment.put_annotation(_ANNOTATION_KEY_INVALID.sub("_", key), value)
            else:
                subsegment.put_metadata(key, value if isinstance(value, str | int | float | bool) else list(value))
        if "db.statement" in attributes:
            subsegment.set_sql(sql_block(attributes, self.database_url, self.database_user))
        if span.status.status_code is StatusCode.ERROR:
            subsegment.add_fault_flag()
        subsegment.close(span.end_time / 1e9)

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Subsegments travel with their segment."""
        return True


def _finite(value) -> bool:
    """False when an attribute value is or holds a NaN or an infinity."""
    values = value if isinstance(value, tuple | list) else (value,)
    return not any(isinstance(item, float) and not math.isfinite(item) for item in values)


def xray_name(name: str) -> str:
    """`name` as X-Ray accepts it: characters outside the allowed set replaced, at most 200."""
    return _NAME_INVALID.sub("_", name[:MAX_NAME_CHARS]) or "span"


class XRayNaming(DefaultDynamicNaming):
    """AWS_XRAY_URL dynamic naming, with the Host a caller sent made into a name X-Ray accepts."""

    def get_name(self, host_name):
        """The segment's name for this Host."""
        return xray_name(super().get_name(host_name or ""))


def follow_opentelemetry(span, status: IntegrationStatus) -> TraceHeader:
    """The X-Ray header that makes the request's segment follow OpenTelemetry's span and decision."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return TraceHeader(sampled=0)
    if not ctx.trace_flags.sampled:
        sampled = 0
    else:
        parent = getattr(span, "parent", None)
        sampled = 1 if caller_decision(otel_context.get_current(), parent) else None
    parent = getattr(span, "parent", None)
    parent_id = format(parent.span_id, "016x") if parent is not None and parent.is_remote else None
    if xray_accepts(ctx.trace_id):
        root = xray_trace_id(format(ctx.trace_id, "032x"))
    else:
        # The caller's span lives in a trace X-Ray will not have: this segment starts a trace of its own.
        root, parent_id = TraceId().to_id(), None
        set_rerooted_xray_id(root)
        status.count(REROOTED)
    return TraceHeader(root=root, parent=parent_id, sampled=sampled)


def _rewrite_header(status: IntegrationStatus):
    def rewrite() -> None:
        """Replace the caller's X-Ray header before XRayMiddleware reads it (see the module docstring)."""
        header = follow_opentelemetry(trace.get_current_span(), status)
        request.environ[XRAY_ENVIRON_KEY] = header.to_header_str()
        request.environ[XRAY_ROOT_KEY] = header.root

    return rewrite


def _send_nothing() -> None:
    # When the header could not be rewritten, X-Ray cannot follow OpenTelemetry: it records nothing.
    request.environ[XRAY_ENVIRON_KEY] = "Sampled=0"


def _adopt_span_id(recorder: AWSXRayRecorder):
    def adopt() -> None:
        """Give the segment the server span's id (one id for one operation); name a rerooted trace's original."""
        segment = recorder.context.get_trace_entity()
        ctx = trace.get_current_span().get_span_context()
        if segment is not None and ctx.is_valid:
            segment.id = format(ctx.span_id, "016x")
            if rerooted_xray_id():
                segment.put_annotation("otel_trace_id", format(ctx.trace_id, "032x"))

    return adopt


def _answer_header(recorder: AWSXRayRecorder):
    def answer(response):
        """`X-Amzn-Trace-Id: Root=<the segment's trace>;Sampled=<X-Ray's decision>` on the response."""
        root = request.environ.get(XRAY_ROOT_KEY)
        if root:
            segment = recorder.context.get_trace_entity()
            sampled = 1 if segment is not None and getattr(segment, "sampled", False) else 0
            response.headers["X-Amzn-Trace-Id"] = TraceHeader(root=root, sampled=sampled).to_header_str()
        return response

    return answer


class ContainedXRayMiddleware(XRayMiddleware):
    """The SDK's Flask middleware, its hooks contained: an X-Ray failure never turns into a 500."""

    def __init__(self, app: Flask, recorder: AWSXRayRecorder, containment: Containment):
        self.containment = containment
        super().__init__(app, recorder)

    def _before_request(self):
        try:
            super()._before_request()
        except Exception as error:
            self.containment.failed("XRayMiddleware before_request", error)

    def _after_request(self, response):
        try:
            return super()._after_request(response)
        except Exception as error:
            self.containment.failed("XRayMiddleware after_request", error)
            return response

    def _teardown_request(self, exception):
        try:
            super()._teardown_request(exception)
        except Exception as error:
            self.containment.failed("XRayMiddleware teardown_request", error)


def _segment_user(recorder: AWSXRayRecorder):
    def record(_app: Flask, handle: str, **_identity) -> None:
        """`user_identified` receiver: the request's segment gets `user` (the handle)."""
        segment = recorder.current_segment()
        if segment is not None:
            segment.set_user(handle)

    return record


def _sampling_rules(service_name: str) -> tuple[dict | None, str]:
    present = [path for path in DEFAULT_RULE_FILES if Path(path).is_file()]
    if not present:
        return None, "the SDK's default rule (aws/json not found)"
    return load_local_sampling_rules(*present, service_name=service_name), "aws/json/xray.json"


def _off(app: Flask, reason: str) -> bool:
    return disabled(app, "xray", reason, log)


def init_app(app: Flask) -> bool:
    """Open an X-Ray segment per request when AWS_XRAY_DAEMON_ADDRESS is set."""
    config: Config = app.extensions["cruddur.config"]
    if not config.xray_daemon_address:
        return _off(app, "AWS_XRAY_DAEMON_ADDRESS is not set")
    try:
        rules, rules_source = _sampling_rules(config.service_name)
        status = IntegrationStatus("xray", True, "segments to the X-Ray daemon over UDP")
        recorder = AWSXRayRecorder()
        recorder.configure(
            service=xray_name(config.service_name),
            daemon_address=config.xray_daemon_address,
            dynamic_naming=XRayNaming(config.xray_url, xray_name(config.service_name)) if config.xray_url else None,
            # No segment (a thread of our own, a CLI command) is normal here: never log or raise.
            context_missing="IGNORE_ERROR",
            sampling=True,
            sampling_rules=rules,
            plugins=(),
            emitter=CountingUDPEmitter(config.xray_daemon_address, status),
        )
    except (ValueError, OSError, socket.gaierror) as error:
        return _off(app, f"misconfigured: {error}")
    status.reason += f"; local sampling rules from {rules_source}, centralized rules from the daemon"
    # Until the daemon serves a matching centralized rule (never, without AWS credentials), the
    # sampler logs an INFO line on every request; with CloudWatch on, that was a second log event
    # per request. Its warnings (rules unreachable) still get through.
    logging.getLogger("aws_xray_sdk.core.sampling.sampler").setLevel(logging.WARNING)

    containment = Containment(status, log)
    status.count(REROOTED, 0)
    # Flask runs before_request hooks in registration order and after_request hooks in reverse:
    # the header is rewritten before the middleware reads it, the answer set after it wrote its own.
    app.before_request(containment.hook(_rewrite_header(status), "X-Ray header rewrite", _send_nothing))
    app.after_request(containment.hook(_answer_header(recorder), "X-Ray response header", lambda r: r))
    ContainedXRayMiddleware(app, recorder, containment)
    app.before_request(containment.hook(_adopt_span_id(recorder), "X-Ray segment id"))
    database = app.extensions.get("cruddur.database")
    subsegments = SubsegmentProcessor(
        recorder, database.redacted if database else "", database.user if database else ""
    )
    provider = app.extensions["cruddur.tracer_provider"]
    processor = ContainedSpanProcessor(subsegments, containment)
    if isinstance(provider, LeanTracerProvider):
        # Spans of requests X-Ray does not sample (most of them, by its rules) are not recorded
        # for X-Ray: they would be built only to be thrown away.
        reads = containment.hook(subsegments.reads, "X-Ray span filter", lambda _kind: True)
        provider.add_span_processor(processor, reads=reads)
    else:
        provider.add_span_processor(processor)
    from ..auth import user_identified

    user_identified.connect(containment.hook(_segment_user(recorder), "X-Ray segment user"), app, weak=False)
    app.extensions["cruddur.xray"] = recorder
    register(app, status)
    return announce(log, status)
