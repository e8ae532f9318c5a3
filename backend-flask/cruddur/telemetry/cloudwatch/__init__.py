"""CloudWatch Logs: stdout's JSON lines, one stream per worker, on when CLOUDWATCH_LOG_GROUP is set.

Transports: `api` (watchtower, PutLogEvents) and `otlp` (the OpenTelemetry logs SDK). Both keep a
`Backlog`, so an outage costs bounded memory and every line is counted once, as sent or dropped.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from flask import Flask

from .. import register_off
from ..core.log_limits import RateLimitedWarning
from ..core.shutdown import on_shutdown
from ..core.status import IntegrationStatus, announce, track

NAME = "cloudwatch"
CAPACITY = 10_000  # lines accepted, not yet delivered, per worker (~5 MB); beyond it new ones are dropped
FLUSH_TIMEOUT_SECONDS = 2.0  # flush() and close() when logging.shutdown() calls them at exit
# Never shipped: the AWS and HTTP stacks log while we send (a loop), and our own warnings.
EXCLUDED_LOGGERS = ("watchtower", "botocore", "boto3", "urllib3", "s3transfer", "requests", __name__)
# Answers to CreateLogGroup/Stream that mean "go on": it exists, or is being created.
EXISTS = {"ResourceAlreadyExistsException", "OperationAbortedException"}
_EXCLUDED_PREFIXES = tuple(f"{name}." for name in EXCLUDED_LOGGERS)
log = logging.getLogger(__name__)


def init_app(app: Flask) -> bool:
    """Ship every log line to CLOUDWATCH_LOG_GROUP by the transport CRUDDUR_CLOUDWATCH_TRANSPORT names."""
    config = app.extensions["cruddur.config"]
    if not config.cloudwatch_log_group:
        return register_off(app, NAME, "CLOUDWATCH_LOG_GROUP is not set", log)
    from ..otel.aws import resolve

    endpoint, region, why_not = resolve("logs", config.aws_region)
    if why_not:
        return register_off(app, NAME, f"CLOUDWATCH_LOG_GROUP is set, but {why_not}", log)
    if config.cloudwatch_transport == "otlp":
        from . import otlp

        handler = otlp.build_handler(app, endpoint, region)
    else:
        from . import api

        handler = api.build_handler(app, region)
    logging.getLogger().addHandler(handler)
    app.extensions["cruddur.cloudwatch"] = handler
    on_shutdown(app, priority=90, name=NAME, flush=handler.shutdown)  # last: ships the others' lines
    return True


def report(app: Flask, reason: str) -> IntegrationStatus:
    status = track(app, NAME, True, reason)
    announce(log, status)
    return status


def shipped(record: logging.LogRecord) -> bool:
    """Handler filter: False for records of EXCLUDED_LOGGERS and their children."""
    return not f"{record.name}.".startswith(_EXCLUDED_PREFIXES)


def stream_name(prefix: str, pid: int | str | None = None) -> str:
    """This worker's log stream, `<service>/<host>/<pid>` (CloudWatch refuses `:` and `*`)."""
    host = socket.gethostname().replace(":", "_").replace("*", "_")
    return f"{prefix}/{host}/{os.getpid() if pid is None else pid}"


def logs_client(region: str, attempts: int):
    """A boto3 CloudWatch Logs client that fails fast: a blackhole must not hold a sender for minutes."""
    import boto3
    from botocore.config import Config

    timeouts = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": attempts})
    return boto3.session.Session(region_name=region).client("logs", config=timeouts)


class PrebuiltClient:
    """The client `build()` makes on its own thread at startup (~100 ms of GIL); the first call waits."""

    def __init__(self, build):
        self._build, self._client, self._lock = build, None, threading.Lock()
        threading.Thread(target=self.client, name="cloudwatch-client", daemon=True).start()

    def client(self):
        with self._lock:
            self._client = self._client or self._build()
        return self._client

    def __getattr__(self, name: str):
        return getattr(self.client(), name)


def create_destination(client, group: str, stream: str) -> None:
    """CreateLogGroup, then CreateLogStream; existing ones are fine. Raises on other errors."""
    try:  # a role may write to a provisioned group and not be allowed to create one
        client.create_log_group(logGroupName=group)
    except Exception as error:
        if error_code(error) not in EXISTS | {"AccessDeniedException"}:
            raise
    try:
        client.create_log_stream(logGroupName=group, logStreamName=stream)
    except Exception as error:
        if error_code(error) not in EXISTS:
            raise


def error_code(error: BaseException) -> str:
    """The code an AWS error names (`AccessDeniedException`...), else the exception's type."""
    response = getattr(error, "response", None)
    return (isinstance(response, dict) and response.get("Error", {}).get("Code")) or type(error).__name__


def within(timeout: float, work) -> bool:
    """Run `work()` on a thread of its own; whether it returned, and not False, within `timeout` s."""
    result = []
    worker = threading.Thread(target=lambda: result.append(work()), name="cloudwatch-flush", daemon=True)
    worker.start()
    worker.join(max(timeout, 0.0))
    return bool(result) and result[0] is not False


class Backlog:
    """Lines accepted and not yet settled, at most CAPACITY; each is settled once, as sent or dropped."""

    def __init__(self, status: IntegrationStatus):
        self.status, self.capacity, self.warning = status, CAPACITY, RateLimitedWarning(log)
        self._lock = threading.Lock()
        self._accepted = self._settled = 0
        self._closed = self._written_off = False
        status.set_queue_probe(self.queued)

    def queued(self) -> int:
        return self._accepted - self._settled

    def admit(self) -> bool:
        """Take one more line, or count it as dropped (full, or shut down)."""
        with self._lock:
            full = self._closed or self._accepted - self._settled >= self.capacity
            self._accepted += not full
        if full:
            self.status.record_dropped()
            self.warning.warn("CloudWatch Logs: %d lines not yet delivered; dropping log lines", self.capacity)
        return not full

    def settle(self, sent: int, dropped: int = 0) -> None:
        """Book lines as delivered or refused (ignored once written off)."""
        with self._lock:
            if self._written_off:
                return
            self._settled += sent + dropped
        for count, record in ((sent, self.status.record_sent), (dropped, self.status.record_dropped)):
            if count:
                record(count)

    def close(self) -> bool:
        """Admit nothing more; False if it was closed already."""
        with self._lock:
            was, self._closed = self._closed, True
        return not was

    def write_off(self) -> int:
        """Count every unsettled line as dropped and close the books; returns how many."""
        with self._lock:
            left, self._settled, self._written_off = self._accepted - self._settled, self._accepted, True
        if left:
            self.status.record_dropped(left)
        return left


class ShippingHandler(logging.Handler):
    """What both transports' root handlers share: stdout's JSON line, the Backlog, a bounded shutdown."""

    def setup(self, backlog: Backlog) -> None:
        from ...logs import prepare

        self.backlog = backlog
        self.addFilter(shipped)
        prepare(self)  # stdout's formatter, trace ids and library rate limit

    def handleError(self, record: logging.LogRecord) -> None:
        """Count a record that could not be formatted or queued; never print."""
        self.backlog.status.record_error("EmitError")

    def flush(self, timeout: float = FLUSH_TIMEOUT_SECONDS) -> bool:
        """Send what is queued now, waiting at most `timeout` s; whether nothing is left to send."""
        return within(timeout, self.send_now)

    def shutdown(self, timeout: float) -> None:
        """`drain()` within `timeout` s; what is left then is counted as dropped."""
        if self.backlog.close():
            within(timeout, self.drain)
            if left := self.backlog.write_off():
                log.warning("CloudWatch Logs: gave up on %d log lines after %.1f s", left, timeout)

    def close(self) -> None:
        """logging.shutdown() at exit: a bounded shutdown, if the app's did not run."""
        self.shutdown(FLUSH_TIMEOUT_SECONDS)
        super().close()
