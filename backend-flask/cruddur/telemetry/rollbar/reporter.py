"""Rollbar items, built by pyrollbar and delivered off the request path.

pyrollbar builds each item (`report_exc_info`, `report_message`); a payload handler takes it and returns
False, so a BoundedSender delivers it, bounded and counted (pyrollbar's 'thread' handler starts a thread
per item). pyrollbar's settings are globals from the first `rollbar.init`, so each reporter puts its own
environment, code version, person, trace ids and token on its items, and scrubs them once more.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

import rollbar
from flask import Flask, current_app, g, has_app_context, has_request_context, request
from rollbar.lib import defaultJSONEncode, dict_merge, events, transport
from rollbar.lib.transforms import transform
from rollbar.lib.transforms.scrub_redact import ScrubRedactTransform
from rollbar.lib.transforms.scruburl import ScrubUrlTransform

from ...config import BACKEND_DIR, Config
from ...privacy import SENSITIVE_QUERY_KEYS, redact_query
from ..core.context import current_ids
from ..core.delivery import BoundedSender, RetryLater, retry_after_seconds
from ..core.log_limits import RateLimitedWarning
from ..core.status import IntegrationStatus
from . import EXTENSION, NAME

log = logging.getLogger(__name__.rpartition(".")[0])  # the integration's logger

QUEUE_SIZE = 1000
SEND_TIMEOUT = 3  # seconds per POST: pyrollbar's own default `timeout`
LEVELS = ("debug", "info", "warning", "error", "critical")

# Keys (header names, query and form parameters, nested fields; case-insensitive) whose values
# never leave the process: pyrollbar's defaults, the credential-like query keys every integration
# redacts (privacy.py), cookies and vendor API key headers.
SCRUB_FIELDS = sorted(
    {*rollbar.SETTINGS["scrub_fields"], *SENSITIVE_QUERY_KEYS, "proxy-authorization", "cookie", "set-cookie"}
    | {"x-honeycomb-team", "x-api-key", "x-rollbar-access-token", "x-aws-ec2-metadata-token"}
)
_SCRUB_KEYS = frozenset(name.lower() for name in SCRUB_FIELDS)
_SCRUB = [  # pyrollbar's own scrubbing transforms, with this list
    ScrubRedactTransform(suffixes=[(field,) for field in SCRUB_FIELDS], redact_char="*"),
    ScrubUrlTransform(suffixes=[("url",), ("link",), ("href",)], params_to_scrub=SCRUB_FIELDS),
]


@dataclass
class _Build:
    """One report_* call: whose item pyrollbar is building, and whether it was queued (None: never handed over)."""

    reporter: RollbarReporter
    queued: bool | None = None


_building: ContextVar[_Build | None] = ContextVar("cruddur_rollbar_build", default=None)


def configure_pyrollbar(config: Config, timeout: float = SEND_TIMEOUT) -> None:
    """Initialise pyrollbar and install the payload handler (both are no-ops the second time)."""
    rollbar.init(
        config.rollbar_access_token,
        environment=config.rollbar_environment or config.env,
        scrub_fields=SCRUB_FIELDS,
        endpoint=config.rollbar_endpoint or rollbar.DEFAULT_ENDPOINT,
        timeout=timeout,
        code_version=config.code_version,
        root=str(BACKEND_DIR),
        handler="blocking",  # never used for our items (the payload handler takes them); starts no thread
        locals={"enabled": False},  # local variables can hold anything (tokens, bodies)
        capture_ip="anonymize",
        allow_logging_basic_config=False,
        suppress_reinit_warning=True,
    )
    events.add_payload_handler(_take_payload)  # pyrollbar skips a handler it already has


def _take_payload(payload: dict, **_kw):
    """pyrollbar payload handler: the item goes to its reporter's queue; False stops pyrollbar's own send."""
    build = _building.get()
    if build is not None:
        build.queued = build.reporter.take(payload)
        return False
    # pyrollbar called by application code: the current app's reporter takes it, if there is one.
    reporter = current_app.extensions.get(EXTENSION) if has_app_context() else None
    if reporter is None:
        return payload  # not ours: pyrollbar sends it as configured
    reporter.take(dict_merge(payload, {"data": reporter.item_data()}))  # this app's settings, not the globals
    return False


class RollbarReporter:
    """Has pyrollbar build items in the calling thread and delivers them from one sender thread, bounded."""

    def __init__(self, config: Config, status: IntegrationStatus, timeout: float = SEND_TIMEOUT):
        self.access_token = config.rollbar_access_token
        self.environment = config.rollbar_environment or config.env
        self.code_version = config.code_version
        # While sign-in is off (development, test) every request acts as the configured user.
        self.user_handle = None if config.signin_on or config.env == "production" else config.user_handle
        team, environment = quote(config.honeycomb_team, safe=""), quote(config.honeycomb_environment, safe="")
        # The Honeycomb UI link to a trace, less its id.
        self.honeycomb_url = (
            f"https://ui.honeycomb.io/{team}/environments/{environment}/trace?trace_id=" if team and environment else ""
        )
        self.item_url = urljoin(config.rollbar_endpoint or rollbar.DEFAULT_ENDPOINT, "item/")
        parts = urlsplit(self.item_url)  # host and port only: an endpoint URL may carry credentials
        self.host = f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname or ""
        self.status = status
        self.timeout = timeout
        self._warning = RateLimitedWarning(log)
        self.sender = BoundedSender(NAME, self._send, status, log, max_queue=QUEUE_SIZE)

    def report_exception(self, exc_info=None) -> bool:
        """Queue an error item for an exception (default: the one being handled); never raises."""
        exc_info = exc_info or sys.exc_info()
        return exc_info[1] is not None and self._report(rollbar.report_exc_info, exc_info, "error")

    def report_message(self, text: str, level: str = "info") -> bool:
        """Queue a message item at `level` (debug, info, warning, error, critical); never raises."""
        return self._report(rollbar.report_message, str(text), level if level in LEVELS else "info")

    def on_request_exception(self, sender, exception: BaseException, **extra) -> None:
        """`got_request_exception` receiver: report the request's unhandled exception."""
        self.report_exception((type(exception), exception, exception.__traceback__))

    def on_user_identified(self, _app: Flask, handle: str, cognito_user_id: str | None, **_identity) -> None:
        """`user_identified` receiver: this request's items name its user (`person.id`: the Cognito `sub`)."""
        g.cruddur_rollbar_person = {"id": cognito_user_id or handle, "username": handle}

    def _report(self, report, subject, level: str) -> bool:
        """Have pyrollbar build the item (the payload handler queues it); whether it was queued."""
        build = _Build(self)
        token = _building.set(build)
        try:
            # pyrollbar reads the request behind Flask's proxy itself, and none outside a request.
            report(subject, request=request, payload_data=self.item_data(), level=level)
        except Exception as error:
            return self._build_failed(error)
        finally:
            _building.reset(token)
        if build.queued is None:  # pyrollbar gave up building it (and logged why)
            return self._build_failed("item not built")
        return build.queued

    def _build_failed(self, error: Exception | str) -> bool:
        self.status.record_dropped()
        self.status.record_error(error)
        why = error if isinstance(error, str) else type(error).__name__
        self._warning.warn("rollbar: could not build an item (%s); dropped", why)
        return False

    def item_data(self) -> dict:
        """This app's part of an item: settings, the acting user, route, trace ids (merged by pyrollbar)."""
        data = {"environment": self.environment, "code_version": self.code_version}
        # The acting user comes from a verified token or from configuration, never from anything
        # else the client sent.
        person = g.get("cruddur_rollbar_person") if has_app_context() else None
        if person is None and self.user_handle:
            person = {"id": self.user_handle, "username": self.user_handle}
        if person is not None:
            data["person"] = person
        if has_request_context():
            rule = request.url_rule.rule if request.url_rule is not None else None
            data["request"] = {
                "route": rule,
                # The WSGI layer already redacted the usual credential keys; this list is longer.
                "query_string": redact_query(request.query_string.decode("latin-1"), _SCRUB_KEYS),
            }
            if rule is not None:
                data["context"] = f"{request.method} {rule}"
        trace_id, span_id, xray_id = current_ids()
        data["custom"] = {"trace_id": trace_id, "span_id": span_id, "xray_trace_id": xray_id}
        if trace_id and self.honeycomb_url:
            data["custom"]["honeycomb_trace_url"] = self.honeycomb_url + trace_id
        return data

    def take(self, payload: dict) -> bool:
        """Finish an item pyrollbar built (scrubbed again, our token), serialise it and queue it."""
        payload = transform(payload, _SCRUB)
        payload["access_token"] = self.access_token  # after scrubbing: its key is a scrubbed field
        return self.sender.submit(json.dumps(payload, default=defaultJSONEncode))

    def _send(self, payload: str) -> None:
        """POST one item with pyrollbar's transport (on the sender thread)."""
        headers = {"Content-Type": "application/json", "X-Rollbar-Access-Token": self.access_token}
        response = transport.post(self.item_url, data=payload, headers=headers, timeout=self.timeout)
        if response.status_code == 429:
            wait = response.headers.get("Retry-After") or response.headers.get("X-Rate-Limit-Remaining-Seconds")
            raise RetryLater(retry_after_seconds(wait))
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code} from {self.host}")

    def flush(self, timeout_s: float) -> None:
        """Deliver what is queued within `timeout_s`, then stop (see BoundedSender.flush)."""
        self.sender.flush(timeout_s)
