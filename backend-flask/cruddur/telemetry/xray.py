"""AWS X-Ray: the request's segment, sharing the OpenTelemetry trace id, sent to the X-Ray daemon.

How the two tracers stay one trace:
- OpenTelemetry starts first (its ids come from AwsXRayIdGenerator, so they are valid X-Ray ids) and
  continues an incoming `traceparent` or `X-Amzn-Trace-Id`.
- Before XRayMiddleware opens the segment, the request's X-Ray header is rewritten to
  `Root=<the OpenTelemetry trace id>`, keeping the caller's parent and sampling decision; the
  middleware then begins the segment with that root, and the segment takes the server span's id.
- Spans that the request creates (service spans, SQL statements) become subsegments through a
  span processor, so nothing is traced twice by hand and SQL appears in X-Ray as well.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from aws_xray_sdk.core import AWSXRayRecorder
from aws_xray_sdk.core.emitters.udp_emitter import PROTOCOL_DELIMITER, PROTOCOL_HEADER, UDPEmitter
from aws_xray_sdk.core.models.subsegment import Subsegment
from aws_xray_sdk.core.models.trace_header import TraceHeader
from aws_xray_sdk.ext.flask.middleware import XRayMiddleware
from flask import Flask, request
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from ..config import Config
from .context import xray_trace_id
from .ratelimit import RateLimitedWarning
from .status import IntegrationStatus, announce, register
from .xray_rules import DEFAULT_RULE_FILES, load_local_sampling_rules

log = logging.getLogger(__name__)
XRAY_ENVIRON_KEY = "HTTP_X_AMZN_TRACE_ID"


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
            message = f"{PROTOCOL_HEADER}{PROTOCOL_DELIMITER}{entity.serialize()}"
            self._send_data(message)
        except (OSError, ValueError, TypeError) as error:
            self.status.record_error(error)
            self.status.record_dropped()
            self._warning.warn("X-Ray daemon at %s:%s did not take a segment: %s", self.ip, self.port, error)
            return
        self.status.record_sent()

    def _send_data(self, data: str) -> None:
        self._socket.sendto(data.encode("utf-8"), (self._ip, self._port))


class SubsegmentProcessor(SpanProcessor):
    """Mirrors the request's non-server spans as subsegments of its sampled X-Ray segment."""

    def __init__(self, recorder: AWSXRayRecorder):
        self.recorder = recorder
        self._open: dict[int, Subsegment] = {}

    def on_start(self, span: Span, parent_context=None) -> None:
        """Open a subsegment under the parent span's subsegment, or under the segment."""
        if span.kind is SpanKind.SERVER:
            return
        segment = self.recorder.context.get_trace_entity()
        if segment is None or not getattr(segment, "sampled", False):
            return  # no X-Ray work for requests X-Ray does not sample
        segment = getattr(segment, "parent_segment", segment)
        parent = self._open.get(span.parent.span_id) if span.parent else None
        subsegment = Subsegment(span.name, "remote" if span.kind is SpanKind.CLIENT else "local", segment)
        subsegment.id = format(span.context.span_id, "016x")
        subsegment.start_time = span.start_time / 1e9
        (parent or segment).add_subsegment(subsegment)
        self._open[span.context.span_id] = subsegment

    def on_end(self, span: ReadableSpan) -> None:
        """Copy attributes (app.* as annotations, SQL as sql) and close the subsegment."""
        subsegment = self._open.pop(span.context.span_id, None)
        if subsegment is None:
            return
        attributes = span.attributes or {}
        for key, value in attributes.items():
            if key.startswith("app.") and isinstance(value, str | int | float | bool):
                subsegment.put_annotation(key.replace(".", "_"), value)
            else:
                subsegment.put_metadata(key, value if isinstance(value, str | int | float | bool) else list(value))
        if "db.statement" in attributes:
            subsegment.set_sql(
                {"sanitized_query": attributes["db.statement"], "database_type": attributes.get("db.system")}
            )
        if span.status.status_code is StatusCode.ERROR:
            subsegment.add_fault_flag()
        subsegment.close(span.end_time / 1e9)

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Subsegments travel with their segment."""
        return True


def _align_with_opentelemetry() -> None:
    """Make the segment XRayMiddleware is about to open use the OpenTelemetry trace id."""
    span = trace.get_current_span()
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return
    root = xray_trace_id(format(ctx.trace_id, "032x"))
    incoming = TraceHeader.from_header_str(request.environ.get(XRAY_ENVIRON_KEY))
    if incoming.root == root:
        return  # the caller's X-Ray header already names this trace
    parent = getattr(span, "parent", None)
    parent_id = format(parent.span_id, "016x") if parent is not None and parent.is_remote else None
    request.environ[XRAY_ENVIRON_KEY] = TraceHeader(root=root, parent=parent_id).to_header_str()


def _adopt_span_id(recorder: AWSXRayRecorder):
    def adopt() -> None:
        """Give the segment the server span's id: one id for one operation in both tools."""
        segment = recorder.context.get_trace_entity()
        ctx = trace.get_current_span().get_span_context()
        if segment is not None and ctx.is_valid:
            segment.id = format(ctx.span_id, "016x")

    return adopt


def _sampling_rules(service_name: str) -> tuple[dict | None, str]:
    present = [path for path in DEFAULT_RULE_FILES if Path(path).is_file()]
    if not present:
        return None, "the SDK's default rule (aws/json not found)"
    return load_local_sampling_rules(*present, service_name=service_name), "aws/json/xray.json"


def _off(app: Flask, reason: str) -> bool:
    status = IntegrationStatus("xray", False, reason)
    register(app, status)
    return announce(log, status)


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
            service=config.service_name,
            daemon_address=config.xray_daemon_address,
            dynamic_naming=config.xray_url or None,
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

    app.before_request(_align_with_opentelemetry)
    XRayMiddleware(app, recorder)
    app.before_request(_adopt_span_id(recorder))
    app.extensions["cruddur.tracer_provider"].add_span_processor(SubsegmentProcessor(recorder))
    app.extensions["cruddur.xray"] = recorder
    register(app, status)
    return announce(log, status)
