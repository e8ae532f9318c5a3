"""Health-check counters of the telemetry integrations, kept by prometheus_client.

Each integration counts what it sent, dropped and failed (and any event it names) in
`cruddur_integration_events_total{integration, event}`. Under gunicorn, PROMETHEUS_MULTIPROC_DIR
(set up by gunicorn.conf.py) puts prometheus_client in multiprocess mode: the health check and
`/metrics` add up every worker's files, so they describe the instance, not the worker that answered.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

from flask import Flask
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

EXTENSION = "cruddur.metrics"
EVENTS = "cruddur_integration_events"
QUEUED = "cruddur_integration_queued"
LAST_ERROR = "cruddur_integration_last_error_timestamp_seconds"
# The counters every integration shows, even at zero.
STANDARD_EVENTS = ("sent", "dropped", "failed")
# Keys of status() that are not counters: an event may not take one of these names.
_FIELDS = frozenset({"enabled", "reason", "queued", "last_error", "last_error_at"})


class Metrics:
    """One app's metric families; `read()` gives their values for this process or the whole instance."""

    def __init__(self, multiprocess_dir: str = ""):
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        self.events = Counter(
            EVENTS, "Telemetry items per integration and outcome.", ["integration", "event"], registry=self.registry
        )
        # Live workers only: a dead worker's queue is gone with it.
        self.queued = Gauge(
            QUEUED, "Items waiting to be sent.", ["integration"], registry=self.registry, multiprocess_mode="livesum"
        )
        self.last_error = Gauge(
            LAST_ERROR,
            "When an integration last failed, per error type (Unix time).",
            ["integration", "error"],
            registry=self.registry,
            multiprocess_mode="max",
        )

    def _source(self):
        if not self.multiprocess_dir:
            return self.registry
        instance = CollectorRegistry()
        try:
            MultiProcessCollector(instance, path=self.multiprocess_dir)
        except ValueError:  # the folder is gone: this process's own values are still readable
            return self.registry
        return instance

    def read(self) -> dict[str, dict]:
        """{integration: {"events": {event: count}, "queued": n, "errors": {type: unix time}}}."""
        values: dict[str, dict] = {}

        def of(integration: str) -> dict:
            return values.setdefault(integration, {"events": {}, "queued": 0, "errors": {}})

        for family in self._source().collect():
            for sample in family.samples:
                labels = sample.labels
                if family.name == EVENTS and sample.name.endswith("_total"):
                    of(labels["integration"])["events"][labels["event"]] = int(sample.value)
                elif family.name == QUEUED:
                    of(labels["integration"])["queued"] += int(sample.value)
                elif family.name == LAST_ERROR:
                    of(labels["integration"])["errors"][labels["error"]] = sample.value
        return values

    def exposition(self) -> bytes:
        """The Prometheus text format of every value (the instance's, under gunicorn)."""
        return generate_latest(self._source())


class IntegrationStatus:
    """What one integration reports: on or off and why, its queue, and its counters.

    `/api/health-check` shows `status()`: numbers, times and a short reason, never secrets or addresses.
    Under gunicorn, `queued` adds this worker's queue now to the other live workers' queues as of their
    last delivery, drop or failure (a worker publishes its queue length whenever it counts one).
    """

    def __init__(self, name: str, enabled: bool, reason: str, metrics: Metrics | None = None):
        """Counts in `metrics` (the app's, from `track`), else in a registry of its own."""
        self.name, self.enabled, self.reason = name, enabled, reason
        self.metrics = metrics or Metrics()
        self._queued: Callable[[], int] | None = None
        self._children: dict[str, object] = {}
        for event in STANDARD_EVENTS:  # in /metrics from the start, at zero
            self.count(event, 0)

    def set_queue_probe(self, queued: Callable[[], int]) -> None:
        """Tell the status how to read the integration's current queue length."""
        self._queued = queued

    def record_sent(self, count: int = 1) -> None:
        """Count items delivered to the vendor."""
        self.count("sent", count)

    def record_dropped(self, count: int = 1) -> None:
        """Count items thrown away (queue full, or given up after failures or at shutdown)."""
        self.count("dropped", count)

    def record_error(self, error: BaseException | str) -> None:
        """Count a failed delivery attempt and remember when (the error's type, never its text)."""
        kind = error if isinstance(error, str) else type(error).__name__
        # The time first: a reader never sees a failure without one.
        self.metrics.last_error.labels(self.name, kind).set(time.time())
        self.count("failed")

    def count(self, name: str, n: int = 1) -> None:
        """Add `n` to the counter `name`, shown by `status()` (`count(name, 0)` shows it at zero)."""
        child = self._children.get(name)
        if child is None:
            if name in _FIELDS:
                raise ValueError(f"{name!r} is a status field, not a counter")
            child = self._children.setdefault(name, self.metrics.events.labels(self.name, name))
        child.inc(n)
        if self.metrics.multiprocess_dir and name in STANDARD_EVENTS:
            self._publish_queue()  # the other workers read this process's queue from its file

    def _publish_queue(self) -> int:
        """This process's queue length (-1 when the probe failed), also written to the metrics."""
        try:
            queued = int(self._queued()) if self._queued is not None else 0
        except Exception:  # a probe must never break the health check
            queued = -1
        self.metrics.queued.labels(self.name).set(max(queued, 0))
        return queued

    @property
    def sent(self) -> int:
        """Items delivered so far (the instance's, under gunicorn)."""
        return self.status()["sent"]

    @property
    def dropped(self) -> int:
        """Items thrown away so far."""
        return self.status()["dropped"]

    @property
    def failed(self) -> int:
        """Failed delivery attempts so far."""
        return self.status()["failed"]

    def status(self, values: dict[str, dict] | None = None) -> dict:
        """A JSON-ready snapshot; `values` is a `Metrics.read()` shared by several integrations."""
        own_queue = self._publish_queue()
        values = self.metrics.read() if values is None else values
        mine = values.get(self.name, {"events": {}, "queued": 0, "errors": {}})
        events = {event: 0 for event in STANDARD_EVENTS} | mine["events"]
        # A probe that failed in this process says so (-1) rather than showing a partial sum.
        instance_wide = self.metrics.multiprocess_dir and own_queue >= 0
        queued = mine["queued"] if instance_wide else own_queue
        last_error, last_at = max(mine["errors"].items(), key=lambda item: item[1], default=(None, None))
        return {
            "enabled": self.enabled,
            "reason": self.reason,
            "queued": queued,
            **events,
            "last_error": last_error,
            "last_error_at": datetime.fromtimestamp(last_at, UTC).isoformat() if last_at else None,
        }


def init_app(app: Flask) -> Metrics:
    """The app's metrics: in PROMETHEUS_MULTIPROC_DIR when gunicorn set it up, else in this process."""
    metrics = app.extensions.get(EXTENSION)
    if metrics is None:
        config = app.extensions.get("cruddur.config")
        directory = config.prometheus_multiproc_dir if config is not None else ""
        metrics = app.extensions[EXTENSION] = Metrics(directory if directory and os.path.isdir(directory) else "")
    return metrics


def track(app: Flask, name: str, enabled: bool, reason: str) -> IntegrationStatus:
    """A new status of integration `name`, counting in the app's metrics, shown by the health check."""
    status = IntegrationStatus(name, enabled, reason, init_app(app))
    app.extensions.setdefault("cruddur.integrations", {})[name] = status
    return status


def snapshot(app: Flask) -> dict[str, dict]:
    """`status()` of every registered integration, from one read of the counters."""
    integrations = app.extensions.get("cruddur.integrations", {})
    values = init_app(app).read() if integrations else {}
    return {name: integration.status(values) for name, integration in integrations.items()}


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


def exposition(app: Flask) -> bytes:
    """The app's counters in the Prometheus text format."""
    return init_app(app).exposition()
