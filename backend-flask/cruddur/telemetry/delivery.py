"""A bounded queue with one sender thread: how telemetry leaves the process without blocking a request.

The request thread only appends to a bounded queue (dropping and counting when it is full); one
daemon thread per process delivers, with a timeout per attempt, pausing when the vendor says
`Retry-After`. The thread starts on first use, so a worker forked by gunicorn gets its own.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

from opentelemetry.instrumentation.utils import suppress_instrumentation

from .status import IntegrationStatus, RateLimitedWarning

MAX_RETRY_AFTER_SECONDS = 60.0


class RetryLater(Exception):
    """Raised by a send function when the vendor asks to wait (HTTP 429/503 Retry-After)."""

    def __init__(self, seconds: float):
        super().__init__(f"retry after {seconds:.1f} s")
        self.seconds = min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def retry_after_seconds(value: str | None, default: float = 1.0) -> float:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
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
    """Delivers items with `send(item)` on one background thread; `submit` never blocks."""

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
        self._warning = RateLimitedWarning(logger)
        self._max_queue = max_queue
        self._lock = threading.Lock()
        self._pid = None
        self._reset()
        status.set_queue_probe(self.queued)

    def _reset(self) -> None:
        self._queue: queue.Queue = queue.Queue(self._max_queue)
        self._idle = threading.Event()
        self._idle.set()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def queued(self) -> int:
        """Items waiting to be sent."""
        return self._queue.qsize()

    def submit(self, item) -> bool:
        """Queue an item; False (and counted as dropped) when the queue is full or closed."""
        if self._pid != os.getpid():
            with self._lock:  # forked after the queue was made: start afresh in this process
                if self._pid != os.getpid():
                    self._reset()
        if self._closed:
            self.status.record_dropped()
            return False
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.status.record_dropped()
            self._warning.warn("%s queue is full (%d items): dropping", self.name, self._max_queue)
            return False
        self._idle.clear()
        self._ensure_thread()
        return True

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=f"cruddur-{self.name}", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                self._idle.set()
                if self._closed:
                    return
                continue
            self._deliver(item)
            if self._queue.empty():
                self._idle.set()

    def _deliver(self, item) -> None:
        try:
            with suppress_instrumentation():  # telemetry's own traffic is never an application span
                self._send(item)
        except RetryLater as later:
            self.status.record_error("retry-after")
            self.status.record_dropped()
            self._warning.warn("%s: vendor asked to wait %.1f s; pausing", self.name, later.seconds)
            time.sleep(later.seconds)
        except Exception as error:
            self.status.record_error(error)
            self.status.record_dropped()
            self._warning.warn("%s: delivery failed: %s: %s", self.name, type(error).__name__, error)
        else:
            self.status.record_sent()

    def flush(self, timeout: float) -> None:
        """Deliver what is queued within `timeout` seconds, then stop; the rest counts as dropped."""
        self._closed = True
        deadline = time.monotonic() + timeout
        while self._thread is not None and (self._queue.qsize() or not self._idle.is_set()):
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                break
            self._idle.wait(min(0.05, left_s))
        left = 0
        while True:
            try:
                self._queue.get_nowait()
                left += 1
            except queue.Empty:
                break
        if left:
            self.status.record_dropped(left)
            self._warning.warn("%s: %d items undelivered at shutdown", self.name, left)
