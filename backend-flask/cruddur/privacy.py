"""Secrets never travel further than the edge: credential-like query parameters are redacted.

Cruddur takes no credentials in URLs, yet clients and scanners send them (`?token=`, pre-signed
AWS URLs). Tracing, X-Ray, logs and Rollbar all read the URL from the WSGI environ, so redacting
it once, before any of them runs, keeps the secret out of every span, segment, log line and item.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

SENSITIVE_QUERY_KEYS = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "api_key",
        "apikey",
        "key",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "auth",
        "authorization",
        "session",
        "sessionid",
        "signature",
        "sig",
        "awsaccesskeyid",
        "x-amz-signature",
        "x-amz-security-token",
        "x-amz-credential",
        "x-goog-signature",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
    }
)
REDACTED = "REDACTED"


def is_sensitive(key: str) -> bool:
    """Whether a query parameter (or header) name looks like it carries a credential."""
    return key.strip().lower() in SENSITIVE_QUERY_KEYS


def redact_query(query: str, keys: frozenset[str] | set[str] = SENSITIVE_QUERY_KEYS) -> str:
    """The query string with the values of parameters named in `keys` (lower case) replaced."""
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(k.strip().lower() in keys for k, _ in pairs):
        return query
    return urlencode([(k, REDACTED if k.strip().lower() in keys else v) for k, v in pairs])


class RedactQueryMiddleware:
    """WSGI middleware, outermost: rewrites QUERY_STRING (and the raw URI) before anything reads it."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        """Redact, then call the app."""
        query = environ.get("QUERY_STRING", "")
        if query:
            redacted = redact_query(query)
            if redacted != query:
                environ["QUERY_STRING"] = redacted
                for key in ("RAW_URI", "REQUEST_URI"):
                    if key in environ:
                        path, _, _ = environ[key].partition("?")
                        environ[key] = f"{path}?{redacted}"
        return self.wsgi_app(environ, start_response)
