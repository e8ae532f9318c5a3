"""AWS X-Ray over the daemon: the request's segment, with OpenTelemetry's trace id and decision.

Our Flask hooks, after OpenTelemetry's, open the segment through the recorder's public API with
the server span's ids and one decision: OpenTelemetry's when it does not record or the caller
decided, else X-Ray's rules. A trace id X-Ray would refuse gets a fresh one (`otel_trace_id`
annotates it). A sampled request's spans become subsegments. Every hook is contained.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import socket
from pathlib import Path

from aws_xray_sdk.core import AWSXRayRecorder
from aws_xray_sdk.core.emitters.udp_emitter import PROTOCOL_DELIMITER, PROTOCOL_HEADER
from aws_xray_sdk.core.models import http
from aws_xray_sdk.core.models.default_dynamic_naming import DefaultDynamicNaming
from aws_xray_sdk.core.models.subsegment import Subsegment
from aws_xray_sdk.core.models.traceid import TraceId
from aws_xray_sdk.core.utils.stacktrace import get_stacktrace
from flask import Flask, request
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from ...config import Config
from .. import register_off
from ..core.containment import ContainedSpanProcessor, Containment
from ..core.context import rerooted_xray_id, set_rerooted_xray_id, xray_accepts, xray_trace_id
from ..core.delivery import BoundedSender
from ..core.shutdown import on_shutdown
from ..core.status import IntegrationStatus, announce, track
from ..otel.propagation import caller_decision
from .rules import DEFAULT_RULE_FILES, load_local_sampling_rules

log = logging.getLogger(__name__)
NAME = "xray"
REQUEST_KEY = "cruddur.xray"  # in the WSGI environ: (X-Ray trace id, the segment or None)
REROOTED = "rerooted"  # the health-check counter
# X-Ray's segment document limits (developer guide, "Segment documents").
MAX_NAME_CHARS = 200
MAX_DOCUMENT_BYTES = 64_000
MAX_QUEUED_SEGMENTS = 1000
_NAME_INVALID = re.compile(r"[^\w\s.:/%&#=+\\\-@]")
_ANNOTATION_KEY_INVALID = re.compile(r"[^A-Za-z0-9_]")
DATABASE_TYPES = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}


def xray_name(name: str) -> str:
    """`name` as X-Ray accepts it: characters outside the allowed set replaced, at most 200."""
    return _NAME_INVALID.sub("_", name[:MAX_NAME_CHARS]) or "span"


@functools.lru_cache(maxsize=256)
def annotation_key(key: str) -> str:
    """An attribute name as an annotation key (alphanumeric and underscore)."""
    return _ANNOTATION_KEY_INVALID.sub("_", key)


def udp_address(value: str) -> tuple[str, int]:
    """The UDP host and port of AWS_XRAY_DAEMON_ADDRESS: `host:port` or `tcp:host:port udp:host:port`."""
    forms = value.split()
    if len(forms) == 2:
        value = dict(form.split(":", 1) for form in forms if ":" in form).get("udp", "")
    host, _, port = value.rpartition(":")
    if len(forms) not in (1, 2) or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"AWS_XRAY_DAEMON_ADDRESS {value[:60]!r} is not host:port")
    return host, int(port)


class DaemonEmitter:
    """The recorder's emitter (UDPEmitter's interface): segments sent and counted on a sender thread."""

    def __init__(self, daemon_address: str, status: IntegrationStatus):
        self.address = udp_address(daemon_address)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.settimeout(1.0)
        self.sender = BoundedSender(NAME, self.send, status, log, max_queue=MAX_QUEUED_SEGMENTS)

    def set_daemon_address(self, address: str) -> None:
        """Send to `address` from now on (the recorder calls this from `configure`)."""
        self.address = udp_address(address)

    def send_entity(self, entity) -> None:
        """Queue a finished segment; never blocks and never raises (a full queue is counted)."""
        self.sender.submit(entity)

    def send(self, entity) -> None:
        document = entity.serialize()
        if len(document) > MAX_DOCUMENT_BYTES:  # the SDK escapes non-ASCII: characters are bytes
            raise ValueError(f"a {len(document)}-character document is over X-Ray's 64 kB")
        self.socket.sendto(f"{PROTOCOL_HEADER}{PROTOCOL_DELIMITER}{document}".encode(), self.address)


def sql_block(attributes, database_url: str, database_user: str) -> dict:
    """X-Ray's `sql`: the query with its placeholders (never values), the database, its URL and user."""
    system = attributes.get("db.system")
    sql = {"sanitized_query": attributes["db.statement"], "database_type": DATABASE_TYPES.get(system, system)}
    known = {"url": database_url, "user": database_user}
    return sql | {key: value for key, value in known.items() if value}


def _finite(value) -> bool:
    """False when an attribute value is or holds a NaN or an infinity."""
    values = value if isinstance(value, tuple | list) else (value,)
    return not any(isinstance(item, float) and not math.isfinite(item) for item in values)


class SubsegmentProcessor(SpanProcessor):
    """Mirrors the spans of a sampled segment's request as its subsegments (`open`: those in progress)."""

    def __init__(self, database_url: str, database_user: str):
        # The connection instrumentation puts no server address on its spans; the app has one database.
        self.database_url = database_url
        self.database_user = database_user
        self.open: dict[int, object] = {}

    def on_start(self, span: Span, parent_context=None) -> None:
        parent = span.parent
        entity = self.open.get(parent.span_id) if parent is not None else None
        if entity is None or not entity.in_progress:
            return  # not X-Ray's, or already closed: a subsegment would be lost or refused
        segment = getattr(entity, "parent_segment", entity)
        subsegment = Subsegment(xray_name(span.name), "remote" if span.kind is SpanKind.CLIENT else "local", segment)
        subsegment.id = format(span.context.span_id, "016x")
        subsegment.start_time = span.start_time / 1e9
        entity.add_subsegment(subsegment)
        self.open[span.context.span_id] = subsegment

    def on_end(self, span: ReadableSpan) -> None:
        """Copy attributes (app.* as annotations, SQL as sql) and close the subsegment."""
        subsegment = self.open.pop(span.context.span_id, None)
        if subsegment is None or not subsegment.in_progress:
            return
        attributes = span.attributes or {}
        for key, value in attributes.items():
            if not _finite(value):
                continue  # NaN and infinities are not JSON: the whole document would be refused
            if key.startswith("app.") and isinstance(value, str | int | float | bool):
                subsegment.put_annotation(annotation_key(key), value)
            else:
                subsegment.put_metadata(key, value if isinstance(value, str | int | float | bool) else list(value))
        if "db.statement" in attributes:
            subsegment.set_sql(sql_block(attributes, self.database_url, self.database_user))
        if span.status.status_code is StatusCode.ERROR:
            subsegment.add_fault_flag()
        subsegment.close(span.end_time / 1e9)  # it travels with its segment: nothing to flush here


def follow_opentelemetry(span, status: IntegrationStatus) -> tuple[str, str | None, bool | None]:
    """(X-Ray trace id, parent id, decision) that make the segment follow OpenTelemetry's span.

    The decision: False (OpenTelemetry does not record), True (the caller sampled), None (X-Ray's rules).
    """
    ctx = span.get_span_context()
    parent = getattr(span, "parent", None)
    if not ctx.trace_flags.sampled:
        sampled = False
    else:
        sampled = True if caller_decision(otel_context.get_current(), parent) else None
    parent_id = format(parent.span_id, "016x") if parent is not None and parent.is_remote else None
    if xray_accepts(ctx.trace_id):
        return xray_trace_id(format(ctx.trace_id, "032x")), parent_id, sampled
    # The caller's span lives in a trace X-Ray will not have: this segment starts a trace of its own.
    root = TraceId().to_id()
    set_rerooted_xray_id(root)
    status.count(REROOTED)
    return root, None, sampled


class SegmentHooks:
    """The Flask hooks that open, fill and end the request's segment through the recorder."""

    def __init__(self, recorder: AWSXRayRecorder, status: IntegrationStatus, open_entities: dict, naming):
        self.recorder = recorder
        self.status = status
        self.open = open_entities  # shared with SubsegmentProcessor: the segment by its span id
        self.naming = naming

    def begin(self) -> None:
        """Decide, and open the segment when X-Ray samples the request."""
        span = trace.get_current_span()
        ctx = span.get_span_context()
        if not ctx.is_valid:
            return  # a URL OpenTelemetry excludes: X-Ray leaves it out as well
        root, parent_id, decision = follow_opentelemetry(span, self.status)
        name = self.recorder.service
        if self.naming and decision is not False:  # AWS_XRAY_URL: the Host a caller sent, made valid
            name = xray_name(self.naming.get_name(request.host))
        if decision is None:
            rule = {"host": request.host, "method": request.method, "path": request.path, "service": name}
            decision = self.recorder.sampler.should_trace(rule)  # a rule's name, or a bool
        if not decision:
            request.environ[REQUEST_KEY] = (root, None)
            return
        segment = self.recorder.begin_segment(name, traceid=root, parent_id=parent_id, sampling=decision)
        segment.id = format(ctx.span_id, "016x")  # one id for one operation
        segment.put_http_meta(http.URL, request.base_url)
        segment.put_http_meta(http.METHOD, request.method)
        segment.put_http_meta(http.USER_AGENT, request.headers.get("User-Agent"))
        # request.remote_addr is the peer, or the entry of X-Forwarded-For that CRUDDUR_TRUSTED_PROXIES trusts;
        # werkzeug keeps the peer's own address for ProxyFix.
        segment.put_http_meta(http.CLIENT_IP, request.remote_addr)
        peer = request.environ.get("werkzeug.proxy_fix.orig", request.environ).get("REMOTE_ADDR")
        if request.remote_addr != peer:
            segment.put_http_meta(http.X_FORWARDED_FOR, True)
        if rerooted_xray_id():
            segment.put_annotation("otel_trace_id", format(ctx.trace_id, "032x"))
        self.open[ctx.span_id] = segment
        request.environ[REQUEST_KEY] = (root, segment)

    def answer(self, response):
        """`X-Amzn-Trace-Id: Root=<the segment's trace>;Sampled=<X-Ray's decision>`; the status on the segment."""
        root, segment = request.environ.get(REQUEST_KEY, (None, None))
        if root is None:
            return response
        response.headers[http.XRAY_HEADER] = f"Root={root};Sampled={0 if segment is None else 1}"
        if segment is not None:
            segment.put_http_meta(http.STATUS, response.status_code)
            if response.content_length is not None:
                segment.put_http_meta(http.CONTENT_LENGTH, response.content_length)
        return response

    def name_user(self, _app: Flask, handle: str, **_identity) -> None:
        """`user_identified` receiver: the request's segment gets `user` (the handle)."""
        _, segment = request.environ.get(REQUEST_KEY, (None, None))
        if segment is not None:
            segment.set_user(handle)

    def end(self, exception) -> None:
        """End the segment: the recorder hands it to the emitter once its subsegments are closed."""
        _, segment = request.environ.get(REQUEST_KEY, (None, None))
        if segment is None:
            return
        self.open.pop(int(segment.id, 16), None)
        try:
            if exception is not None:
                segment.put_http_meta(http.STATUS, 500)
                segment.add_exception(exception, get_stacktrace(limit=self.recorder.max_trace_back))
            self.recorder.end_segment()
        finally:
            self.recorder.clear_trace_entities()  # the next request on this thread starts with no segment


def _sampling_rules(service_name: str) -> tuple[dict | None, str]:
    present = [path for path in DEFAULT_RULE_FILES if Path(path).is_file()]
    if not present:
        return None, "the SDK's default rule (aws/json not found)"
    return load_local_sampling_rules(*present, service_name=service_name), "aws/json/xray.json"


def init_app(app: Flask) -> bool:
    """Open an X-Ray segment per sampled request, sent to the daemon at AWS_XRAY_DAEMON_ADDRESS."""
    config: Config = app.extensions["cruddur.config"]
    status = track(app, NAME, True, "segments to the X-Ray daemon over UDP")
    try:
        rules, rules_source = _sampling_rules(config.service_name)
        emitter = DaemonEmitter(config.xray_daemon_address, status)
        recorder = AWSXRayRecorder()
        recorder.configure(
            service=xray_name(config.service_name),
            daemon_address=config.xray_daemon_address,
            context_missing="IGNORE_ERROR",  # no segment (a thread of our own, a CLI command) is normal here
            sampling=True,
            sampling_rules=rules,
            plugins=(),
            emitter=emitter,
        )
    except (ValueError, OSError) as error:
        return register_off(app, NAME, f"misconfigured: {error}", log)
    status.reason += f"; local sampling rules from {rules_source}, centralized rules from the daemon"
    # Without a centralized rule (none, without AWS credentials) the sampler logs INFO on every request.
    logging.getLogger("aws_xray_sdk.core.sampling.sampler").setLevel(logging.WARNING)
    containment = Containment(status, log)
    status.count(REROOTED, 0)
    database = app.extensions.get("cruddur.database")
    subsegments = SubsegmentProcessor(database.redacted if database else "", database.user if database else "")
    naming = DefaultDynamicNaming(config.xray_url, recorder.service) if config.xray_url else None
    hooks = SegmentHooks(recorder, status, subsegments.open, naming)
    # After OpenTelemetry's hooks (registered first), so the server span is current.
    app.before_request(containment.hook(hooks.begin, "X-Ray segment start"))
    app.after_request(containment.hook(hooks.answer, "X-Ray response", lambda response: response))
    app.teardown_request(containment.hook(hooks.end, "X-Ray segment end"))
    from ...auth import user_identified

    user_identified.connect(containment.hook(hooks.name_user, "X-Ray segment user"), app, weak=False)
    app.extensions["cruddur.tracer_provider"].add_span_processor(ContainedSpanProcessor(subsegments, containment))
    on_shutdown(app, 10, NAME, emitter.sender.flush)
    app.extensions["cruddur.xray"] = recorder
    app.extensions["cruddur.xray_subsegments"] = subsegments
    return announce(log, status)
