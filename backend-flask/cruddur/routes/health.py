"""Health check and Prometheus metrics."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST

from ..store import database_state
from ..telemetry.core import status
from . import config

bp = Blueprint("health", __name__)


@bp.get("/api/health-check")
def health_check():
    """Liveness, whether the database answers ("ok" or "unavailable"), and each integration (no secrets).

    The integrations' counters are the whole instance's (every gunicorn worker's, added up).
    """
    settings = config()
    body = {"success": True, "version": settings.code_version, "env": settings.env, "telemetry": settings.telemetry}
    body["database"] = database_state()
    return jsonify(body | {"integrations": status.snapshot(current_app)})


@bp.get("/metrics")
def metrics():
    """The integrations' counters in the Prometheus text format, for the whole instance."""
    return Response(status.exposition(current_app), content_type=CONTENT_TYPE_LATEST)
