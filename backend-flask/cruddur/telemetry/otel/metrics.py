"""Request metrics (rate, errors, duration) over OTLP/HTTP, beside the traces.

FlaskInstrumentor records `http.server.request.duration` and `http.server.active_requests`. With a
metrics endpoint, each worker (built after gunicorn's fork) exports its own series, told apart by
`service.instance.id`, every OTEL_METRIC_EXPORT_INTERVAL ms; without one nothing is kept.
"""

from __future__ import annotations

import logging
import os
import socket

from flask import Flask
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import MetricExportResult, PeriodicExportingMetricReader

from ...config import Config
from .. import register_off
from ..core.shutdown import on_shutdown
from ..core.status import IntegrationStatus, announce, track
from .tracing import service_resource

log = logging.getLogger(__name__)
NAME = "metrics"
EXPORT_TIMEOUT_SECONDS = 10


class CountingMetricExporter(OTLPMetricExporter):
    """The SDK's OTLP/HTTP metric exporter, counting the data points it delivered or lost."""

    def __init__(self, status: IntegrationStatus, **kwargs):
        super().__init__(**kwargs)
        self.status = status

    def export(self, metrics_data, timeout_millis: float | None = 10_000, **kwargs) -> MetricExportResult:
        points = sum(
            len(metric.data.data_points)
            for resource_metrics in metrics_data.resource_metrics
            for scope_metrics in resource_metrics.scope_metrics
            for metric in scope_metrics.metrics
        )
        error: BaseException | str = "export failed"
        try:
            result = super().export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception as raised:  # an exporter bug must not kill the reader thread
            result, error = MetricExportResult.FAILURE, raised
        if result is MetricExportResult.SUCCESS:
            self.status.record_sent(points)
        else:
            self.status.record_error(error)
            self.status.record_dropped(points)
        return result


def init_app(app: Flask) -> bool:
    """Build this worker's MeterProvider when an endpoint is set. Returns whether export is on."""
    config: Config = app.extensions["cruddur.config"]
    # The instrumentations read their semantic-convention choice from the environment, once per process.
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", config.semconv_stability_opt_in)
    url = config.metrics_url
    if not url:
        why = "OTEL_METRICS_EXPORTER=none" if config.metrics_exporter == "none" else "no OTLP endpoint"
        return register_off(app, NAME, why, log)
    status = track(app, NAME, True, "HTTP server metrics over OTLP/HTTP, one series per worker")
    resource = service_resource(config, {"service.instance.id": f"{socket.gethostname()}/{os.getpid()}"})
    exporter = CountingMetricExporter(
        status, endpoint=url, headers=config.metrics_headers, timeout=EXPORT_TIMEOUT_SECONDS
    )
    reader = PeriodicExportingMetricReader(exporter)
    # Our shutdown is bounded, the SDK's atexit hook is not. No exemplars: they were a fifth of the
    # recording cost, and the traces are a query away in the same tool.
    provider = MeterProvider(
        resource=resource,
        metric_readers=[reader],
        shutdown_on_exit=False,
        exemplar_filter=AlwaysOffExemplarFilter(),
    )
    app.extensions["cruddur.meter_provider"] = provider
    on_shutdown(app, 20, NAME, lambda seconds: provider.shutdown(timeout_millis=seconds * 1000))
    return announce(log, status)
