"""Rollbar: unhandled exceptions and messages as Rollbar items, sent off the request path.

The reporter (reporter.py) and pyrollbar are imported only when the integration is on; the
/rollbar/test routes (routes.py) are there either way, outside production.
"""

from __future__ import annotations

import logging

from flask import Flask, got_request_exception

from ...config import Config
from .. import register_off
from ..core.shutdown import on_shutdown
from ..core.status import announce, track

log = logging.getLogger(__name__)
NAME = "rollbar"
EXTENSION = "cruddur.rollbar"


def init_app(app: Flask) -> bool:
    """Report unhandled exceptions (Flask's `got_request_exception`) to Rollbar when a token is set."""
    from .routes import bp

    config: Config = app.extensions["cruddur.config"]
    app.register_blueprint(bp)
    if not config.rollbar_access_token:
        return register_off(app, NAME, "ROLLBAR_ACCESS_TOKEN is unset", log)
    from .reporter import RollbarReporter, configure_pyrollbar

    configure_pyrollbar(config)
    status = track(app, NAME, True, "ROLLBAR_ACCESS_TOKEN is set")
    reporter = RollbarReporter(config, status)
    status.reason += f"; environment {reporter.environment}"
    app.extensions[EXTENSION] = reporter
    # A weak reference (blinker's default): the receiver lives as long as the app and its reporter.
    got_request_exception.connect(reporter.on_request_exception, app)
    from ...auth import user_identified

    user_identified.connect(reporter.on_user_identified, app)
    on_shutdown(app, priority=20, name=NAME, flush=reporter.flush)
    return announce(log, status)
