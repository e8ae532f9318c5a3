"""Cruddur: the Flask API. `create_app()` is the only place that wires things."""

from __future__ import annotations

import logging

from flask import Flask
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from . import api_request, auth, errors, logs, store, telemetry
from .config import Config
from .privacy import RedactQueryMiddleware
from .routes import activities, health, messages

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
    for blueprint in (activities.bp, messages.bp, health.bp):
        app.register_blueprint(blueprint)
    telemetry.init_app(app)
    if config.trusted_proxies:  # outside tracing, so spans, logs and rate limits see the real client
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=config.trusted_proxies, x_proto=0)
    # Outermost WSGI layer, so no instrumentation ever sees a credential in a URL.
    app.wsgi_app = RedactQueryMiddleware(app.wsgi_app)
    log.info(
        "cruddur started",
        extra={"env": config.env, "version": config.code_version, "telemetry": config.telemetry},
    )
    return app
