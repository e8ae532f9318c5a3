"""OpenTelemetry: every request gets a trace (X-Ray-compatible ids); export to OTLP/HTTP when set."""

from __future__ import annotations

import logging

from flask import Flask
from opentelemetry import propagate
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.propagators import (
    TraceResponsePropagator,
    set_global_response_propagator,
)
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..config import Config

log = logging.getLogger(__name__)
TRACER_NAME = "cruddur"


def build_provider(config: Config) -> TracerProvider:
    """A provider whose trace ids X-Ray accepts (first 8 hex digits are the epoch seconds)."""
    resource = Resource.create(
        {
            "service.name": config.service_name,
            "service.version": config.code_version,
            "deployment.environment": config.env,
            "deployment.environment.name": config.env,
        }
    )
    return TracerProvider(resource=resource, id_generator=AwsXRayIdGenerator())


def init_app(app: Flask, provider: TracerProvider | None = None) -> bool:
    """Trace every request; returns whether spans are exported anywhere."""
    config: Config = app.extensions["cruddur.config"]
    provider = provider or build_provider(config)
    app.extensions["cruddur.tracer_provider"] = provider
    app.extensions["cruddur.tracer"] = provider.get_tracer(TRACER_NAME)
    # Continue a W3C traceparent or an X-Ray header, whichever the caller sent.
    propagate.set_global_textmap(CompositePropagator([TraceContextTextMapPropagator(), AwsXRayPropagator()]))
    set_global_response_propagator(TraceResponsePropagator())
    FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
    return False
