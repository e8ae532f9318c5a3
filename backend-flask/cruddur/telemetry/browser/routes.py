"""The browser's OTLP/HTTP trace relay."""

from __future__ import annotations

import math

from flask import Blueprint, abort, current_app, request
from werkzeug.exceptions import TooManyRequests, UnsupportedMediaType

from ...clients import client_address, client_key
from ...errors import BadBody
from ...routes import config
from . import EXTENSION, MAX_BODY_BYTES, OTLP_CONTENT_TYPES
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
    relay = current_app.extensions[EXTENSION]
    client = client_key(client_address())
    slow_down(relay.requests.take(client))  # before the body is read: a flood costs no read
    request.max_content_length = MAX_BODY_BYTES
    body = request.get_data(cache=False)
    slow_down(relay.bytes.take(client, len(body)))  # before it is decoded, the costly part
    try:
        relay.accept(body, request.mimetype)
    except RejectedExport as rejected:
        raise BadBody(rejected.message, [rejected.code]) from None
    return "", 204


def slow_down(wait: float) -> None:
    """Answer 429 with Retry-After when a limit says to wait."""
    if wait:
        raise TooManyRequests("Too many span exports; slow down.", retry_after=max(1, math.ceil(wait)))
