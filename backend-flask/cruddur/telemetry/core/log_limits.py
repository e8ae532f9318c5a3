"""Rate limits for log lines: telemetry's own warnings, and library loggers on every handler."""

from __future__ import annotations

import logging
import threading
import time


class RateLimitedWarning:
    """Logs a warning at most once per `interval` seconds, saying how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0):
        self.logger, self.interval = logger, interval
        self._lock = threading.Lock()
        self._last, self._suppressed = 0.0, 0

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


class RateLimitFilter(logging.Filter):
    """Lets library log records through at most once per interval per message, without traceback.

    For SDK loggers that log every failed export with a stack trace: the first line of each kind is
    kept, the rest counted; other loggers' records pass. On handlers (through logs.LibraryRecordFilter),
    because a logger's own filters do not apply to its child loggers' records.
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
