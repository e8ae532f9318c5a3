"""Errors: every error response is JSON, built here."""

from __future__ import annotations

import logging

from flask import Flask, Request, jsonify
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    InternalServerError,
    RequestEntityTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
)

try:  # what gunicorn raises while reading a broken chunked body (bad size, missing terminator)
    from gunicorn.http.errors import ParseException as _ServerBodyError
except ImportError:  # pragma: no cover - another WSGI server
    _ServerBodyError = OSError

log = logging.getLogger(__name__)


class ValidationFailed(HTTPException):
    """422 with every applicable error code."""

    code = 422
    description = "The request could not be processed."

    def __init__(self, codes: list[str]):
        super().__init__()
        self.codes = list(codes)


class BadBody(HTTPException):
    """400 for a body that is JSON but not the shape the endpoint takes."""

    code = 400

    def __init__(self, description: str, codes: list[str] | None = None):
        super().__init__(description)
        self.codes = codes or ["invalid_body"]


class DatabaseUnavailable(ServiceUnavailable):
    """503 while the database cannot be reached, with Retry-After; never the driver's message."""

    description = "The database is unavailable. Try again shortly."

    def __init__(self, retry_after: int = 5):
        super().__init__(retry_after=retry_after)
        self.codes = ["database_unavailable"]


class ApiJSONProvider(DefaultJSONProvider):
    """Flask's JSON, where a document nested too deeply to parse is malformed input, not a crash."""

    sort_keys = False  # fields in the contract's order
    ensure_ascii = False  # text byte for byte: emoji and right-to-left marks as UTF-8

    def loads(self, s, **kwargs):
        """Parse JSON; RecursionError (thousands of nested arrays) becomes ValueError, i.e. a 400."""
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


class ApiRequest(Request):
    """A request whose JSON and body failures say what was wrong."""

    def get_data(self, *args, **kwargs):
        """The body: 400 when the server cannot read it, 413 when a chunked body passes the limit."""
        try:
            data = super().get_data(*args, **kwargs)
        except (OSError, _ServerBodyError) as error:
            bad = BadRequest("The request body could not be read.")
            bad.codes = ["unreadable_body"]
            raise bad from error
        # Without Content-Length (chunked), werkzeug stops reading at max_content_length and
        # returns what it has, silently truncated: one more byte from the server says whether
        # the body really was longer than the limit.
        limit = self.max_content_length
        if limit is not None and self.content_length is None and len(data) >= limit:
            try:
                more = self.environ["wsgi.input"].read(1)
            except (OSError, _ServerBodyError):
                more = b""
            if more:
                raise RequestEntityTooLarge()
        return data

    def on_json_loading_failed(self, e: ValueError | None):
        """415 for a body that is not JSON by content type, 400 for JSON that does not parse."""
        if e is None:
            raise UnsupportedMediaType("Send the body as JSON with Content-Type: application/json.")
        bad = BadRequest("The body is not valid JSON.")
        bad.codes = ["malformed_json"]
        raise bad from e


def error_code(exc: HTTPException) -> str:
    """A stable snake_case code for an HTTP error, e.g. `not_found`."""
    return (exc.name or "error").lower().replace(" ", "_").replace("'", "")


def error_response(status: int, codes: list[str], message: str):
    """The one JSON error shape: {"errors": [...], "message": "..."}."""
    response = jsonify({"errors": codes, "message": message})
    response.status_code = status
    return response


def handle_http_exception(exc: HTTPException):
    """Turn any HTTP error into JSON, keeping its headers (Allow on 405, Retry-After on 429)."""
    codes = getattr(exc, "codes", None) or [error_code(exc)]
    response = error_response(exc.code or 500, codes, exc.description or "")
    for key, value in exc.get_headers():
        if key.lower() != "content-type":
            response.headers[key] = value
    return response


def handle_internal_error(exc: InternalServerError):
    """500 without a stack trace. Flask has already logged it and sent got_request_exception."""
    return error_response(500, ["internal_server_error"], "Something went wrong on our side.")


def init_app(app: Flask) -> None:
    """Register the handlers. Never for bare Exception: that would silence got_request_exception."""
    app.request_class = ApiRequest
    app.json_provider_class = ApiJSONProvider
    app.json = ApiJSONProvider(app)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(InternalServerError, handle_internal_error)
