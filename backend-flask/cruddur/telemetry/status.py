"""Self-reporting for integrations: counters for the health check and rate-limited warnings."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime


class IntegrationStatus:
    """Thread-safe counters one integration keeps: sent, dropped, failed, last error time.

    Registered in `app.extensions["cruddur.integrations"][name]`; `/api/health-check` shows
    `status()`. It never holds secrets: only numbers, times and a short reason.
    """

    def __init__(self, name: str, enabled: bool, reason: str, queued: Callable[[], int] | None = None):
        self.name = name
        self.enabled = enabled
        self.reason = reason
        self._queued = queued
        self._lock = threading.Lock()
        self.sent = 0
        self.dropped = 0
        self.failed = 0
        self.last_error_at: float | None = None
        self.last_error: str | None = None
        self.counts: dict[str, int] = {}

    def set_queue_probe(self, queued: Callable[[], int]) -> None:
        """Tell the status how to read the integration's current queue length."""
        self._queued = queued

    def record_sent(self, count: int = 1) -> None:
        """Count items delivered to the vendor."""
        with self._lock:
            self.sent += count

    def record_dropped(self, count: int = 1) -> None:
        """Count items thrown away (queue full, or given up after failures)."""
        with self._lock:
            self.dropped += count

    def record_error(self, error: BaseException | str, count: int = 1) -> None:
        """Count a failed delivery attempt and remember when (the error's type, never its text)."""
        with self._lock:
            self.failed += count
            self.last_error_at = time.time()
            self.last_error = error if isinstance(error, str) else type(error).__name__

    def count(self, name: str, n: int = 1) -> None:
        """Add `n` to an integration-specific counter, shown in `status()` under `name` (0 declares it)."""
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + n

    def status(self) -> dict:
        """A JSON-ready snapshot."""
        queued = 0
        if self._queued is not None:
            try:
                queued = int(self._queued())
            except Exception:  # a probe must never break the health check
                queued = -1
        with self._lock:
            return {
                "enabled": self.enabled,
                "reason": self.reason,
                "queued": queued,
                "sent": self.sent,
                "dropped": self.dropped,
                "failed": self.failed,
                "last_error": self.last_error,
                "last_error_at": (
                    datetime.fromtimestamp(self.last_error_at, UTC).isoformat() if self.last_error_at else None
                ),
                **self.counts,
            }


class RateLimitedWarning:
    """Logs a warning at most once per `interval` seconds, saying how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0):
        self.logger = logger
        self.interval = interval
        self._lock = threading.Lock()
        self._last = 0.0
        self._suppressed = 0

    def warn(self, message: str, *args) -> None:
        """Log now, or count it for the next line if one was logged within the interval."""
        now = time.monotonic()
        with self._lock:
            if self._last and now - self._last < self.interval:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        if suppressed:
            message += " (%d similar warnings suppressed)"
            args = (*args, suppressed)
        self.logger.warning(message, *args)


def register(app, status: IntegrationStatus) -> None:
    """Make an integration's status visible in the health check."""
    app.extensions.setdefault("cruddur.integrations", {})[status.name] = status


def announce(logger: logging.Logger, status: IntegrationStatus) -> bool:
    """The one startup line per integration: on or off, and why. Returns whether it is on."""
    logger.info(
        "%s is %s: %s",
        status.name,
        "on" if status.enabled else "off",
        status.reason,
        extra={"integration": status.name, "enabled": status.enabled},
    )
    return status.enabled


class RateLimitFilter(logging.Filter):
    """Lets library log records through at most once per interval per message, without traceback.

    For SDK loggers that log every failed export with a stack trace (OpenTelemetry's exporter,
    the X-Ray SDK's emitter and pollers, watchtower, botocore): the first line of each kind is
    kept, the rest counted. Records of other loggers pass untouched. Installed on handlers,
    because a logger's own filters do not apply to records of its child loggers.
    """

    def __init__(self, prefixes: tuple[str, ...], interval: float = 60.0):
        super().__init__()
        self.prefixes = prefixes
        self.interval = interval
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record if its kind was not logged within the interval; strip tracebacks."""
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if record.exc_info:
            error = record.exc_info[1]
            detail = f"{type(error).__name__}: {error}".replace("%", "%%")
            record.msg = f"{record.msg} ({detail})"
            record.exc_info = None
            record.exc_text = None
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        if suppressed:
            record.msg = f"{record.msg} [{suppressed} similar lines suppressed]"
        return True
