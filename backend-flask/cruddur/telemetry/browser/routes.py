"""The browser's OTLP/HTTP trace relay."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, request
from werkzeug.exceptions import TooManyRequests, UnsupportedMediaType

from ...errors import BadBody
from ...rate_limit import client_key
from ...routes import config
from . import MAX_BODY_BYTES, OTLP_CONTENT_TYPES
from .spans import RejectedExport

bp = Blueprint("telemetry", __name__, url_prefix="/api/telemetry")


@bp.post("/v1/traces")
def browser_traces():
    """Accept an OTLP export from the frontend and queue it for the vendor (204)."""
    if request.headers.get("Origin", "").rstrip("/") != config().frontend_url:
        abort(403, "Only the Cruddur frontend may send browser spans.")
    if request.mimetype not in OTLP_CONTENT_TYPES:
        abort(415, "Send OTLP as application/x-protobuf or application/json.")
    if request.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity"):
        unsupported = UnsupportedMediaType("Send OTLP uncompressed; the browser exporter never compresses.")
        unsupported.codes = ["unsupported_content_encoding"]
        raise unsupported
    request.max_content_length = MAX_BODY_BYTES
    relay = current_app.extensions["cruddur.relay"]
    wait = relay.limits.take(client_key(request.remote_addr))
    if wait:
        raise TooManyRequests("Too many span exports; slow down.", retry_after=max(1, round(wait)))
    try:
        relay.accept(request.get_data(cache=False), request.mimetype)
    except RejectedExport as rejected:
        raise BadBody(rejected.message, [rejected.code]) from None
    return "", 204
