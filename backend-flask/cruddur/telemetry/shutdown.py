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

# Seconds that all flushes together may take; gunicorn's graceful_timeout (30 s) is the hard limit.
DEFAULT_BUDGET = 20.0


class Flushes:
    """Flush callbacks, run once, in priority order, each within a fair share of one time budget."""

    def __init__(self, budget: float = DEFAULT_BUDGET):
        self.budget = budget
        self._callbacks: list[tuple[int, str, Callable[[float], None]]] = []
        self._done = threading.Event()
        self._lock = threading.Lock()

    def add(self, priority: int, name: str, flush: Callable[[float], None]) -> None:
        """Register `flush(timeout_seconds)`; lower priority runs first (logs go last)."""
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
        flushes = app.extensions["cruddur.shutdown"] = Flushes()
        atexit.register(_run_if_alive, weakref.ref(flushes))
    return flushes


def on_shutdown(app: Flask, priority: int, name: str, flush: Callable[[float], None]) -> None:
    """Register a flush for this app's shutdown (see Flushes.add)."""
    init_app(app).add(priority, name, flush)
