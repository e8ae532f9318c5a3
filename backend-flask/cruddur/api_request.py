"""How the app reads a request: its body and its JSON, each failure an HTTP error with a code.

errors.py turns those errors into the JSON error responses.
"""

from __future__ import annotations

from flask import Flask, Request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge, UnsupportedMediaType

try:  # what gunicorn raises while reading a broken chunked body (bad size, missing terminator)
    from gunicorn.http.errors import ParseException as _ServerBodyError
except ImportError:  # pragma: no cover - another WSGI server
    _ServerBodyError = OSError


class ApiJSONProvider(DefaultJSONProvider):
    """Flask's JSON, where a document nested too deeply to parse is malformed input, not a crash."""

    sort_keys = False  # fields in the order openapi.yaml documents
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


def init_app(app: Flask) -> None:
    """Use these request and JSON classes."""
    app.request_class = ApiRequest
    app.json_provider_class = ApiJSONProvider
    app.json = ApiJSONProvider(app)
