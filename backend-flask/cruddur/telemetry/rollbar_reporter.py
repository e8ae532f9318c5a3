"""Rollbar items, built by pyrollbar and sent off the request path.

Imported by telemetry/rollbar.py only when ROLLBAR_ACCESS_TOKEN is set. pyrollbar builds, scrubs
and posts the items through its public API: `rollbar.report_exc_info` and
`rollbar.report_message` build an item from the exception or message and the Flask request, and a
payload handler (`rollbar.lib.events.add_payload_handler`) takes the finished item instead of
letting pyrollbar send it. pyrollbar's 'thread' handler would start one thread per item with no
bound, so the item goes to a BoundedSender (telemetry/delivery.py): one bounded queue and one
sender thread per app, a short timeout per POST (`rollbar.lib.transport.post`), drops and failures
counted, HTTP 429 pausing the sender for `Retry-After`.

pyrollbar keeps its settings in module globals and takes its token, environment and scrubbing from
the first `rollbar.init` of the process only. So each reporter puts its own environment, code
version and person into the item (`payload_data`), its own token on the finished payload, and
scrubs it once more with this module's field list; the apps a test session builds one after
another never see each other's settings, and nothing resets pyrollbar's state.

`PYROLLBAR_API` lists every pyrollbar name this module uses; tests/test_rollbar.py checks each.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from urllib.parse import quote, urljoin, urlsplit

import rollbar
from flask import Flask, current_app, g, has_app_context, has_request_context, request
from rollbar.lib import defaultJSONEncode, events, transport
from rollbar.lib.transforms import transform
from rollbar.lib.transforms.scrub_redact import ScrubRedactTransform
from rollbar.lib.transforms.scruburl import ScrubUrlTransform

from ..config import BACKEND_DIR, Config
from ..privacy import SENSITIVE_QUERY_KEYS, redact_query
from .context import current_ids
from .delivery import BoundedSender, RetryLater, retry_after_seconds
from .ratelimit import RateLimitedWarning
from .rollbar import EXTENSION, NAME
from .status import IntegrationStatus

log = logging.getLogger("cruddur.telemetry.rollbar")  # the integration's logger

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
# pyrollbar's own scrubbing (built by the process's first rollbar.init) once more with our list.
_SCRUB = [
    ScrubRedactTransform(suffixes=[(field,) for field in SCRUB_FIELDS], redact_char="*"),
    ScrubUrlTransform(suffixes=[("url",), ("link",), ("href",)], params_to_scrub=SCRUB_FIELDS),
]

# Every pyrollbar name this module relies on, and why; all are public (documented, or in their
# module's __all__). tests/test_rollbar.py fails when one of them disappears or changes shape.
PYROLLBAR_API = {
    "rollbar.init": "settings: scrub fields, locals off, IP anonymised, no logging.basicConfig",
    "rollbar.report_exc_info": "builds an error item: trace chain, request, server data",
    "rollbar.report_message": "builds a message item (message, level, request, payload_data)",
    "rollbar.SETTINGS": "pyrollbar's default scrub_fields, extended here",
    "rollbar.DEFAULT_ENDPOINT": "where items go when ROLLBAR_ENDPOINT is unset",
    "rollbar.lib.events.add_payload_handler": "takes the finished item; returning False stops pyrollbar's own send",
    "rollbar.lib.transport.post": "the POST, on pyrollbar's pooled requests session",
    "rollbar.lib.defaultJSONEncode": "serialises what pyrollbar's transforms left (as pyrollbar does)",
    "rollbar.lib.transforms.transform": "applies the scrub transforms below to a payload",
    "rollbar.lib.transforms.scrub_redact.ScrubRedactTransform": "masks values of scrubbed keys with *",
    "rollbar.lib.transforms.scruburl.ScrubUrlTransform": "masks scrubbed parameters in URLs",
}

# The reporter whose report_* call is running in this context: the payload handler hands it the item.
_reporting: contextvars.ContextVar[list | None] = contextvars.ContextVar("cruddur_rollbar_report", default=None)


def honeycomb_trace_url(team: str, environment: str, trace_id: str) -> str:
    """The Honeycomb UI link to one trace."""
    return (
        f"https://ui.honeycomb.io/{quote(team, safe='')}/environments/{quote(environment, safe='')}"
        f"/trace?trace_id={trace_id}"
    )


def configure_pyrollbar(config: Config, timeout: float = SEND_TIMEOUT) -> None:
    """Give pyrollbar this app's settings and make sure the payload handler is installed.

    The first call of the process also sets pyrollbar's token and environment; later calls update
    its other settings (pyrollbar merges them) and leave those, which each item carries anyway.
    """
    rollbar.init(
        config.rollbar_access_token,
        environment=config.rollbar_environment or config.env,
        scrub_fields=SCRUB_FIELDS,
        endpoint=config.rollbar_endpoint or rollbar.DEFAULT_ENDPOINT,
        timeout=timeout,
        code_version=config.code_version,
        root=str(BACKEND_DIR),
        # The payload handler takes every item this module builds; 'blocking' starts no threads.
        handler="blocking",
        # Local variables can hold anything (tokens, bodies); frames and the request are enough.
        locals={"enabled": False},
        capture_ip="anonymize",
        allow_logging_basic_config=False,
        suppress_reinit_warning=True,
    )
    events.add_payload_handler(_take_payload)  # once: pyrollbar skips a handler it already has


def _take_payload(payload: dict, **_kw):
    """pyrollbar payload handler: queue the finished item on its reporter instead of pyrollbar sending it."""
    report = _reporting.get()
    if report is not None:
        report.append(report[0].take(payload))
        return False
    # pyrollbar called directly by application code: the current app's reporter, if it has one.
    reporter = current_app.extensions.get(EXTENSION) if has_app_context() else None
    if reporter is None:
        return payload  # not ours: pyrollbar sends it as configured
    reporter.take(payload)
    return False


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
        # While sign-in is off (development, test) every request acts as the configured user.
        self.user_handle = None if config.signin_on or config.env == "production" else config.user_handle
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
        exc_info = exc_info or sys.exc_info()
        if exc_info[1] is None:
            return False
        return self._report(rollbar.report_exc_info, exc_info, level="error")

    def report_message(self, text: str, level: str = "info") -> bool:
        """Queue a message item at `level` (debug, info, warning, error, critical); never raises."""
        return self._report(rollbar.report_message, str(text), level=level if level in LEVELS else "info")

    def on_request_exception(self, sender: Flask, exception: BaseException, **extra) -> None:
        """`got_request_exception` receiver: report the unhandled exception of this request."""
        self.report_exception((type(exception), exception, exception.__traceback__))

    def on_user_identified(self, _app: Flask, handle: str, cognito_user_id: str | None, **_identity) -> None:
        """`user_identified` receiver: this request's items name its user (`person.id`: the Cognito `sub`)."""
        g.cruddur_rollbar_person = {"id": cognito_user_id or handle, "username": handle}

    def _report(self, build, subject, level: str) -> bool:
        """Have pyrollbar build the item; the payload handler queues it. Returns whether it was queued."""
        report = [self]
        token = _reporting.set(report)
        try:
            events.add_payload_handler(_take_payload)  # back in place if pyrollbar was re-initialised
            current = request._get_current_object() if has_request_context() else None
            build(subject, request=current, payload_data=self._item_data(), level=level)
        except Exception as error:
            return self._build_failed(error)
        finally:
            _reporting.reset(token)
        if len(report) == 1:  # pyrollbar gave up building it (and logged why)
            return self._build_failed("item not built")
        return report[1]

    def _build_failed(self, error: Exception | str) -> bool:
        self.status.record_dropped()
        self.status.record_error(error)
        self._warning.warn(
            "rollbar: could not build an item (%s); dropped", error if isinstance(error, str) else type(error).__name__
        )
        return False

    def _item_data(self) -> dict:
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
        custom = {"trace_id": trace_id, "span_id": span_id, "xray_trace_id": xray_id}
        if trace_id and self.honeycomb_team and self.honeycomb_environment:
            custom["honeycomb_trace_url"] = honeycomb_trace_url(
                self.honeycomb_team, self.honeycomb_environment, trace_id
            )
        data["custom"] = custom
        return data

    def take(self, payload: dict) -> bool:
        """Finish an item pyrollbar built (our scrubbing, our token), serialise it and queue it."""
        payload = transform(payload, _SCRUB)
        payload["access_token"] = self.access_token  # after scrubbing: its key is a scrubbed field
        return self._enqueue(json.dumps(payload, default=defaultJSONEncode))

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
