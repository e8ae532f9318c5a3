"""Rollbar test endpoints (absent in production)."""

from __future__ import annotations

import logging

from flask import Blueprint, abort, current_app

from ..auth import identify
from . import config

bp = Blueprint("rollbar_test", __name__, url_prefix="/rollbar")
log = logging.getLogger(__name__)


@bp.before_request
def only_outside_production():
    """These routes do not exist in production."""
    if config().env == "production":
        abort(404)


bp.before_request(identify)  # a signed-in caller's test items name them


@bp.get("/test")
def test_message():
    """Send Rollbar the warning "Hello World!"."""
    reporter = current_app.extensions.get("cruddur.rollbar")
    if reporter is not None:
        reporter.report_message("Hello World!", "warning")
    return "Hello World!"


@bp.get("/test/exception")
def test_exception():
    """Raise a real unhandled error for Rollbar to catch."""
    raise RuntimeError("Cruddur test exception for Rollbar")
