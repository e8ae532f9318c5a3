"""Health check."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from ..store import database_state
from . import config

bp = Blueprint("health", __name__)


@bp.get("/api/health-check")
def health_check():
    """Liveness, whether the database answers ("ok" or "unavailable"), and each integration (no secrets)."""
    status = {
        name: integration.status()
        for name, integration in current_app.extensions.get("cruddur.integrations", {}).items()
    }
    return jsonify(
        {
            "success": True,
            "version": config().code_version,
            "env": config().env,
            "telemetry": config().telemetry,
            "database": database_state(),
            "integrations": status,
        }
    )
