"""Delivering queued telemetry when a worker stops (SIGTERM under gunicorn, or interpreter exit)."""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable

from flask import Flask

log = logging.getLogger(__name__)

# Seconds all flushes together may take without a Config (whose shutdown_budget is gunicorn's
# graceful_timeout less a margin, so a worker is done before gunicorn kills it).
DEFAULT_BUDGET = 20.0
# The database pool, OpenTelemetry, the browser relay, Rollbar, CloudWatch Logs, request metrics
# and X-Ray over OTLP (a second span destination). With at most this many flushes, each is given at
# least `min_share(budget)`: the shares are fair shares of what is left.
MAX_FLUSHES = 7


def min_share(budget: float) -> float:
    """The least time any one flush is given out of `budget`."""
    return budget / MAX_FLUSHES


class Flushes:
    """Flush callbacks, run once, in priority order, each within a fair share of one time budget."""

    def __init__(self, budget: float = DEFAULT_BUDGET):
        self.budget = budget
        self._callbacks: list[tuple[int, str, Callable[[float], None]]] = []
        self._done = threading.Event()
        self._lock = threading.Lock()

    def add(self, priority: int, name: str, flush: Callable[[float], None]) -> None:
        """Register `flush(timeout_seconds)`; lower priority runs first (logs go last).

        A flush must be done when its time is up, counting what it could not deliver as dropped.
        """
        if len(self._callbacks) >= MAX_FLUSHES:
            raise ValueError(f"at most {MAX_FLUSHES} flushes share the shutdown budget")
        self._callbacks.append((priority, name, flush))

    def run(self) -> None:
        """Run every flush once, each with the time that is left; never raises."""
        with self._lock:
            if self._done.is_set():
                return
            self._done.set()
        deadline = time.monotonic() + self.budget
        ordered = sorted(self._callbacks, key=lambda c: c[0])
        for index, (_priority, name, flush) in enumerate(ordered):
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("no time left to flush %s", name)
                continue
            # A fair share of what is left: a dead vendor cannot eat the others' time (the OTLP
            # exporter alone would retry a refused endpoint for the whole budget); what a fast
            # flush does not use passes to the ones after it.
            share = left / (len(ordered) - index)
            started = time.monotonic()
            try:
                flush(share)
            except Exception:
                log.warning("flushing %s failed", name, exc_info=True)
            took = time.monotonic() - started
            if took > 0.05:
                log.info("flushed %s in %.3f s", name, took)


def _run_if_alive(ref: weakref.ref) -> None:
    flushes = ref()
    if flushes is not None:
        flushes.run()


def init_app(app: Flask) -> Flushes:
    """One flush list per app, run at interpreter exit (gunicorn workers exit through sys.exit).

    The exit hook holds the list weakly: an app that was thrown away (tests build hundreds) is not
    flushed at exit; the app a server runs lives as long as the process.
    """
    flushes = app.extensions.get("cruddur.shutdown")
    if flushes is None:
        config = app.extensions.get("cruddur.config")
        budget = config.shutdown_budget if config is not None else DEFAULT_BUDGET
        flushes = app.extensions["cruddur.shutdown"] = Flushes(budget)
        atexit.register(_run_if_alive, weakref.ref(flushes))
    return flushes


def on_shutdown(app: Flask, priority: int, name: str, flush: Callable[[float], None]) -> None:
    """Register a flush for this app's shutdown (see Flushes.add)."""
    init_app(app).add(priority, name, flush)
