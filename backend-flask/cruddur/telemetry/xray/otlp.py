"""AWS X-Ray over OTLP (CRUDDUR_XRAY_TRANSPORT=otlp): the OpenTelemetry spans, SigV4-signed, to X-Ray.

A second batch processor (its own queue, thread and counters): the decision is OpenTelemetry's.
"""

from __future__ import annotations

import logging

from flask import Flask

from ...config import Config
from .. import register_off
from ..core.status import announce, track
from ..otel.aws import resolve, signed_session
from ..otel.tracing import add_destination, otlp_exporter

log = logging.getLogger(__name__)
NAME = "xray"


def init_app(app: Flask) -> bool:
    """Export every recorded span to X-Ray's OTLP endpoint. Returns whether it is on."""
    config: Config = app.extensions["cruddur.config"]
    endpoint, region, why_not = resolve("xray", config.aws_region)
    if why_not:
        return register_off(app, NAME, f"CRUDDUR_XRAY_TRANSPORT=otlp, but {why_not}", log)
    status = track(app, NAME, True, f"OTLP/HTTP spans to X-Ray in {region}, SigV4-signed")
    exporter = otlp_exporter(config, endpoint + "/v1/traces", {}, session=signed_session("xray", region))
    add_destination(app, app.extensions["cruddur.tracer_provider"], exporter, status)
    return announce(log, status)
