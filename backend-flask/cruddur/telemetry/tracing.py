"""OpenTelemetry: every request gets a trace (X-Ray-compatible ids); export to OTLP/HTTP when set.

The trace context is always on, because every response carries the trace id (`traceresponse`)
and so does every log line. Export is the integration: it is on when an OTLP endpoint
(or HONEYCOMB_API_KEY) is configured, or OTEL_TRACES_EXPORTER=console.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import sys
import threading
from collections.abc import Callable
from contextlib import contextmanager

from flask import Flask, current_app
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.propagators import (
    TraceResponsePropagator,
    set_global_response_propagator,
)
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import NonRecordingSpan, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..config import Config
from .containment import ContainedSpanProcessor, Containment
from .otlp_wire import WireOTLPSpanExporter
from .propagation import RootAdoptingIdGenerator, XRayRootPropagator
from .request_context import RequestContextLayer, instrument, self_check
from .sampling import build_sampler, decides_by_trace_context
from .shutdown import min_share, on_shutdown
from .status import IntegrationStatus, announce, register

log = logging.getLogger(__name__)
TRACER_NAME = "cruddur"
# app.extensions keys: what FlaskInstrumentor added to the app (request_context.InstrumentorHooks),
# and which serves requests, "FlaskInstrumentor" or "context" (the request context layer).
FLASK_HOOKS = "cruddur.flask_instrumentor_hooks"
REQUEST_LAYER = "cruddur.request_layer"
# Export attempts are bounded (the exporter retries with backoff inside this deadline) and run on
# the batch processor's thread, never on a request.
EXPORT_TIMEOUT_SECONDS = 10


def export_timeout(config: Config) -> float:
    """The export deadline: 10 s, or less so that one export fits in OpenTelemetry's shutdown share."""
    return min(EXPORT_TIMEOUT_SECONDS, min_share(config.shutdown_budget))


class CountingExporter(SpanExporter):
    """Counts what the wrapped exporter delivered or lost, once per span, for the health check.

    A batch still being exported when shutdown gives up (`give_up`) is counted as dropped then, and
    its late result is ignored.
    """

    def __init__(self, exporter: SpanExporter, status: IntegrationStatus):
        self.exporter = exporter
        self.status = status
        self._lock = threading.Lock()
        self._in_flight = 0
        self._gave_up = False

    def export(self, spans) -> SpanExportResult:
        """Export one batch and count it."""
        with self._lock:
            if self._gave_up:  # popped from the queue just as shutdown gave up on it
                self.status.record_dropped(len(spans))
                return SpanExportResult.FAILURE
            self._in_flight = len(spans)
        error: BaseException | str = "export failed"
        try:
            result = self.exporter.export(spans)
        except Exception as raised:  # an exporter bug must not kill the batch thread
            result, error = SpanExportResult.FAILURE, raised
        with self._lock:
            if self._gave_up:  # already counted as dropped
                return result
            self._in_flight = 0
        if result is SpanExportResult.SUCCESS:
            self.status.record_sent(len(spans))
        else:
            self.status.record_error(error)
            self.status.record_dropped(len(spans))
        return result

    def give_up(self) -> int:
        """Stop counting results; returns the size of the batch still being exported (now lost)."""
        with self._lock:
            self._gave_up = True
            lost, self._in_flight = self._in_flight, 0
        return lost

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        """Shut the wrapped exporter down."""
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Nothing is buffered here."""
        return True


# OpenTelemetry SDK internals CountingBatchSpanProcessor relies on (no public API says how many
# spans wait, or stops within a deadline); tests/test_health.py checks them against the installed SDK.
SDK_INTERNALS = {
    "BatchSpanProcessor._batch_processor._queue": "the bounded deque of waiting spans: queue length, drops",
    "BatchSpanProcessor._batch_processor.shutdown(timeout_millis)": "a shutdown that gives up at a deadline",
}


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's batch processor, counting every sampled span it is given: exported, dropped or queued.

    `produced` counts the spans handed in; `sent + dropped + queued` (plus one batch in flight)
    adds up to it, and after `shutdown_within` nothing is left queued.
    """

    def __init__(self, exporter: CountingExporter, **kwargs):
        super().__init__(exporter, **kwargs)
        self.counting = exporter
        self.status = exporter.status
        self._closed = False
        self.status.count("produced", 0)
        self.status.set_queue_probe(self.queued)

    def queued(self) -> int:
        """Spans waiting in the SDK's queue."""
        return len(self._batch_processor._queue)

    def on_end(self, span: ReadableSpan) -> None:
        """Queue the span (the deque drops the oldest when full: count that)."""
        if not (span.context and span.context.trace_flags.sampled):
            return
        self.status.count("produced")
        if self._closed:
            self.status.record_dropped()
            return
        queue = self._batch_processor._queue
        if len(queue) >= queue.maxlen:
            self.status.record_dropped()
        super().on_end(span)

    def shutdown_within(self, seconds: float) -> None:
        """Export what is queued within `seconds`, then stop; what is left is counted as dropped, logged once."""
        self._closed = True
        # BatchSpanProcessor.shutdown() takes no timeout (it would wait 30 s on a blackholed
        # endpoint); its inner batch processor does, and stops exporting when it runs out.
        self._batch_processor.shutdown(int(seconds * 1000))
        lost = self.counting.give_up() + len(self._batch_processor._queue)
        self._batch_processor._queue.clear()
        if lost:
            self.status.record_dropped(lost)
            log.warning("opentelemetry: %d spans not exported within %.1f s of shutdown; dropped", lost, seconds)


class _SampledNotRecorded:
    """A sampling decision: the span carries the sampled flag but records nothing.

    The SDK's Tracer asks a decision only `is_sampled()` (the flag in the span's context) and
    `is_recording()` (a recording span, or NonRecordingSpan); its Decision enum has no member for
    this combination. `unconsumed_spans_supported()` checks that the SDK still treats it so.
    """

    __slots__ = ()

    def is_sampled(self) -> bool:
        """The span's context says "sampled": callers downstream follow the decision."""
        return True

    def is_recording(self) -> bool:
        """Nothing records the span."""
        return False

    def __repr__(self) -> str:
        return "SAMPLED_NOT_RECORDED"


SAMPLED_NOT_RECORDED = _SampledNotRecorded()


class UnconsumedSpansSampler(Sampler):
    """The app's sampler, except that spans are not recorded while nothing would read them.

    Until a span processor is added (an exporter, X-Ray's subsegments, a test's in-memory
    exporter), a recording span would be built, filled and thrown away. Its ids and sampling
    decision are what the app needs (traceresponse, log lines, outgoing traceparent), and a
    NonRecordingSpan carries exactly those: same trace id, span id, flags and trace state.
    """

    def __init__(self, sampler: Sampler):
        self.sampler = sampler
        self.consumed = False
        # Consumers that read only some spans: each says, as a span starts, whether it would read it.
        self.readers: tuple[Callable[[SpanKind | None], bool], ...] = ()

    def should_sample(
        self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None
    ) -> SamplingResult:
        """The wrapped sampler's decision; not recorded while nothing would read the span."""
        result = self.sampler.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)
        if self.consumed or not result.decision.is_recording():
            return result
        if any(reads(kind) for reads in self.readers):
            return result
        decision = SAMPLED_NOT_RECORDED if result.decision.is_sampled() else Decision.DROP
        return SamplingResult(decision, None, result.trace_state)

    def get_description(self) -> str:
        """As in the SDK's samplers."""
        return f"UnconsumedSpans{{{self.sampler.get_description()}}}"


class LeanTracerProvider(TracerProvider):
    """The SDK's TracerProvider; its spans are non-recording until a span processor is added."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if unconsumed_spans_supported():
            self.sampler = self._gate = UnconsumedSpansSampler(self.sampler)
        else:  # an SDK that would record them anyway: the plain provider
            self._gate = None

    @property
    def spans_consumed(self) -> bool:
        """Whether any span may be recorded: a span processor was added (or the SDK is not one we checked)."""
        return self._gate is None or self._gate.consumed or bool(self._gate.readers)

    def add_span_processor(self, span_processor: SpanProcessor, reads: Callable[[SpanKind | None], bool] | None = None):
        """Add a processor; from now on spans are recorded as the wrapped sampler decides.

        `reads`: the processor reads only some spans; `reads(kind)`, asked as each span starts in
        the starting thread, says whether it would read this one. Spans that no processor would
        read stay non-recording (same ids and decision).
        """
        if self._gate is not None:
            if reads is None:
                self._gate.consumed = True
            else:
                self._gate.readers += (reads,)
        super().add_span_processor(span_processor)


@functools.cache
def unconsumed_spans_supported() -> bool:
    """Whether this SDK makes a NonRecordingSpan with the sampled flag for SAMPLED_NOT_RECORDED."""

    class Sampled(Sampler):
        def should_sample(self, *args, **kwargs) -> SamplingResult:
            return SamplingResult(SAMPLED_NOT_RECORDED)

        def get_description(self) -> str:
            return "SampledNotRecorded"

    try:
        probe = TracerProvider(sampler=Sampled(), shutdown_on_exit=False).get_tracer(__name__).start_span("probe")
        context = probe.get_span_context()
    except Exception:
        return False
    return type(probe) is NonRecordingSpan and context.is_valid and context.trace_flags.sampled


class _Stdout:
    """sys.stdout as it is when written to (ConsoleSpanExporter binds the stream at import)."""

    def write(self, text: str) -> None:
        sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def build_provider(config: Config, id_generator: IdGenerator | None = None) -> TracerProvider:
    """A provider whose trace ids X-Ray accepts (first 8 hex digits are the epoch seconds).

    `id_generator`: another RootAdoptingIdGenerator (tests: one that repeats a seeded sequence).
    """
    resource = Resource.create(
        {
            "service.name": config.service_name,
            "service.version": config.code_version,
            "deployment.environment": config.env,
            "deployment.environment.name": config.env,
        }
    )
    # Our shutdown path flushes within gunicorn's graceful timeout; the SDK's own atexit hook
    # would wait up to 30 s per processor.
    return LeanTracerProvider(
        resource=resource,
        id_generator=id_generator or RootAdoptingIdGenerator(),
        sampler=build_sampler(config.traces_sampler, config.traces_sampler_arg),
        shutdown_on_exit=False,
    )


def otlp_exporter(config: Config, url: str, headers: dict[str, str], session=None) -> SpanExporter:
    """The OTLP/HTTP protobuf span exporter every destination uses (`session`: e.g. a signing one)."""
    return WireOTLPSpanExporter(endpoint=url, headers=headers, timeout=export_timeout(config), session=session)


def _exporter(config: Config) -> tuple[SpanExporter | None, str]:
    if config.traces_exporter == "console":
        return ConsoleSpanExporter(service_name=config.service_name, out=_Stdout()), "OTEL_TRACES_EXPORTER=console"
    if config.traces_url:
        return otlp_exporter(config, config.traces_url, config.otlp_headers), "OTLP/HTTP configured"
    return None, "no OTEL_EXPORTER_OTLP_ENDPOINT or HONEYCOMB_API_KEY"


def add_destination(app: Flask, provider: TracerProvider, exporter: SpanExporter, status: IntegrationStatus) -> None:
    """Export recorded spans to one more place, with its own bounded queue, thread, counters and flush."""
    config: Config = app.extensions["cruddur.config"]
    processor = CountingBatchSpanProcessor(CountingExporter(exporter, status), max_queue_size=config.span_queue_size)
    provider.add_span_processor(ContainedSpanProcessor(processor, Containment(status, log)))
    on_shutdown(app, 10, status.name, processor.shutdown_within)


def _connection_instrumentor(provider: TracerProvider):
    def instrument(conn):
        """Every statement of this connection becomes a span (the maintained instrumentations), if read.

        Connections open on a thread's first request, after create_app has added every span
        processor; with none, a statement's span would be built and thrown away.
        """
        if isinstance(provider, LeanTracerProvider) and not provider.spans_consumed:
            return conn
        if isinstance(conn, sqlite3.Connection):
            return SQLite3Instrumentor.instrument_connection(conn, tracer_provider=provider)
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor  # imports psycopg: PostgreSQL only

        return PsycopgInstrumentor.instrument_connection(conn, tracer_provider=provider)

    return instrument


def _instrument_flask(app: Flask, provider: TracerProvider, excluded_urls: str, meter_provider=None) -> None:
    """FlaskInstrumentor on `app`, as the app uses it (no-op metric instruments without a meter provider)."""
    FlaskInstrumentor().instrument_app(
        app,
        tracer_provider=provider,
        meter_provider=meter_provider or NoOpMeterProvider(),
        excluded_urls=excluded_urls,
    )


def record_enduser(_app: Flask, handle: str, cognito_user_id: str | None, **_identity) -> None:
    """`user_identified` receiver: the server span (the current span while a request is identified)
    gets `enduser.id`, the Cognito `sub` (the handle while sign-in is off)."""
    trace.get_current_span().set_attribute("enduser.id", cognito_user_id or handle)


def init_app(app: Flask, provider: TracerProvider | None = None) -> bool:
    """Trace every request; export spans when configured. Returns whether export is on."""
    config: Config = app.extensions["cruddur.config"]
    provider = provider or build_provider(config)
    exporter, reason = _exporter(config)
    status = IntegrationStatus("opentelemetry", exporter is not None, reason)
    if exporter is not None:
        add_destination(app, provider, exporter, status)
    app.extensions["cruddur.tracer_provider"] = provider
    app.extensions["cruddur.tracer"] = provider.get_tracer(TRACER_NAME)
    app.extensions["cruddur.instrument_connection"] = _connection_instrumentor(provider)

    # Continue a W3C traceparent or an X-Ray header, whichever the caller sent, and answer with
    # `traceresponse`. These are process-wide by design of the OpenTelemetry API.
    propagate.set_global_textmap(CompositePropagator([TraceContextTextMapPropagator(), XRayRootPropagator()]))
    set_global_response_propagator(TraceResponsePropagator())
    # Request metrics go to this worker's MeterProvider when metrics export is on
    # (telemetry/metrics.py). Otherwise no-op instruments: the API's proxy instruments would record
    # every request and throw it away, and no-op ones cost less.
    # Its hooks go in here, before the other integrations' (X-Ray reads the request's span);
    # instrument_requests, once they are all in, may put the request context layer in their places.
    meter_provider = app.extensions.get("cruddur.meter_provider")
    app.extensions[FLASK_HOOKS] = instrument(
        app, lambda: _instrument_flask(app, provider, config.flask_excluded_urls, meter_provider)
    )
    # Outgoing HTTP calls made by application code. Telemetry's own calls (OTLP export, the
    # browser relay, Rollbar) run with instrumentation suppressed, so they never become spans.
    requests_instrumentor = RequestsInstrumentor()
    if not requests_instrumentor.is_instrumented_by_opentelemetry:
        requests_instrumentor.instrument(tracer_provider=provider)

    from ..auth import user_identified

    user_identified.connect(record_enduser, app)
    register(app, status)
    return announce(log, status)


@functools.cache
def context_layer_supported() -> bool:
    """Whether the request context layer lets an app see what FlaskInstrumentor does (probed once)."""
    try:
        return self_check(
            lambda ids: LeanTracerProvider(id_generator=ids, sampler=build_sampler("", ""), shutdown_on_exit=False),
            _instrument_flask,
        )
    except Exception as error:  # a library change the probe did not expect: keep the instrumentor
        log.warning("opentelemetry: request context probe failed (%s); FlaskInstrumentor serves requests", error)
        return False


def _why_not_context_layer(app: Flask) -> str | None:
    provider = app.extensions.get("cruddur.tracer_provider")
    hooks = app.extensions.get(FLASK_HOOKS)
    if not isinstance(provider, LeanTracerProvider) or provider.spans_consumed:
        return "spans are recorded"
    if app.extensions.get("cruddur.meter_provider") is not None:
        return "request metrics are on"
    if not decides_by_trace_context(provider.sampler.sampler):
        return "the sampler may read span attributes"
    if hooks is None or not hooks.in_place(app):
        return "its hooks are not the ones the context layer stands in for"
    if not context_layer_supported():
        return "the context layer's probe disagreed with it"
    return None


def instrument_requests(app: Flask) -> bool:
    """Last step of telemetry: keep FlaskInstrumentor, or put the request context layer in its places.

    The layer (telemetry/request_context.py) only while nothing reads what the instrumentor adds to
    the request's trace context: no span processor once every integration is in, no meter provider,
    a sampler that decides from the trace context alone, the instrumentor's hooks where it put them,
    and a probe that finds both alike. A request that starts after a span processor is added goes
    through the instrumentor's hooks. Returns whether the layer is in.
    """
    why_not = _why_not_context_layer(app)
    if why_not is not None:
        app.extensions[REQUEST_LAYER] = "FlaskInstrumentor"
        log.debug("opentelemetry: FlaskInstrumentor serves requests: %s", why_not)
        return False
    config: Config = app.extensions["cruddur.config"]
    provider = app.extensions["cruddur.tracer_provider"]
    layer = RequestContextLayer(
        provider, app.extensions["cruddur.tracer"], config.flask_excluded_urls, app.extensions[FLASK_HOOKS]
    )
    layer.install(app)
    app.extensions[REQUEST_LAYER] = "context"
    log.debug("opentelemetry: no span is recorded, so requests get their trace context without FlaskInstrumentor")
    return True


@contextmanager
def span(name: str, **attributes):
    """A span of the current request's trace, for service code: `with span("home_activities") as s`."""
    tracer = current_app.extensions["cruddur.tracer"]
    if tracer is None:  # CRUDDUR_TELEMETRY=off
        yield trace.INVALID_SPAN
        return
    with tracer.start_as_current_span(name, attributes=attributes or None) as current:
        yield current
