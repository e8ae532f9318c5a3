"""Rollbar: unhandled exceptions and messages as Rollbar items, sent off the request path.

pyrollbar builds and scrubs the payloads and posts them (`rollbar.lib.transport`); this module only
adds the queueing. pyrollbar's default 'thread' handler starts one thread per item with no bound, so
instead the item is built in the request thread (where the request and its span are), put on one
bounded queue per app, and posted by a single sender thread with a short timeout. A full queue
drops and counts; failures are counted and logged at a bounded rate; HTTP 429 pauses the sender
(never a request) for the `Retry-After` seconds.

pyrollbar keeps its settings in module globals. Every app re-runs `rollbar.init` with the same
scrubbing settings, and each reporter stamps its own token, environment, code version and endpoint
on its items, so the apps a test session builds one after another never see each other's settings.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import deque
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote_plus, urljoin, urlsplit

import rollbar
from flask import Flask, got_request_exception, has_request_context, request
from opentelemetry.instrumentation.utils import suppress_instrumentation
from rollbar.lib import transport

from ..config import BACKEND_DIR, Config
from .context import current_ids
from .shutdown import on_shutdown
from .status import IntegrationStatus, RateLimitedWarning, announce, register

log = logging.getLogger(__name__)

NAME = "rollbar"
EXTENSION = "cruddur.rollbar"
QUEUE_SIZE = 1000
SEND_TIMEOUT = 3  # seconds per POST: pyrollbar's own default `timeout`
DEFAULT_RETRY_AFTER = 60.0  # a 429 without Retry-After
MAX_RETRY_AFTER = 3600.0
LEVELS = ("debug", "info", "warning", "error", "critical")

# Keys (header names, query and form parameters, nested fields; case-insensitive) whose values
# never leave the process: pyrollbar's defaults plus cookies, vendor API keys and AWS credentials.
SCRUB_FIELDS = [
    *rollbar.SETTINGS["scrub_fields"],
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-honeycomb-team",
    "x-api-key",
    "x-rollbar-access-token",
    "x-amz-security-token",
    "x-amz-signature",
    "x-amz-credential",
    "x-aws-ec2-metadata-token",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "token",
    "access_token",
    "api_key",
    "apikey",
    "key",
    "password",
    "secret",
]
_SCRUB_KEYS = {name.lower() for name in SCRUB_FIELDS}
REDACTED = "********"


def scrub_query_string(query: str) -> str:
    """The query string as sent, except that the values of token-like parameters are redacted."""
    parts = []
    for part in query.split("&"):
        raw_key, sep, _value = part.partition("=")
        if sep and unquote_plus(raw_key).strip().lower() in _SCRUB_KEYS:
            part = f"{raw_key}={REDACTED}"
        parts.append(part)
    return "&".join(parts)


def honeycomb_trace_url(team: str, environment: str, trace_id: str) -> str:
    """The Honeycomb UI link to one trace."""
    return (
        f"https://ui.honeycomb.io/{quote(team, safe='')}/environments/{quote(environment, safe='')}"
        f"/trace?trace_id={trace_id}"
    )


def _retry_after_seconds(headers) -> float:
    """How long a 429 asks us to wait: Retry-After (seconds or HTTP date), else Rollbar's own header."""
    for name in ("Retry-After", "X-Rate-Limit-Remaining-Seconds"):
        value = (headers.get(name) or "").strip()
        if not value:
            continue
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                continue
        return min(max(seconds, 0.0), MAX_RETRY_AFTER)
    return DEFAULT_RETRY_AFTER


def configure_pyrollbar(config: Config, timeout: float = SEND_TIMEOUT) -> None:
    """(Re)initialise pyrollbar's module-level settings for this app."""
    # pyrollbar ignores a second init() ("already initialized"); tests and app factories make many apps.
    rollbar._initialized = False
    rollbar.init(
        config.rollbar_access_token,
        environment=config.rollbar_environment or config.env,
        scrub_fields=SCRUB_FIELDS,
        endpoint=config.rollbar_endpoint or rollbar.DEFAULT_ENDPOINT,
        timeout=timeout,
        code_version=config.code_version,
        root=str(BACKEND_DIR),
        # pyrollbar never sends by itself here (the reporter does); 'blocking' starts no threads.
        handler="blocking",
        # Local variables can hold anything (tokens, bodies); frames and the request are enough.
        locals={"enabled": False},
        capture_ip="anonymize",
        allow_logging_basic_config=False,
        suppress_reinit_warning=True,
    )


class RollbarReporter:
    """Builds items in the calling thread and delivers them from one sender thread, bounded."""

    def __init__(
        self,
        config: Config,
        status: IntegrationStatus,
        queue_size: int = QUEUE_SIZE,
        timeout: float = SEND_TIMEOUT,
    ):
        self.access_token = config.rollbar_access_token
        self.environment = config.rollbar_environment or config.env
        self.code_version = config.code_version
        self.user_handle = config.user_handle
        self.honeycomb_team = config.honeycomb_team
        self.honeycomb_environment = config.honeycomb_environment
        self.item_url = urljoin(config.rollbar_endpoint or rollbar.DEFAULT_ENDPOINT, "item/")
        self.status = status
        self.queue_size = queue_size
        self.timeout = timeout
        self._warning = RateLimitedWarning(log)
        self._reset_after_fork()

    def _reset_after_fork(self) -> None:
        """Fresh queue and no sender: threads and lock states do not survive a fork."""
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._items: deque[str] = deque()
        self._in_flight = 0
        self._paused_until = 0.0
        self._closed = False
        self._sender: threading.Thread | None = None

    # -- the request side --------------------------------------------------------------------------

    def report_exception(self, exc_info=None) -> bool:
        """Queue an error item for an exception (default: the one being handled); never raises."""
        try:
            cls, exc, tb = exc_info or sys.exc_info()
            if exc is None:
                return False
            data = rollbar._build_base_data(None, level="error")
            chain = rollbar._walk_trace_chain(cls, exc, tb)
            data["body"] = {"trace_chain": chain} if len(chain) > 1 else {"trace": chain[0]}
            return self._enqueue(self._payload(data))
        except Exception as error:
            return self._build_failed(error)

    def report_message(self, text: str, level: str = "info") -> bool:
        """Queue a message item at `level` (debug, info, warning, error, critical); never raises."""
        try:
            data = rollbar._build_base_data(None, level=level if level in LEVELS else "info")
            data["body"] = {"message": {"body": str(text)}}
            return self._enqueue(self._payload(data))
        except Exception as error:
            return self._build_failed(error)

    def on_request_exception(self, sender: Flask, exception: BaseException, **extra) -> None:
        """`got_request_exception` receiver: report the unhandled exception of this request."""
        self.report_exception((type(exception), exception, exception.__traceback__))

    def _build_failed(self, error: Exception) -> bool:
        self.status.record_dropped()
        self.status.record_error(error)
        self._warning.warn("rollbar: could not build an item (%s); dropped", type(error).__name__)
        return False

    def _payload(self, data: dict) -> str:
        """Complete an item with this app's settings, the request and trace ids; scrub; serialise."""
        data["environment"] = self.environment
        data["code_version"] = self.code_version
        # The acting user comes from configuration, never from anything the client sent.
        data["person"] = {"id": self.user_handle, "username": self.user_handle}
        if has_request_context():
            data["request"] = self._request_data()
            if request.url_rule is not None:
                data["context"] = f"{request.method} {request.url_rule.rule}"
        trace_id, span_id, xray_id = current_ids()
        custom = {"trace_id": trace_id, "span_id": span_id, "xray_trace_id": xray_id}
        if trace_id and self.honeycomb_team and self.honeycomb_environment:
            custom["honeycomb_trace_url"] = honeycomb_trace_url(
                self.honeycomb_team, self.honeycomb_environment, trace_id
            )
        data["custom"] = custom
        data["server"] = rollbar._build_server_data()
        payload = rollbar._build_payload(data)  # pyrollbar's transforms: shorten, scrub, serialise
        payload["access_token"] = self.access_token
        return rollbar._serialize_payload(payload)

    def _request_data(self) -> dict:
        """pyrollbar's view of the Flask request, plus route and a scrubbed query string."""
        data = rollbar._build_request_data(request._get_current_object()) or {}
        rollbar._filter_ip(data, rollbar.SETTINGS["capture_ip"])
        data["route"] = request.url_rule.rule if request.url_rule is not None else None
        data["query_string"] = scrub_query_string(request.query_string.decode("latin-1"))
        return data

    def _enqueue(self, payload: str) -> bool:
        """Put a finished item on the queue, or drop and count it when the queue is full."""
        if self._pid != os.getpid():
            self._reset_after_fork()
        with self._cond:
            if self._closed or len(self._items) >= self.queue_size:
                full = not self._closed
            else:
                self._items.append(payload)
                self._ensure_sender()
                self._cond.notify_all()
                return True
        self.status.record_dropped()
        self._warning.warn("rollbar: %s; item dropped", "queue full" if full else "reporter stopped")
        return False

    def _ensure_sender(self) -> None:
        """Start the sender on first use (called with the lock held)."""
        if self._sender is None or not self._sender.is_alive():
            self._sender = threading.Thread(target=self._run, name="cruddur-rollbar-sender", daemon=True)
            self._sender.start()

    # -- the sender side -----------------------------------------------------------------------------

    def queued(self) -> int:
        """Items waiting or being sent (for the health check)."""
        return len(self._items) + self._in_flight

    def _run(self) -> None:
        """Send queued items one at a time, pausing while the API says we are over its rate limit."""
        while True:
            with self._cond:
                while not self._closed:
                    pause = self._paused_until - time.monotonic()
                    if pause > 0:
                        self._cond.wait(pause)
                    elif self._items:
                        break
                    else:
                        self._cond.wait()
                if self._closed:
                    return
                payload = self._items.popleft()
                self._in_flight = 1
            try:
                self._send(payload)
            finally:
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()

    def _send(self, payload: str) -> None:
        """POST one item with pyrollbar's transport; count the outcome. Never raises."""
        headers = {"Content-Type": "application/json", "X-Rollbar-Access-Token": self.access_token}
        try:
            # The vendor call is telemetry, not application work: no spans for it.
            with suppress_instrumentation():
                response = transport.post(self.item_url, data=payload, headers=headers, timeout=self.timeout)
        except Exception as error:
            self._failed(error, f"{type(error).__name__}")
            return
        if response.status_code == 200:
            self.status.record_sent()
            return
        if response.status_code == 429:
            wait = _retry_after_seconds(response.headers)
            with self._cond:
                self._paused_until = max(self._paused_until, time.monotonic() + wait)
            self._failed("HTTP 429", f"HTTP 429, pausing {wait:.0f} s")
            return
        self._failed(f"HTTP {response.status_code}", f"HTTP {response.status_code}")

    def _failed(self, error: BaseException | str, why: str) -> None:
        """A delivery failed: the item is not retried."""
        self.status.record_error(error)
        self.status.record_dropped()
        self._warning.warn("rollbar: sending an item to %s failed (%s); dropped", self.host, why)

    @property
    def host(self) -> str:
        """Where items go (host and port only: an endpoint URL may carry credentials)."""
        parts = urlsplit(self.item_url)
        return f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname or ""

    # -- shutdown ------------------------------------------------------------------------------------

    def flush(self, timeout_s: float) -> None:
        """Deliver what is queued within `timeout_s`, then stop: whatever is left is dropped and counted."""
        if self._pid != os.getpid():
            return
        deadline = time.monotonic() + max(timeout_s, 0.0)
        with self._cond:
            while self._items or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0 or self._paused_until > deadline:
                    break
                self._cond.wait(left)
            left_behind = len(self._items)
            self._items.clear()
            self._closed = True
            self._cond.notify_all()
        if left_behind:
            self.status.record_dropped(left_behind)
            log.warning("rollbar: %d items not delivered before shutdown; dropped", left_behind)


def init_app(app: Flask) -> bool:
    """Report unhandled exceptions and `report_message` calls to Rollbar when a token is set."""
    config: Config = app.extensions["cruddur.config"]
    if not config.rollbar_access_token:
        status = IntegrationStatus(NAME, False, "ROLLBAR_ACCESS_TOKEN is unset")
        register(app, status)
        return announce(log, status)
    status = IntegrationStatus(NAME, True, "ROLLBAR_ACCESS_TOKEN is set")
    configure_pyrollbar(config)
    reporter = RollbarReporter(config, status)
    status.reason += f"; items go to {reporter.host} as environment {reporter.environment}"
    status.set_queue_probe(reporter.queued)
    app.extensions[EXTENSION] = reporter
    # Weak by default: the connection lives as long as the app (and its reporter) does.
    got_request_exception.connect(reporter.on_request_exception, app)
    on_shutdown(app, priority=20, name=NAME, flush=reporter.flush)
    register(app, status)
    return announce(log, status)
