"""OpenTelemetry tracing with the stock SDK: every request traced, spans exported over OTLP/HTTP when set.

The trace context is always on (`traceresponse`, the trace id in every log line). Export is on with
an OTLP endpoint (or HONEYCOMB_API_KEY), or OTEL_TRACES_EXPORTER=console. Each destination is a
BatchSpanProcessor behind our counting wrappers (the health check's numbers), flushed at shutdown.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import sys
import threading

from flask import Flask
from opentelemetry import trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.propagators import TraceResponsePropagator, set_global_response_propagator
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter, SpanExportResult

from ...config import Config
from ..core.containment import ContainedSpanProcessor, Containment
from ..core.shutdown import min_share, on_shutdown
from ..core.status import IntegrationStatus, announce, track
from . import propagation
from .sampling import build_sampler
from .spans import TRACER

log = logging.getLogger(__name__)
# An export attempt (with the exporter's retries) ends within this; it runs on the batch thread.
EXPORT_TIMEOUT_SECONDS = 10


def export_timeout(config: Config) -> float:
    """The export deadline: 10 s, or less so that one export fits in OpenTelemetry's shutdown share."""
    return min(EXPORT_TIMEOUT_SECONDS, min_share(config.shutdown_budget))


class CountingExporter(SpanExporter):
    """Counts, once per span, what the wrapped exporter delivered or lost; nothing more once `gave_up`
    (shutdown ran out of time and counted what waited as dropped)."""

    def __init__(self, exporter: SpanExporter, status: IntegrationStatus):
        self.exporter = exporter
        self.status = status
        self.lock = threading.Lock()
        self.finished = 0  # spans whose outcome was counted
        self.gave_up = False

    def export(self, spans) -> SpanExportResult:
        if self.gave_up:
            return SpanExportResult.FAILURE
        error: BaseException | str = "export failed"
        try:
            result = self.exporter.export(spans)
        except Exception as raised:  # an exporter bug must not kill the batch thread
            result, error = SpanExportResult.FAILURE, raised
        with self.lock:
            if self.gave_up:
                return result
            self.finished += len(spans)
        if result is SpanExportResult.SUCCESS:
            self.status.record_sent(len(spans))
        else:
            self.status.record_error(error)
            self.status.record_dropped(len(spans))
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True  # nothing is buffered here


class CountingSpanProcessor(SpanProcessor):
    """A BatchSpanProcessor behind our own count of every sampled span: `produced`, then sent or dropped.

    The queue bound is applied here, so every drop is counted: `produced == sent + dropped + queued`
    at any time, and `queued == 0` after shutdown.
    """

    def __init__(self, exporter: CountingExporter, max_queue_size: int, batch_size: int):
        self.exporter = exporter
        self.status = exporter.status
        self.max_queue_size = max_queue_size
        # The SDK reads the delay (OTEL_BSP_SCHEDULE_DELAY); a batch is never larger than the queue.
        batch_size = min(batch_size, max_queue_size)
        self.batch = BatchSpanProcessor(exporter, max_queue_size=max_queue_size, max_export_batch_size=batch_size)
        self.accepted = 0
        self.closed = False
        self.status.count("produced", 0)
        self.status.set_queue_probe(self.queued)

    def queued(self) -> int:
        return 0 if self.exporter.gave_up else self.accepted - self.exporter.finished

    def on_end(self, span: ReadableSpan) -> None:
        """Hand a sampled span to the batch processor, or count it as dropped (full, or shut down)."""
        if not span.context.trace_flags.sampled:
            return
        self.status.count("produced")
        with self.exporter.lock:
            refused = self.closed or self.accepted - self.exporter.finished >= self.max_queue_size
            if not refused:
                self.accepted += 1
        if refused:
            self.status.record_dropped()
        else:
            self.batch.on_end(span)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.batch.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.batch.shutdown()  # unbounded: the app's shutdown calls `shutdown_within`

    def shutdown_within(self, seconds: float) -> None:
        """Export what is queued within `seconds`, then stop; what is left is counted as dropped, logged once.

        On a thread: the SDK's force_flush ignores its timeout, an export in flight waits for its answer.
        """
        with self.exporter.lock:
            self.closed = True
        millis = int(seconds * 1000)
        stopping = threading.Thread(target=self._stop, args=(millis,), name="cruddur-span-flush", daemon=True)
        stopping.start()
        stopping.join(seconds)
        with self.exporter.lock:
            self.exporter.gave_up = True
            lost = self.accepted - self.exporter.finished
        if lost:
            self.status.record_dropped(lost)
            log.warning("opentelemetry: %d spans not exported within %.1f s of shutdown; dropped", lost, seconds)

    def _stop(self, millis: int) -> None:
        try:
            self.batch.force_flush(millis)
            self.batch.shutdown()
        except Exception as error:  # shutdown must go on: what was not exported is counted as lost
            log.warning("opentelemetry: shutting the span export down failed (%s)", type(error).__name__)


class _Stdout:
    """sys.stdout as it is when written to (ConsoleSpanExporter binds the stream at import)."""

    def write(self, text: str) -> None:
        sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def service_resource(config: Config, attributes: dict[str, str] | None = None) -> Resource:
    """What every span, metric and log record of this service says about its source."""
    service = {"service.name": config.service_name, "service.version": config.code_version}
    return Resource.create({**service, "deployment.environment.name": config.env, **(attributes or {})})


def build_provider(config: Config) -> TracerProvider:
    """The SDK's provider, with the app's sampler and trace ids X-Ray accepts."""
    # Our shutdown is bounded; the SDK's atexit hook would wait up to 30 s per processor.
    return TracerProvider(
        resource=service_resource(config, {"deployment.environment": config.env}),
        id_generator=propagation.RootAdoptingIdGenerator(),
        sampler=build_sampler(config.traces_sampler, config.traces_sampler_arg),
        shutdown_on_exit=False,
    )


def otlp_exporter(config: Config, url: str, headers: dict[str, str], session=None) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=url, headers=headers, timeout=export_timeout(config), session=session)


def _exporter(config: Config) -> tuple[SpanExporter | None, str]:
    if config.traces_exporter == "console":
        return ConsoleSpanExporter(service_name=config.service_name, out=_Stdout()), "OTEL_TRACES_EXPORTER=console"
    if config.traces_url:
        return otlp_exporter(config, config.traces_url, config.otlp_headers), "OTLP/HTTP configured"
    return None, "no OTEL_EXPORTER_OTLP_ENDPOINT or HONEYCOMB_API_KEY"


def add_destination(app: Flask, provider: TracerProvider, exporter: SpanExporter, status: IntegrationStatus) -> None:
    """Export recorded spans to one more place, with its own bounded queue, thread, counters and flush."""
    config: Config = app.extensions["cruddur.config"]
    counting = CountingExporter(exporter, status)
    processor = CountingSpanProcessor(counting, config.span_queue_size, config.span_batch_size)
    provider.add_span_processor(ContainedSpanProcessor(processor, Containment(status, log)))
    on_shutdown(app, 10, status.name, processor.shutdown_within)


def instrument_connection(provider: TracerProvider, conn):
    """Every statement of this connection becomes a span (the maintained instrumentations)."""
    if isinstance(conn, sqlite3.Connection):
        return SQLite3Instrumentor.instrument_connection(conn, tracer_provider=provider)
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor  # imports psycopg: PostgreSQL only

    return PsycopgInstrumentor.instrument_connection(conn, tracer_provider=provider)


def record_enduser(_app: Flask, handle: str, cognito_user_id: str | None, **_identity) -> None:
    """`user_identified` receiver: the server span gets `enduser.id` (Cognito `sub`, else the handle)."""
    trace.get_current_span().set_attribute("enduser.id", cognito_user_id or handle)


def init_app(app: Flask) -> bool:
    """Trace every request; export spans when configured. Returns whether export is on."""
    config: Config = app.extensions["cruddur.config"]
    provider = build_provider(config)
    exporter, reason = _exporter(config)
    status = track(app, "opentelemetry", exporter is not None, reason)
    if exporter is not None:
        add_destination(app, provider, exporter, status)
    app.extensions["cruddur.tracer_provider"] = provider
    app.extensions[TRACER] = provider.get_tracer("cruddur")
    app.extensions["cruddur.instrument_connection"] = functools.partial(instrument_connection, provider)
    propagation.install(app)
    set_global_response_propagator(TraceResponsePropagator())
    # Before X-Ray's hooks, which read the request's span. No-op instruments cost less than the API's proxies.
    FlaskInstrumentor().instrument_app(
        app,
        tracer_provider=provider,
        meter_provider=app.extensions.get("cruddur.meter_provider") or NoOpMeterProvider(),
        excluded_urls=config.flask_excluded_urls,
    )
    # Application code's HTTP calls; telemetry's own run with instrumentation suppressed.
    requests_instrumentor = RequestsInstrumentor()
    if not requests_instrumentor.is_instrumented_by_opentelemetry:
        requests_instrumentor.instrument(tracer_provider=provider)
    from ...auth import user_identified

    user_identified.connect(record_enduser, app)
    return announce(log, status)
