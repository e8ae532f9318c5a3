"""A bounded queue with one sender thread: how telemetry leaves the process without blocking a request.

The request thread only appends to a bounded queue (dropping and counting when it is full). One
daemon thread per process delivers, one item at a time, with the caller's timeout per attempt; a
vendor's `Retry-After` pauses the sender (never a request). A failed item is counted and dropped,
not retried: a retry loop is how an outage turns into a memory leak. The thread starts on first
use, and a process forked after the queue was made starts afresh, so each gunicorn worker has its
own. Used by the Rollbar reporter and the browser span relay (one item per send), and by CloudWatch
Logs over OTLP (batches: up to `max_batch` items, sent when the batch is full or its oldest item has
waited `linger` seconds, so the sender wakes once per batch rather than once per item).
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


def _uninstrumented():
    """OpenTelemetry's suppress_instrumentation(), imported when a sender runs: importing this module
    (CRUDDUR_TELEMETRY=off imports it) loads no instrumentation package."""
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    return suppress_instrumentation()


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
    count a failure; its own timeouts bound how long one attempt holds the thread. With
    `max_batch` > 1 it is called as `send(items)` with a list, and may return how many of them the
    vendor rejected (counted as dropped).
    """

    def __init__(
        self,
        name: str,
        send: Callable[[object], None],
        status: IntegrationStatus,
        logger: logging.Logger,
        max_queue: int = 1000,
        max_batch: int = 1,
        linger: float = 0.0,
        on_start: Callable[[], None] | None = None,
    ):
        self.name = name
        self._send = send
        self.status = status
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.linger = linger
        self._on_start = on_start  # runs first on each new sender thread (e.g. building a client)
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
        self._hurry = False  # flushing: send what is queued without waiting for a full batch
        self._oldest_at = 0.0  # when the oldest queued item arrived
        self._gave_up = False  # flush ran out of time: a late result is no longer counted
        self._thread: threading.Thread | None = None
        self._thread_ident: int | None = None

    def queued(self) -> int:
        """Items waiting or being sent (one given up on at shutdown is no longer counted here)."""
        return len(self._items) + (0 if self._gave_up else self._in_flight)

    def submit(self, item) -> bool:
        """Queue an item; False (counted as dropped) when the queue is full or closed."""
        if self._pid != os.getpid():
            self._reset()
        with self._cond:
            accepted = not self._closed and len(self._items) < self.max_queue
            if accepted:
                if not self._items:
                    self._oldest_at = time.monotonic()
                self._items.append(item)
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name=f"cruddur-{self.name}-sender", daemon=True)
                    self._thread.start()
                if len(self._items) == 1 or len(self._items) >= self.max_batch:
                    self._cond.notify_all()  # the first item starts the linger; a full batch goes now
                return True
        self.status.record_dropped()
        self._warning.warn("%s: %s; dropped", self.name, "stopped" if self._closed else "queue full")
        return False

    def on_sender_thread(self) -> bool:
        """Whether the caller is this sender's thread (what it logs must not be queued again)."""
        return threading.get_ident() == self._thread_ident

    def _run(self) -> None:
        self._thread_ident = threading.get_ident()
        if self._on_start is not None:
            try:
                with _uninstrumented():
                    self._on_start()
            except Exception as error:  # the first delivery tries again
                self._warning.warn("%s: not ready yet (%s)", self.name, type(error).__name__)
        while True:
            with self._cond:
                while not self._closed:
                    now = time.monotonic()
                    pause = self._paused_until - now
                    wait_for_more = self._oldest_at + self.linger - now
                    if pause > 0:
                        self._cond.wait(pause)
                    elif self._items and (len(self._items) >= self.max_batch or wait_for_more <= 0 or self._hurry):
                        break
                    elif self._items:
                        self._cond.wait(wait_for_more)
                    else:
                        self._cond.wait()
                if self._closed:
                    return
                batch = [self._items.popleft() for _ in range(min(self.max_batch, len(self._items)))]
                self._in_flight = len(batch)
            try:
                self._deliver(batch)
            finally:
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()

    def _deliver(self, batch: list) -> None:
        try:
            with _uninstrumented():  # telemetry's own traffic is never an application span
                rejected = self._send(batch) if self.max_batch > 1 else self._send(batch[0])
        except RetryLater as later:
            with self._cond:
                self._paused_until = max(self._paused_until, time.monotonic() + later.seconds)
            self._failed(later.reason, f"{later}; pausing", len(batch))
        except Exception as error:
            self._failed(error, f"{type(error).__name__}: {error}", len(batch))
        else:
            rejected = min(rejected, len(batch)) if self.max_batch > 1 and isinstance(rejected, int) else 0
            with self._cond:
                self._in_flight = 0  # before counting: the count publishes the queue length
                if self._gave_up:  # flush already counted it as dropped
                    return
                self.status.record_sent(len(batch) - rejected)
                if rejected:
                    self.status.record_dropped(rejected)
            if rejected:
                self._warning.warn("%s: the vendor rejected %d of %d items", self.name, rejected, len(batch))

    def _failed(self, error: BaseException | str, why: str, count: int = 1) -> None:
        with self._cond:
            self._in_flight = 0
            if self._gave_up:  # counted as dropped when flush gave up on it
                return
            self.status.record_error(error)
            self.status.record_dropped(count)
        self._warning.warn("%s: delivery failed (%s); %d dropped", self.name, why, count)

    def flush(self, timeout: float) -> None:
        """Deliver what is queued within `timeout` seconds, then stop; what is left is counted as dropped."""
        if self._pid != os.getpid():
            return
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            self._hurry = True
            self._cond.notify_all()
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
