"""Telemetry: the registry of integrations, one per line, and `init_app(app)`, which create_app calls once.

Each entry is a package beside this file with `NAME` (its name in the health check) and
`init_app(app) -> bool`, which installs nothing and imports no vendor SDK when its variable is unset.
Order matters: OpenTelemetry first, since the others read its trace ids. Removing an integration is
deleting its package and its line. `core/` holds what they share and imports no vendor SDK.
"""

from __future__ import annotations

import importlib
import logging

from flask import Flask

from .core import shutdown
from .core.status import announce, track

log = logging.getLogger(__name__)

INTEGRATIONS = (
    "otel",  # OpenTelemetry: trace context, spans, OTLP export to Honeycomb, request metrics
    "cloudwatch",  # CloudWatch Logs: watchtower, or OTLP logs
    "browser",  # the browser span relay: /api/telemetry/v1/traces
    "rollbar",  # Rollbar: unhandled errors and messages, /rollbar/test
    "xray",  # AWS X-Ray: the X-Ray SDK and its daemon, or OTLP spans
)


def integrations() -> list:
    """The registry's packages, imported (a package imports its vendor SDK only in its init_app)."""
    return [importlib.import_module(f".{name}", __name__) for name in INTEGRATIONS]


def init_app(app: Flask) -> None:
    """Install every integration as configured; with CRUDDUR_TELEMETRY=off, none (each is shown as off)."""
    config = app.extensions["cruddur.config"]
    if not config.telemetry_on:
        for package in integrations():
            register_off(app, package.NAME, "CRUDDUR_TELEMETRY=off")
        return
    for package in integrations():
        package.init_app(app)
    shutdown.init_app(app)


def register_off(app: Flask, name: str, reason: str, logger: logging.Logger = log) -> bool:
    """Register integration `name` as off for `reason` (the health check shows it; `logger` says it once)."""
    status = track(app, name, False, reason)
    return announce(logger, status)
