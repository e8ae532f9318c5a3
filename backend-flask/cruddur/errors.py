"""Errors: every error response is JSON, built here."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable, Unauthorized

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


class SignInRequired(Unauthorized):
    """401 for a request that needs a user and carries no token (RFC 6750: no error code then)."""

    description = "Sign in to do this: send Authorization: Bearer <access token>."
    challenge = "Bearer"

    def __init__(self):
        super().__init__()
        self.codes = ["sign_in_required"]

    def get_headers(self, environ=None, scope=None):
        """JSON, and the Bearer challenge (RFC 6750, section 3)."""
        return [("Content-Type", "application/json"), ("WWW-Authenticate", self.challenge)]


class InvalidToken(SignInRequired):
    """401 for a token that is not a valid access token of the pool; never says why (or echoes it)."""

    description = "The access token is invalid or expired: sign in again."
    challenge = 'Bearer error="invalid_token"'

    def __init__(self):
        super().__init__()
        self.codes = ["invalid_token"]


class AuthUnavailable(ServiceUnavailable):
    """503 while the pool's signing keys cannot be fetched and none is at hand to check the token."""

    description = "Sign-in cannot be checked right now. Try again shortly."

    def __init__(self, retry_after: int = 5):
        super().__init__(retry_after=retry_after)
        self.codes = ["auth_unavailable"]


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
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(InternalServerError, handle_internal_error)
