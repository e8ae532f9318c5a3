"""CloudWatch Logs through watchtower (PutLogEvents): stdout's JSON lines, one stream per worker.

The request thread formats the line (the trace ids are only there) and queues it without blocking
(`logging.handlers.QueueHandler`); a `QueueListener` hands it to a stock
`watchtower.CloudWatchLogHandler`, which batches and sends on its own thread. The Backlog bounds
what waits anywhere on that way (watchtower's own queue is unbounded). botocore's events on the
client watchtower is given count what PutLogEvents accepted, rejected or failed. The client is
built, and this worker's group and stream created, on watchtower's sender thread: never on a
request or while the app is built (credentials may ask instance metadata).
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
import threading
import warnings

from flask import Flask

from ...logs import prepare
from ..core.shutdown import on_shutdown
from ..core.status import IntegrationStatus, announce, register
from ..otel.aws import resolve
from . import NAME, Backlog, create_destination, shipped, stream_name, switched_off, within

log = logging.getLogger(__name__)
SEND_INTERVAL_SECONDS = 2.5  # watchtower sends a batch at least this often
FLUSH_TIMEOUT_SECONDS = 2.0  # flush() and close() without a timeout (logging.shutdown() at exit)
PUT_LOG_EVENTS = "cloudwatch-logs.PutLogEvents"  # botocore's event suffix for the call


def init_app(app: Flask) -> bool:
    """Ship every log line to CLOUDWATCH_LOG_GROUP through watchtower when it is set. Returns whether it is on."""
    config = app.extensions["cruddur.config"]
    group = config.cloudwatch_log_group
    if not group:
        return switched_off(app, "CLOUDWATCH_LOG_GROUP is not set", log)
    _endpoint, region, why_not = resolve("logs", config.aws_region)
    if not region:
        return switched_off(app, f"CLOUDWATCH_LOG_GROUP is set, but {why_not}", log)
    status = IntegrationStatus(NAME, True, f"log group {group} in {region}, one stream per worker")
    register(app, status)

    import watchtower

    # watchtower warns on every failed attempt; Deliveries counts and logs them, rate-limited.
    warnings.filterwarnings("ignore", category=watchtower.WatchtowerWarning)
    backlog = Backlog(status, log)
    deliveries = Deliveries(backlog, region, group, config.service_name)
    cloudwatch = watchtower.CloudWatchLogHandler(
        log_group_name=group,
        log_stream_name=stream_name(config.service_name, "{process_id}"),
        send_interval=SEND_INTERVAL_SECONDS,
        boto3_client=LazyClient(deliveries.build_client),
        create_log_group=False,  # no AWS call here: Deliveries creates both on the sender thread
        create_log_stream=False,  # watchtower would drop lines, uncounted, while it creates one
    )
    handler = CloudWatchQueueHandler(cloudwatch, backlog, deliveries)
    logging.getLogger().addHandler(handler)
    app.extensions["cruddur.cloudwatch"] = handler
    # Priority 90: logs go last, so the other integrations' shutdown lines are shipped too.
    on_shutdown(app, priority=90, name=NAME, flush=handler.shutdown)
    return announce(log, status)


class LazyClient:
    """A client built by `build()` on first use (by watchtower, on its sender thread)."""

    def __init__(self, build):
        self._build = build
        self._client = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        with self._lock:
            if self._client is None:
                self._client = self._build()
        return getattr(self._client, name)


class Deliveries:
    """Settles the Backlog from botocore's PutLogEvents events, and creates the group and stream."""

    def __init__(self, backlog: Backlog, region: str, group: str, prefix: str):
        self.backlog = backlog
        self.region = region
        self.group = group
        self.prefix = prefix
        self.client = None
        self.batch: list | None = None  # the batch watchtower is sending, until it is accepted

    def build_client(self):
        """The logs client, counted through its events; the group and stream exist when it returns."""
        import boto3
        from botocore.config import Config

        # Fail fast (a blackholed endpoint must not hold the sender for minutes); watchtower
        # retries a batch itself, so botocore does not retry on top.
        timeouts = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 1})
        client = boto3.session.Session(region_name=self.region).client("logs", config=timeouts)
        client.meta.events.register(f"before-parameter-build.{PUT_LOG_EVENTS}", self.before_put)
        client.meta.events.register(f"after-call.{PUT_LOG_EVENTS}", self.after_put)
        client.meta.events.register(f"after-call-error.{PUT_LOG_EVENTS}", self.put_failed)
        self.client = client
        self.create_destination()
        return client

    def create_destination(self) -> None:
        try:
            create_destination(self.client, self.group, stream_name(self.prefix))
        except Exception as error:  # PutLogEvents fails too, and creates them again
            self.failed(type(error).__name__, "creating the log stream")

    def before_put(self, params: dict, **_) -> None:
        """A new batch means watchtower gave up on the one before, after its retries: dropped."""
        previous, self.batch = self.batch, params["logEvents"]
        if previous is not None and previous is not self.batch:
            self.backlog.settle(0, len(previous))

    def after_put(self, http_response, parsed: dict, **_) -> None:
        """Accepted (some may be refused as too old or too new), or failed with an AWS error."""
        if http_response.status_code >= 300:
            code = parsed.get("Error", {}).get("Code") or f"HTTP {http_response.status_code}"
            self.failed(code, "PutLogEvents")
            if code == "ResourceNotFoundException":  # deleted under us: watchtower's next attempt finds it
                self.create_destination()
            return
        batch, self.batch = self.batch or [], None
        rejected = rejected_count(parsed.get("rejectedLogEventsInfo"), len(batch))
        self.backlog.settle(len(batch) - rejected, rejected)
        if rejected:
            self.backlog.warning.warn("CloudWatch Logs refused %d log events (too old or too new)", rejected)

    def put_failed(self, exception: BaseException, **_) -> None:
        """No answer (refused, timed out); watchtower tries the batch again."""
        self.failed(type(exception).__name__, "PutLogEvents")

    def failed(self, kind: str, call: str) -> None:
        self.backlog.status.record_error(kind)
        self.backlog.warning.warn("CloudWatch Logs: %s for %s failed (%s)", call, self.group, kind)


class CloudWatchQueueHandler(logging.handlers.QueueHandler):
    """The root logger's handler: formats on the caller's thread and queues without blocking."""

    def __init__(self, cloudwatch: logging.Handler, backlog: Backlog, deliveries: Deliveries):
        super().__init__(queue.Queue())  # bounded by the Backlog, which also covers watchtower's queue
        self.cloudwatch = cloudwatch
        self.backlog = backlog
        self.deliveries = deliveries
        self.addFilter(shipped)
        prepare(self)  # stdout's JSON line, trace ids and library rate limit
        self.listener = logging.handlers.QueueListener(self.queue, cloudwatch)
        self.listener.start()
        self._stopped = False

    def enqueue(self, record: logging.LogRecord) -> None:
        """Queue the record, or count it as dropped when the Backlog is full."""
        if self.backlog.admit():
            self.queue.put_nowait(record)

    def handleError(self, record: logging.LogRecord) -> None:
        """Count a record that could not be formatted or queued; never print."""
        self.backlog.status.record_error(type(sys.exc_info()[1]).__name__)

    def flush(self, timeout: float = FLUSH_TIMEOUT_SECONDS) -> bool:
        """Send what is queued now; wait at most `timeout` s. Returns whether it all went out."""

        def send_now() -> None:
            self.queue.join()  # the listener has handed everything to watchtower
            self.cloudwatch.flush()  # watchtower sends its batch and waits for the answer

        return within(timeout, send_now) and self.deliveries.batch is None

    def shutdown(self, timeout: float) -> None:
        """Deliver what is queued within `timeout` s, then stop; what is left is counted as dropped."""
        if self._stopped:
            return
        self._stopped = True
        self.backlog.close()

        def drain() -> None:
            self.listener.stop()  # hands over everything queued, then ends
            self.cloudwatch.close()  # watchtower sends the rest and stops

        within(timeout, drain)
        left = self.backlog.write_off()
        if left:
            log.warning("CloudWatch Logs: gave up on %d log lines after %.1f s", left, timeout)

    def close(self) -> None:
        """logging.shutdown() at exit: a bounded shutdown, if the app's did not run."""
        self.shutdown(FLUSH_TIMEOUT_SECONDS)
        super().close()


def rejected_count(info: dict | None, total: int) -> int:
    """How many events of a batch PutLogEvents refused (its indexes mark the refused ends)."""
    if not info:
        return 0
    too_old = max(info.get("tooOldLogEventEndIndex", -1), info.get("expiredLogEventEndIndex", -1)) + 1
    too_new = total - info["tooNewLogEventStartIndex"] if "tooNewLogEventStartIndex" in info else 0
    return min(total, too_old + too_new)
