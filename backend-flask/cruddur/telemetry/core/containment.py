"""Telemetry's own failures stay out of requests: caught, counted in the health check, logged rate-limited.

The OpenTelemetry SDK does not catch exceptions from span processors (they reach whoever started or
ended the span: a route, `cursor.execute`), and Flask turns an exception from a before/after/teardown
hook into a 500. Every telemetry hook and span processor therefore runs contained.
"""

from __future__ import annotations

import logging

from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from .log_limits import RateLimitedWarning
from .status import IntegrationStatus

CONTAINED = "contained_errors"  # the health-check counter
MAX_DETAIL_CHARS = 120  # an exception's text may quote a caller's header: never more than this


class Containment:
    """One integration's catcher: counts each contained failure and logs at most one line a minute."""

    def __init__(self, status: IntegrationStatus, logger: logging.Logger):
        self.status = status
        self._warning = RateLimitedWarning(logger)
        status.count(CONTAINED, 0)

    def failed(self, where: str, error: BaseException) -> None:
        """Count and (rate-limited) log a failure that was kept from the request."""
        self.status.count(CONTAINED)
        detail = str(error)[:MAX_DETAIL_CHARS]
        message = "%s: %s in %s was contained; the request was served (%s)"
        self._warning.warn(message, self.status.name, type(error).__name__, where, detail)

    def hook(self, function, where: str | None = None, fallback=None):
        """`function` wrapped so that an exception is contained; `fallback(*args)` then gives the result."""
        where = where or getattr(function, "__name__", "hook")

        def contained(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except Exception as error:
                self.failed(where, error)
                return fallback(*args) if fallback is not None else None

        contained.__name__ = getattr(function, "__name__", "contained")
        return contained


class ContainedSpanProcessor(SpanProcessor):
    """A span processor whose exceptions are contained (see the module docstring)."""

    def __init__(self, processor: SpanProcessor, containment: Containment):
        self.processor = processor
        self.containment = containment

    def _contained(self, method, *args, failed=None, **kwargs):
        try:
            return method(*args, **kwargs)
        except Exception as error:
            self.containment.failed(f"{type(self.processor).__name__}.{method.__name__}", error)
            return failed

    def on_start(self, span: Span, parent_context=None) -> None:
        self._contained(self.processor.on_start, span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self._contained(self.processor.on_end, span)

    def shutdown(self) -> None:
        self._contained(self.processor.shutdown)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """The wrapped force_flush, contained (False when it failed)."""
        return self._contained(self.processor.force_flush, timeout_millis, failed=False)
