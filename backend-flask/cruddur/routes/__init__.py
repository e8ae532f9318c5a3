"""Routes: parse the request, call a service, shape the response."""

from __future__ import annotations

from flask import current_app, request

from .. import auth
from ..config import Config
from ..errors import BadBody


def config() -> Config:
    """The running app's configuration."""
    return current_app.extensions["cruddur.config"]


def acting_handle() -> str:
    """Who acts: the signed-in user (or the configured one while sign-in is off), never a field of
    the request; 401 or 503 when there is none."""
    return auth.acting_user().handle


def json_body() -> dict:
    """The request's JSON object (415 for another content type, 400 when malformed)."""
    body = request.get_json()
    if not isinstance(body, dict):
        raise BadBody("The body must be a JSON object.")
    return body
