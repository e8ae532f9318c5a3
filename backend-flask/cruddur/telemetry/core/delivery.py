"""A bounded queue with one sender thread: how telemetry leaves the process without blocking a request.

The request thread only appends (dropping and counting when full); one daemon thread per process
delivers, one item at a time, and a vendor's `Retry-After` pauses it, never a request. A failed item
is counted and dropped, not retried: a retry loop turns an outage into a memory leak. Each gunicorn
worker (forked after the queue was made) starts afresh with its own thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from email.utils import parsedate_to_datetime

from .log_limits import RateLimitedWarning
from .status import IntegrationStatus

MAX_RETRY_AFTER_SECONDS = 3600.0


class RetryLater(Exception):
    """Raised by a send function when the vendor asks to wait (HTTP 429/503 with Retry-After)."""

    def __init__(self, seconds: float, reason: str = "HTTP 429"):
        self.seconds = min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)
        self.reason = reason
        super().__init__(f"{reason}: asked to wait {self.seconds:.0f} s")


def retry_after_seconds(value: str | None, default: float = 60.0) -> float:
    """Seconds from a Retry-After header value (delta-seconds or an HTTP date)."""
    value = (value or "").strip()
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return default


class BoundedSender:
    """Delivers items with `send(item)` on one background thread; `submit` never blocks.

    `send` returns normally on success, raises RetryLater to pause, or raises anything else to
    count a failure; its own timeouts bound how long one attempt holds the thread.
    """

    def __init__(
        self,
        name: str,
        send: Callable[[object], None],
        status: IntegrationStatus,
        logger: logging.Logger,
        max_queue: int = 1000,
    ):
        self.name = name
        self._send = send
        self.status = status
        self.max_queue = max_queue
        self._warning = RateLimitedWarning(logger)
        self._reset()
        status.set_queue_probe(self.queued)

    def _reset(self) -> None:
        """Fresh queue and no thread: threads and lock states do not survive a fork."""
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._items: deque = deque()
        self._in_flight = 0
        self._paused_until = 0.0
        self._closed = False
        self._gave_up = False  # flush ran out of time: a late result is no longer counted
        self._thread: threading.Thread | None = None

    def queued(self) -> int:
        """Items waiting or being sent (one given up on at shutdown is no longer counted here)."""
        return len(self._items) + (0 if self._gave_up else self._in_flight)

    def submit(self, item) -> bool:
        """Queue an item; False (counted as dropped) when the queue is full or closed."""
        if self._pid != os.getpid():
            self._reset()
        with self._cond:
            if not self._closed and len(self._items) < self.max_queue:
                self._items.append(item)
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name=f"cruddur-{self.name}-sender", daemon=True)
                    self._thread.start()
                self._cond.notify_all()
                return True
        self.status.record_dropped()
        self._warning.warn("%s: %s; dropped", self.name, "stopped" if self._closed else "queue full")
        return False

    def _run(self) -> None:
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
                item = self._items.popleft()
                self._in_flight = 1
            try:
                self._deliver(item)
            finally:
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()

    def _deliver(self, item) -> None:
        # Imported here, not at the top: with CRUDDUR_TELEMETRY=off this module loads no instrumentation.
        from opentelemetry.instrumentation.utils import suppress_instrumentation

        try:
            with suppress_instrumentation():  # telemetry's own traffic is never an application span
                self._send(item)
        except RetryLater as later:
            with self._cond:
                self._paused_until = max(self._paused_until, time.monotonic() + later.seconds)
            self._failed(later.reason, f"{later}; pausing")
        except Exception as error:
            self._failed(error, f"{type(error).__name__}: {error}")
        else:
            with self._cond:
                self._in_flight = 0  # before counting: the count publishes the queue length
                if not self._gave_up:  # else flush already counted it as dropped
                    self.status.record_sent()

    def _failed(self, error: BaseException | str, why: str) -> None:
        with self._cond:
            self._in_flight = 0
            if self._gave_up:  # counted as dropped when flush gave up on it
                return
            self.status.record_error(error)
            self.status.record_dropped()
        self._warning.warn("%s: delivery failed (%s); dropped", self.name, why)

    def flush(self, timeout: float) -> None:
        """Deliver what is queued within `timeout` seconds, then stop; what is left is counted as dropped."""
        if self._pid != os.getpid():
            return
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            while self._items or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0 or self._paused_until > deadline:
                    break
                self._cond.wait(left)
            # The item being sent, if any, is lost too: the process exits before its answer comes.
            left_behind = len(self._items) + self._in_flight
            self._items.clear()
            self._closed = True
            self._gave_up = True
            self._cond.notify_all()
        if left_behind:
            self.status.record_dropped(left_behind)
            self._warning.warn("%s: %d items not delivered before shutdown; dropped", self.name, left_behind)
