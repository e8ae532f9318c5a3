"""The browser's OTLP relay: the frontend exports spans here and the backend forwards them.

The browser never holds the Honeycomb key: the relay adds the configured OTLP headers
server-side. A request only checks and queues (bounded); one thread per worker forwards.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import requests
from flask import Flask

from ..config import Config
from .delivery import BoundedSender, RetryLater, retry_after_seconds
from .shutdown import on_shutdown
from .status import IntegrationStatus, announce, register

log = logging.getLogger(__name__)

OTLP_CONTENT_TYPES = ("application/x-protobuf", "application/json")
MAX_BODY_BYTES = 512 * 1024
FORWARD_TIMEOUT = (2.0, 5.0)  # connect, read: a blackholed vendor costs the sender thread 7 s at most


@dataclass(frozen=True)
class Batch:
    """One browser export, forwarded as it came."""

    body: bytes
    content_type: str
    content_encoding: str | None


class TokenBuckets:
    """Per-client rate limit: `rate` exports a second, bursts of `burst`; bounded memory."""

    def __init__(self, rate: float = 5.0, burst: int = 20, max_clients: int = 10_000):
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str) -> float:
        """0 if the client may send now, else the seconds until it may."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[client] = (tokens, now)
                return (1 - tokens) / self.rate
            if len(self._buckets) >= self.max_clients and client not in self._buckets:
                self._buckets.clear()  # a flood of clients: forget everyone rather than grow
            self._buckets[client] = (tokens - 1, now)
            return 0.0


class Relay:
    """Checks nothing about the spans themselves; forwards batches to the OTLP endpoint."""

    def __init__(self, config: Config, status: IntegrationStatus):
        self.url = config.traces_url
        self.headers = dict(config.otlp_headers)
        self.status = status
        self.limits = TokenBuckets()
        self.session = requests.Session() if self.url else None
        self.sender = BoundedSender("browser-relay", self._forward, status, log, max_queue=256) if self.url else None

    @property
    def enabled(self) -> bool:
        """Whether batches go anywhere."""
        return self.sender is not None

    def submit(self, batch: Batch) -> bool:
        """Queue a batch for forwarding; False when dropped."""
        return self.sender.submit(batch) if self.sender else False

    def _forward(self, batch: Batch) -> None:
        headers = {**self.headers, "Content-Type": batch.content_type}
        if batch.content_encoding:
            headers["Content-Encoding"] = batch.content_encoding
        response = self.session.post(self.url, data=batch.body, headers=headers, timeout=FORWARD_TIMEOUT)
        if response.status_code in (429, 503):
            raise RetryLater(retry_after_seconds(response.headers.get("Retry-After")), f"HTTP {response.status_code}")
        response.raise_for_status()


def init_app(app: Flask) -> bool:
    """Set up the relay (it answers 204 and drops when trace export is off)."""
    config: Config = app.extensions["cruddur.config"]
    if config.traces_url:
        reason = "forwards browser spans over OTLP/HTTP"
    else:
        reason = "trace export is off: browser spans are accepted and dropped"
    status = IntegrationStatus("browser_relay", bool(config.traces_url), reason)
    relay = Relay(config, status)
    app.extensions["cruddur.relay"] = relay
    if relay.sender is not None:
        on_shutdown(app, 15, "browser-relay", relay.sender.flush)
    register(app, status)
    return announce(log, status)
