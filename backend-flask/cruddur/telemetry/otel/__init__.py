"""OpenTelemetry: the request's trace context always; spans and metrics over OTLP/HTTP when configured.

`tracing` and `metrics` import the SDK only when `init_app` runs.
"""

from __future__ import annotations

from flask import Flask

NAME = "opentelemetry"


def init_app(app: Flask) -> bool:
    """Request metrics first (FlaskInstrumentor takes their meter provider), then tracing."""
    from . import metrics, tracing

    metrics.init_app(app)
    return tracing.init_app(app)
