"""The benchmark's `stock` configuration: the bootcamp's wiring of the four libraries, as they document it.

    gunicorn -c gunicorn.conf.py 'bench.stock_app:build()'    (started by `python -m bench`; never an app mode)

The same Cruddur app, built with CRUDDUR_TELEMETRY=off (no integration of its own), then wired the
way the course does it:
- OpenTelemetry: a global TracerProvider with BatchSpanProcessor(OTLPSpanExporter()) (the exporter
  reads OTEL_EXPORTER_OTLP_ENDPOINT), FlaskInstrumentor().instrument_app(app) and
  RequestsInstrumentor().instrument(); the service code's span comes from the global tracer;
- X-Ray: the global `xray_recorder`, configured with the service name and the dynamic naming
  pattern, and XRayMiddleware(app, xray_recorder) (the daemon address from AWS_XRAY_DAEMON_ADDRESS);
- CloudWatch Logs: a module logger with a StreamHandler and a watchtower CloudWatchLogHandler (its
  defaults), one log line per request in `after_request`;
- Rollbar: rollbar.init(...) and got_request_exception.connect(rollbar.contrib.flask.report_exception).

Only for the benchmark's loss check, the X-Ray emitter's sends are counted, and
`GET /api/bench/stock` reports that count.
"""

from __future__ import annotations

import logging
import os
from time import strftime

import rollbar
import rollbar.contrib.flask
import watchtower
from aws_xray_sdk.core import xray_recorder
from aws_xray_sdk.ext.flask.middleware import XRayMiddleware
from flask import got_request_exception, jsonify, request
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from cruddur import create_app
from cruddur.config import BACKEND_DIR, Config

STATS_PATH = "/api/bench/stock"
LOGGER_NAME = "cruddur.stock"


def build():
    """The app with the stock wiring."""
    config = Config.from_env()
    if config.telemetry_on:
        raise RuntimeError("bench.stock_app needs CRUDDUR_TELEMETRY=off: the stock wiring replaces the app's own")
    app = create_app(config)

    # Honeycomb, as in the course's week 2.
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    app.extensions["cruddur.tracer"] = trace.get_tracer(__name__)  # the service's own span
    FlaskInstrumentor().instrument_app(app)
    RequestsInstrumentor().instrument()

    # X-Ray.
    xray_recorder.configure(service=config.service_name, dynamic_naming=os.environ.get("AWS_XRAY_URL"))
    XRayMiddleware(app, xray_recorder)
    sent = {"xray": 0}
    send_entity = xray_recorder.emitter.send_entity

    def counted_send(entity):
        sent["xray"] += 1
        send_entity(entity)

    xray_recorder.emitter.send_entity = counted_send

    # CloudWatch Logs.
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.DEBUG)
    logger.addHandler(logging.StreamHandler())
    logger.addHandler(watchtower.CloudWatchLogHandler(log_group_name=os.environ["CLOUDWATCH_LOG_GROUP"]))

    @app.after_request
    def after_request(response):
        timestamp = strftime("[%Y-%b-%d %H:%M]")
        logger.error(
            "%s %s %s %s %s %s",
            timestamp,
            request.remote_addr,
            request.method,
            request.scheme,
            request.full_path,
            response.status,
        )
        return response

    # Rollbar.
    rollbar.init(
        os.environ["ROLLBAR_ACCESS_TOKEN"],
        "production",
        root=str(BACKEND_DIR),
        allow_logging_basic_config=False,
        endpoint=os.environ.get("ROLLBAR_ENDPOINT") or rollbar.DEFAULT_ENDPOINT,
    )
    got_request_exception.connect(rollbar.contrib.flask.report_exception, app)

    @app.get(STATS_PATH)
    def stock_stats():
        """What the stock wiring sent, for the benchmark's loss check."""
        return jsonify({"xray_sent": sent["xray"]})

    return app
