"""The browser's OTLP/HTTP trace relay."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, request
from werkzeug.exceptions import TooManyRequests

from ..telemetry.relay import MAX_BODY_BYTES, OTLP_CONTENT_TYPES, Batch
from . import config

bp = Blueprint("telemetry", __name__, url_prefix="/api/telemetry")


@bp.post("/v1/traces")
def browser_traces():
    """Accept an OTLP export from the frontend and queue it for the vendor (204)."""
    if request.headers.get("Origin", "").rstrip("/") != config().frontend_url:
        abort(403, "Only the Cruddur frontend may send browser spans.")
    content_type = request.mimetype
    if content_type not in OTLP_CONTENT_TYPES:
        abort(415, "Send OTLP as application/x-protobuf or application/json.")
    request.max_content_length = MAX_BODY_BYTES
    relay = current_app.extensions["cruddur.relay"]
    wait = relay.limits.take(request.remote_addr or "unknown")
    if wait:
        raise TooManyRequests("Too many span exports; slow down.", retry_after=max(1, round(wait)))
    body = request.get_data(cache=False)
    relay.submit(Batch(body, content_type, request.headers.get("Content-Encoding")))
    return "", 204
