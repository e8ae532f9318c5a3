"""Rollbar: unhandled exceptions and messages as Rollbar items, sent off the request path.

pyrollbar builds and scrubs the payloads and posts them (`rollbar.lib.transport`); this module only
adds the queueing. pyrollbar's default 'thread' handler starts one thread per item with no bound, so
instead the item is built in the request thread (where the request and its span are) and handed to
a BoundedSender (telemetry/delivery.py): one bounded queue and one sender thread per app, a short
timeout per POST, drops and failures counted, HTTP 429 pausing the sender for `Retry-After`.

pyrollbar keeps its settings in module globals. Every app re-runs `rollbar.init` with the same
scrubbing settings, and each reporter stamps its own token, environment, code version and endpoint
on its items, so the apps a test session builds one after another never see each other's settings.
"""

from __future__ import annotations

import logging
import sys
from urllib.parse import quote, urljoin, urlsplit

import rollbar
from flask import Flask, got_request_exception, has_request_context, request
from rollbar.lib import transport

from ..config import BACKEND_DIR, Config
from ..privacy import SENSITIVE_QUERY_KEYS, redact_query
from .context import current_ids
from .delivery import BoundedSender, RetryLater, retry_after_seconds
from .shutdown import on_shutdown
from .status import IntegrationStatus, RateLimitedWarning, announce, register

log = logging.getLogger(__name__)

NAME = "rollbar"
EXTENSION = "cruddur.rollbar"
QUEUE_SIZE = 1000
SEND_TIMEOUT = 3  # seconds per POST: pyrollbar's own default `timeout`
LEVELS = ("debug", "info", "warning", "error", "critical")

# Keys (header names, query and form parameters, nested fields; case-insensitive) whose values
# never leave the process: pyrollbar's defaults, the credential-like query keys every integration
# redacts (privacy.py), cookies and vendor API key headers.
SCRUB_FIELDS = sorted(
    {
        *rollbar.SETTINGS["scrub_fields"],
        *SENSITIVE_QUERY_KEYS,
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-honeycomb-team",
        "x-api-key",
        "x-rollbar-access-token",
        "x-aws-ec2-metadata-token",
    }
)
_SCRUB_KEYS = frozenset(name.lower() for name in SCRUB_FIELDS)


def honeycomb_trace_url(team: str, environment: str, trace_id: str) -> str:
    """The Honeycomb UI link to one trace."""
    return (
        f"https://ui.honeycomb.io/{quote(team, safe='')}/environments/{quote(environment, safe='')}"
        f"/trace?trace_id={trace_id}"
    )


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
        self.timeout = timeout
        self._warning = RateLimitedWarning(log)
        self.sender = BoundedSender(NAME, self._send, status, log, max_queue=queue_size)

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
        # The WSGI layer already redacted the usual credential keys; pyrollbar's own list is longer.
        data["query_string"] = redact_query(request.query_string.decode("latin-1"), _SCRUB_KEYS)
        return data

    def _enqueue(self, payload: str) -> bool:
        """Hand a finished item to the sender (dropped and counted when its queue is full)."""
        return self.sender.submit(payload)

    def _send(self, payload: str) -> None:
        """POST one item with pyrollbar's transport (on the sender thread)."""
        headers = {"Content-Type": "application/json", "X-Rollbar-Access-Token": self.access_token}
        response = transport.post(self.item_url, data=payload, headers=headers, timeout=self.timeout)
        if response.status_code == 429:
            headers = response.headers
            raise RetryLater(
                retry_after_seconds(headers.get("Retry-After") or headers.get("X-Rate-Limit-Remaining-Seconds"))
            )
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code} from {self.host}")

    @property
    def host(self) -> str:
        """Where items go (host and port only: an endpoint URL may carry credentials)."""
        parts = urlsplit(self.item_url)
        return f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname or ""

    def flush(self, timeout_s: float) -> None:
        """Deliver what is queued within `timeout_s`, then stop (see BoundedSender.flush)."""
        self.sender.flush(timeout_s)


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
    app.extensions[EXTENSION] = reporter
    # Weak by default: the connection lives as long as the app (and its reporter) does.
    got_request_exception.connect(reporter.on_request_exception, app)
    on_shutdown(app, priority=20, name=NAME, flush=reporter.flush)
    register(app, status)
    return announce(log, status)
