"""Telemetry integrations: one module each, each with init_app(app) -> bool."""

from __future__ import annotations

import logging

from flask import Flask

from .status import IntegrationStatus, announce, register

log = logging.getLogger(__name__)
INTEGRATIONS = ("opentelemetry", "browser_relay", "cloudwatch", "rollbar", "xray")


def switched_off(app: Flask) -> None:
    """CRUDDUR_TELEMETRY=off: no tracer, no middleware, no handler, no thread; the health check says so."""
    app.extensions["cruddur.tracer"] = None
    for name in INTEGRATIONS:
        disabled(app, name, "CRUDDUR_TELEMETRY=off")


def disabled(app: Flask, name: str, reason: str, logger: logging.Logger = log) -> bool:
    """Register integration `name` as off for `reason` (the health check shows it; `logger` says it once)."""
    status = IntegrationStatus(name, False, reason)
    register(app, status)
    return announce(logger, status)
