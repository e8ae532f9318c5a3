"""Structured logging: one JSON object per line, with the request's trace ids."""

from __future__ import annotations

import json
import logging
import sys
import time

from flask import Flask, g, request

from .telemetry.ratelimit import RateLimitFilter

ACCESS_LOGGER = "cruddur.access"
# Libraries that log a line (often with a traceback) per failed export or poll: at most one line
# per kind per minute reaches the handlers, so a vendor outage cannot flood the logs.
NOISY_LOGGER_PREFIXES = ("opentelemetry", "aws_xray_sdk", "watchtower", "botocore", "urllib3", "rollbar", "psycopg")
# Their messages can quote what a caller sent (the OpenTelemetry SDK logs a malformed `tracestate`
# member whole): no more than this reaches a sink.
MAX_LIBRARY_MESSAGE_CHARS = 300

# Attributes every LogRecord has; anything else passed with `extra=` goes into the JSON line.
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: level, message, logger, trace ids and extras."""

    converter = time.gmtime  # the "Z" in the timestamp means UTC, whatever the machine's zone

    def format(self, record: logging.LogRecord) -> str:
        """Render the record (once: stdout and CloudWatch get the same line)."""
        cached = record.__dict__.get("_cruddur_json")
        if cached is not None:
            return cached
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        record._cruddur_json = text = json.dumps(line, default=str, ensure_ascii=False)
        return text


class TraceContextFilter(logging.Filter):
    """Adds trace_id, span_id and xray_trace_id of the current span to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate the record; never drop it."""
        if not hasattr(record, "trace_id"):
            from .telemetry.context import current_ids

            record.trace_id, record.span_id, record.xray_trace_id = current_ids()
        return True


class LibraryRecordFilter(logging.Filter):
    """Library records: rate-limited (RateLimitFilter) and their message bounded; others pass.

    The verdict is kept on the record, so every handler (stdout, CloudWatch) lets the same lines through.
    """

    def __init__(self):
        super().__init__()
        self._rate_limit = RateLimitFilter(NOISY_LOGGER_PREFIXES)

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep or drop the record, the same way for every handler."""
        verdict = record.__dict__.get("_cruddur_verdict")
        if verdict is None:
            verdict = self._rate_limit.filter(record)
            if verdict and record.name.startswith(NOISY_LOGGER_PREFIXES):
                message = record.getMessage()
                if len(message) > MAX_LIBRARY_MESSAGE_CHARS:
                    record.msg = f"{message[:MAX_LIBRARY_MESSAGE_CHARS]}... [{len(message)} characters]"
                    record.args = None
            record._cruddur_verdict = verdict
        return verdict


class StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is at the time (test runners and servers swap it)."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        """The current sys.stdout."""
        return sys.stdout

    @stream.setter
    def stream(self, _value):
        pass


def _equip(handler: logging.Handler, library_filter: LibraryRecordFilter) -> logging.Handler:
    handler.setFormatter(JsonFormatter())
    handler.addFilter(TraceContextFilter())
    handler.addFilter(library_filter)
    return handler


def configure(level: int = logging.INFO) -> logging.Handler:
    """Send the root logger to stdout as JSON lines (once per process)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, "_cruddur", False):
            return handler
    handler = StdoutHandler()
    handler._cruddur = True
    handler._cruddur_library_filter = LibraryRecordFilter()
    root.addHandler(_equip(handler, handler._cruddur_library_filter))
    root.setLevel(level)
    return handler


def prepare(handler: logging.Handler) -> logging.Handler:
    """Give another handler what the stdout one has: the JSON line, trace ids and the rate limit.

    The library filter is the stdout handler's own: a record is judged once, so every destination
    gets the same lines, with the same tracebacks stripped.
    """
    return _equip(handler, configure()._cruddur_library_filter)


def _start_timer() -> None:
    g.cruddur_started = time.perf_counter()


def _remember_user(_app, handle: str, **_identity) -> None:
    """`user_identified` receiver: the access log line names the request's user."""
    g.cruddur_log_user = handle


def _access_log(response):
    started = g.get("cruddur_started")
    duration_ms = round((time.perf_counter() - started) * 1000, 3) if started else None
    status = response.status_code
    level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
    logging.getLogger(ACCESS_LOGGER).log(
        level,
        "%s %s %s",
        request.method,
        request.full_path if request.query_string else request.path,
        status,
        extra={
            "method": request.method,
            "path": request.full_path if request.query_string else request.path,
            "status": status,
            "duration_ms": duration_ms,
            "remote_addr": request.remote_addr,
            "user_agent": request.user_agent.string,
            "user": g.get("cruddur_log_user"),
        },
    )
    return response


def init_app(app: Flask) -> None:
    """Log every request once, at a level that follows its status."""
    from .auth import user_identified

    configure()
    user_identified.connect(_remember_user, app)
    app.before_request(_start_timer)
    app.after_request(_access_log)
