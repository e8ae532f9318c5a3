"""Rollbar: unhandled exceptions and messages as Rollbar items, sent off the request path.

The reporter lives in telemetry/rollbar_reporter.py; it and pyrollbar are imported only when the
integration is on.
"""

from __future__ import annotations

import logging

from flask import Flask, got_request_exception

from ..config import Config
from . import disabled
from .shutdown import on_shutdown
from .status import IntegrationStatus, announce, register

log = logging.getLogger(__name__)
NAME = "rollbar"
EXTENSION = "cruddur.rollbar"


def init_app(app: Flask) -> bool:
    """Report unhandled exceptions and `report_message` calls to Rollbar when a token is set."""
    config: Config = app.extensions["cruddur.config"]
    if not config.rollbar_access_token:
        return disabled(app, NAME, "ROLLBAR_ACCESS_TOKEN is unset", log)
    from .rollbar_reporter import RollbarReporter, configure_pyrollbar

    status = IntegrationStatus(NAME, True, "ROLLBAR_ACCESS_TOKEN is set")
    configure_pyrollbar(config)
    reporter = RollbarReporter(config, status)
    status.reason += f"; environment {reporter.environment}"
    app.extensions[EXTENSION] = reporter
    # Weak by default: the connection lives as long as the app (and its reporter) does.
    got_request_exception.connect(reporter.on_request_exception, app)
    from ..auth import user_identified

    user_identified.connect(reporter.on_user_identified, app)
    on_shutdown(app, priority=20, name=NAME, flush=reporter.flush)
    register(app, status)
    return announce(log, status)
