"""CloudWatch Logs: the app's JSON log lines, by one of two transports, on when CLOUDWATCH_LOG_GROUP is set.

`api` (default): watchtower's PutLogEvents. `otlp`: the OpenTelemetry logs SDK, SigV4-signed.
Both keep a per-worker `Backlog` (accepted, not yet settled) so a slow or dead CloudWatch costs a
bounded amount of memory and every line is counted once as sent or dropped.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from flask import Flask

from ..core.log_limits import RateLimitedWarning
from ..core.status import IntegrationStatus, announce, register

NAME = "cloudwatch"
# Lines per worker accepted but not yet delivered; beyond this, new lines are dropped and counted.
# At ~500 bytes a line that is ~5 MB: an outage costs memory once, not per request.
CAPACITY = 10_000
# Loggers never shipped: the AWS and HTTP stacks log while we send (a loop that feeds itself), and
# this package's warnings say CloudWatch is unreachable (stdout only).
EXCLUDED_LOGGERS = ("watchtower", "botocore", "boto3", "urllib3", "s3transfer", "requests", __name__)
# CreateLogGroup/CreateLogStream answers that mean "go on": it exists, someone else is creating it,
# or (groups) the role may write to a provisioned group but not create it.
CREATE_OK = {"ResourceAlreadyExistsException", "OperationAbortedException", "AccessDeniedException"}


def init_app(app: Flask) -> bool:
    """The transport CRUDDUR_CLOUDWATCH_TRANSPORT names."""
    if app.extensions["cruddur.config"].cloudwatch_transport == "otlp":
        from . import otlp

        return otlp.init_app(app)
    from . import api

    return api.init_app(app)


def switched_off(app: Flask, reason: str, logger: logging.Logger) -> bool:
    """Register the integration as off for `reason` and say so once; returns False."""
    status = IntegrationStatus(NAME, False, reason)
    register(app, status)
    return announce(logger, status)


def shipped(record: logging.LogRecord) -> bool:
    """Handler filter: False for records of EXCLUDED_LOGGERS and their children."""
    return not any(record.name == name or record.name.startswith(name + ".") for name in EXCLUDED_LOGGERS)


def stream_name(prefix: str, pid: int | str | None = None) -> str:
    """This worker's log stream, `<service>/<host>/<pid>` (CloudWatch refuses `:` and `*` in names)."""
    host = socket.gethostname().replace(":", "_").replace("*", "_")
    return f"{prefix}/{host}/{os.getpid() if pid is None else pid}"


def create_destination(client, group: str, stream: str) -> None:
    """CreateLogGroup, then CreateLogStream; existing ones are fine. Raises on any other error."""
    from botocore.exceptions import ClientError

    for call, names in (
        (client.create_log_group, {"logGroupName": group}),
        (client.create_log_stream, {"logGroupName": group, "logStreamName": stream}),
    ):
        try:
            call(**names)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in CREATE_OK:
                raise


def within(timeout: float, work) -> bool:
    """Run `work()` on a thread of its own; whether it finished, truthy, within `timeout` s."""
    result = []
    worker = threading.Thread(target=lambda: result.append(work()), name="cloudwatch-flush", daemon=True)
    worker.start()
    worker.join(max(timeout, 0.0))
    return bool(result and result[0] is not False)


class Backlog:
    """Lines accepted and not yet settled, bounded; each settles once as sent or dropped.

    `admit()` on the logging thread refuses (and counts) a line once `capacity` are in flight.
    `write_off()` at shutdown counts what is left as dropped and ignores later settlements.
    """

    def __init__(self, status: IntegrationStatus, logger: logging.Logger):
        self.status = status
        self.capacity = CAPACITY
        self.warning = RateLimitedWarning(logger)
        self._lock = threading.Lock()
        self._accepted = self._settled = 0
        self._closed = self._written_off = False
        status.set_queue_probe(self.queued)

    def queued(self) -> int:
        """Lines accepted and not yet sent or dropped."""
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
        """Book lines as delivered or refused (nothing, after write_off)."""
        with self._lock:
            if self._written_off:
                return
            self._settled += sent + dropped
        if sent:
            self.status.record_sent(sent)
        if dropped:
            self.status.record_dropped(dropped)

    def close(self) -> None:
        """Admit nothing more."""
        with self._lock:
            self._closed = True

    def write_off(self) -> int:
        """Count every unsettled line as dropped and close the books; returns how many."""
        with self._lock:
            self._closed = self._written_off = True
            left, self._settled = self._accepted - self._settled, self._accepted
        if left:
            self.status.record_dropped(left)
        return left
