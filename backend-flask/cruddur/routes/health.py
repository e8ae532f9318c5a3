"""Health check."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from . import config

bp = Blueprint("health", __name__)


@bp.get("/api/health-check")
def health_check():
    """Liveness plus the state of each telemetry integration (no secrets)."""
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
            "integrations": status,
        }
    )
