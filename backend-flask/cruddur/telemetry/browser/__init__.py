"""The browser's OTLP relay: the frontend exports spans here and the backend forwards them with the key.

Each client is limited in requests and bytes (limits.py); an export is decoded and checked (spans.py),
queued (bounded), and forwarded by one thread per worker, encoded again: never the client's bytes.
"""

from __future__ import annotations

import logging

import requests
from flask import Flask

from ...config import Config
from ..core.delivery import BoundedSender, RetryLater, retry_after_seconds
from ..core.shutdown import on_shutdown
from ..core.status import IntegrationStatus, announce, track
from .limits import ClientBuckets
from .spans import decode_export, span_count

log = logging.getLogger(__name__)
NAME = "browser_relay"
EXTENSION = "cruddur.relay"

OTLP_CONTENT_TYPES = ("application/x-protobuf", "application/json")
MAX_BODY_BYTES = 512 * 1024
FORWARD_TIMEOUT = (2.0, 5.0)  # connect, read: a blackholed vendor costs the sender thread 7 s at most
# Per client: 5 exports a second in bursts of 20, and 256 KiB a second in bursts of 2 MiB (four of the
# largest bodies): a client sending the largest gets one through every 2 s; small ones never meet it.
REQUESTS_PER_SECOND, REQUEST_BURST = 5, 20
BYTES_PER_SECOND, BYTE_BURST = MAX_BODY_BYTES // 2, 4 * MAX_BODY_BYTES


class Relay:
    """Accepts the frontend's exports (checked by spans.py) and forwards them to the OTLP endpoint."""

    def __init__(self, config: Config, status: IntegrationStatus):
        self.url = config.traces_url
        self.headers = {**config.otlp_headers, "Content-Type": "application/x-protobuf"}
        self.requests = ClientBuckets(REQUESTS_PER_SECOND, REQUEST_BURST)
        self.bytes = ClientBuckets(BYTES_PER_SECOND, BYTE_BURST)
        self.session = requests.Session() if self.url else None
        self.sender = BoundedSender("browser-relay", self._forward, status, log, max_queue=256) if self.url else None

    def accept(self, body: bytes, content_type: str) -> bool:
        """Check an export (RejectedExport if not the frontend's; even with export off) and queue it if it has spans."""
        request = decode_export(body, content_type)
        if self.sender is None or not span_count(request):
            return False
        return self.sender.submit(request.SerializeToString())

    def _forward(self, body: bytes) -> None:
        """POST one checked export to the OTLP endpoint (on the sender thread)."""
        response = self.session.post(self.url, data=body, headers=self.headers, timeout=FORWARD_TIMEOUT)
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
    status = track(app, NAME, bool(config.traces_url), reason)
    relay = app.extensions[EXTENSION] = Relay(config, status)
    if relay.sender is not None:
        on_shutdown(app, 15, "browser-relay", relay.sender.flush)
    return announce(log, status)
