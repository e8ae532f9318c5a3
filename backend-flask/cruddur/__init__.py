"""Cruddur: the Flask API. `create_app()` is the only place that wires things."""

from __future__ import annotations

import logging

from flask import Flask
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from . import api_request, auth, errors, logs, store
from .config import Config
from .privacy import RedactQueryMiddleware
from .routes import activities, health, messages, rollbar_test, telemetry

log = logging.getLogger(__name__)

CORS_ALLOW_HEADERS = ["authorization", "content-type", "traceparent", "tracestate", "x-amzn-trace-id"]
CORS_EXPOSE_HEADERS = ["traceresponse", "x-amzn-trace-id"]


def create_app(config: Config | None = None) -> Flask:
    """Build the app from `config` (default: the environment)."""
    config = config or Config.from_env()
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=config.max_content_length)
    app.extensions["cruddur.config"] = config
    app.extensions["cruddur.integrations"] = {}

    logs.init_app(app)
    api_request.init_app(app)
    errors.init_app(app)
    store.init_app(app, config)
    auth.init_app(app)
    CORS(
        app,
        resources={r"/api/*": {"origins": [config.frontend_url, config.backend_url]}},
        allow_headers=CORS_ALLOW_HEADERS,
        expose_headers=CORS_EXPOSE_HEADERS,
        max_age=600,
    )
    for blueprint in (activities.bp, messages.bp, health.bp, rollbar_test.bp):
        app.register_blueprint(blueprint)
    if config.telemetry_on:
        app.register_blueprint(telemetry.bp)
        _init_telemetry(app)
    else:
        from .telemetry import switched_off

        switched_off(app)
    if config.trusted_proxies:  # outside tracing, so spans, logs and rate limits see the real client
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=config.trusted_proxies, x_proto=0)
    # Outermost WSGI layer, so no instrumentation ever sees a credential in a URL.
    app.wsgi_app = RedactQueryMiddleware(app.wsgi_app)
    log.info(
        "cruddur started",
        extra={"env": config.env, "version": config.code_version, "telemetry": config.telemetry},
    )
    return app


def _init_telemetry(app: Flask) -> None:
    """Integrations, one module each; each installs nothing when its variable is unset.

    Imported here, so CRUDDUR_TELEMETRY=off loads none of them; each imports its vendor's SDK only
    when it is on. Order: tracing first (the others read its trace ids).
    """
    config: Config = app.extensions["cruddur.config"]
    from .telemetry import disabled, metrics, relay, rollbar, shutdown, tracing

    # Each transport is its own module, imported only when chosen: in otlp mode neither the X-Ray
    # SDK nor watchtower is loaded.
    if config.xray_transport == "otlp":
        from .telemetry import xray_otlp as xray
    elif config.xray_daemon_address:
        from .telemetry import xray
    else:  # off: the X-Ray SDK (and botocore under it) is not even imported
        xray = None
    if config.cloudwatch_transport == "otlp":
        from .telemetry import cloudwatch_otlp as cloudwatch
    else:
        from .telemetry import cloudwatch

    metrics.init_app(app)  # before tracing: the Flask instrumentation takes its meter provider
    tracing.init_app(app)
    cloudwatch.init_app(app)
    relay.init_app(app)
    rollbar.init_app(app)
    if xray is not None:
        xray.init_app(app)
    else:
        disabled(app, "xray", "AWS_XRAY_DAEMON_ADDRESS is not set", logging.getLogger("cruddur.telemetry.xray"))
    shutdown.init_app(app)
    # Last: whether any integration records spans is known only now (X-Ray adds a span processor).
    tracing.instrument_requests(app)
