"""The browser's OTLP relay: the frontend exports spans here and the backend forwards them.

The browser never holds the Honeycomb key: the relay adds the configured OTLP headers
server-side. A request is decoded and checked (browser_spans), then only queued (bounded); one
thread per worker forwards the re-encoded protobuf request, never the bytes the client sent.
"""

from __future__ import annotations

import logging

import requests
from flask import Flask

from ...config import Config
from ...rate_limit import ClientBuckets
from ..core.delivery import BoundedSender, RetryLater, retry_after_seconds
from ..core.shutdown import on_shutdown
from ..core.status import IntegrationStatus, announce, register
from .spans import decode_export, span_count

log = logging.getLogger(__name__)
NAME = "browser_relay"

OTLP_CONTENT_TYPES = ("application/x-protobuf", "application/json")
MAX_BODY_BYTES = 512 * 1024
FORWARD_TIMEOUT = (2.0, 5.0)  # connect, read: a blackholed vendor costs the sender thread 7 s at most


class Relay:
    """Accepts the frontend's exports (checked by browser_spans) and forwards them to the OTLP endpoint."""

    def __init__(self, config: Config, status: IntegrationStatus):
        self.url = config.traces_url
        self.headers = dict(config.otlp_headers)
        self.status = status
        self.limits = ClientBuckets()
        self.session = requests.Session() if self.url else None
        self.sender = BoundedSender("browser-relay", self._forward, status, log, max_queue=256) if self.url else None

    @property
    def enabled(self) -> bool:
        """Whether batches go anywhere."""
        return self.sender is not None

    def accept(self, body: bytes, content_type: str) -> bool:
        """Decode and check an export (RejectedExport if it is not the frontend's), then queue it.

        False when it is not queued: trace export is off, the queue is full, or it holds no span.
        Exports are checked even when export is off, so a client sees the same answer either way.
        """
        request = decode_export(body, content_type)
        if self.sender is None or not span_count(request):
            return False
        return self.sender.submit(request.SerializeToString())

    def _forward(self, body: bytes) -> None:
        """POST one checked export, encoded again as protobuf, to the OTLP endpoint."""
        headers = {**self.headers, "Content-Type": "application/x-protobuf"}
        response = self.session.post(self.url, data=body, headers=headers, timeout=FORWARD_TIMEOUT)
        if response.status_code in (429, 503):
            raise RetryLater(retry_after_seconds(response.headers.get("Retry-After")), f"HTTP {response.status_code}")
        response.raise_for_status()


def init_app(app: Flask) -> bool:
    """Set up the relay and its route (it answers 204 and drops when trace export is off)."""
    from .routes import bp

    config: Config = app.extensions["cruddur.config"]
    app.register_blueprint(bp)
    if config.traces_url:
        reason = "forwards browser spans over OTLP/HTTP"
    else:
        reason = "trace export is off: browser spans are accepted and dropped"
    status = IntegrationStatus(NAME, bool(config.traces_url), reason)
    relay = Relay(config, status)
    app.extensions["cruddur.relay"] = relay
    if relay.sender is not None:
        on_shutdown(app, 15, "browser-relay", relay.sender.flush)
    register(app, status)
    return announce(log, status)
