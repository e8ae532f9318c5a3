"""`span()`, the helper service code uses for its own spans: the OpenTelemetry API only, so that
importing it loads no SDK, and a no-op when CRUDDUR_TELEMETRY=off."""

from __future__ import annotations

from contextlib import contextmanager

from flask import current_app
from opentelemetry import trace

TRACER = "cruddur.tracer"  # app.extensions: the app's tracer, None when telemetry is off


@contextmanager
def span(name: str, **attributes):
    """A span of the current request's trace: `with span("home_activities", **{"app.x": 1}) as s`."""
    tracer = current_app.extensions.get(TRACER)
    if tracer is None:
        yield trace.INVALID_SPAN
        return
    with tracer.start_as_current_span(name, attributes=attributes or None) as current:
        yield current
