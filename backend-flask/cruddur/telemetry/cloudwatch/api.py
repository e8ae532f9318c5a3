"""CloudWatch Logs through a stock `watchtower.CloudWatchLogHandler` (PutLogEvents).

The request thread formats and queues the line; a `QueueListener` hands it to watchtower, which
sends on its own thread. The Backlog bounds what waits (watchtower's queue is unbounded), botocore's
events on watchtower's client settle it. The client, group and stream are made in the background.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import warnings

from flask import Flask

from . import Backlog, PrebuiltClient, ShippingHandler, create_destination, error_code, logs_client, report, stream_name

SEND_INTERVAL_SECONDS = 2.5  # watchtower sends a batch at least this often
PUT_LOG_EVENTS = "cloudwatch-logs.PutLogEvents"  # botocore's event name for the call


def build_handler(app: Flask, region: str) -> CloudWatchQueueHandler:
    """The root logger's handler, shipping to CLOUDWATCH_LOG_GROUP through watchtower."""
    config = app.extensions["cruddur.config"]
    group = config.cloudwatch_log_group
    status = report(app, f"log group {group} in {region}, one stream per worker")

    import watchtower

    # watchtower warns on every failed attempt; Deliveries counts them and logs them, rate-limited.
    warnings.filterwarnings("ignore", category=watchtower.WatchtowerWarning)
    deliveries = Deliveries(Backlog(status), region, group, config.service_name)
    cloudwatch = watchtower.CloudWatchLogHandler(
        log_group_name=group,
        log_stream_name=stream_name(config.service_name, "{process_id}"),
        send_interval=SEND_INTERVAL_SECONDS,
        boto3_client=PrebuiltClient(deliveries.build_client),
        create_log_group=False,  # no AWS call here: Deliveries makes both on the client's thread
        create_log_stream=False,  # watchtower's drops lines, uncounted, while it makes one
    )
    return CloudWatchQueueHandler(cloudwatch, deliveries)


class Deliveries:
    """Settles the Backlog from PutLogEvents' botocore events; makes the group and stream."""

    def __init__(self, backlog: Backlog, region: str, group: str, prefix: str):
        self.backlog, self.region, self.group, self.prefix = backlog, region, group, prefix
        self.client = None
        self.batch: list | None = None  # the batch watchtower is sending, until it is accepted

    def build_client(self):
        self.client = logs_client(self.region, attempts=1)  # watchtower retries a batch itself
        self.client.meta.events.register(f"before-parameter-build.{PUT_LOG_EVENTS}", self.before_put)
        self.client.meta.events.register(f"after-call.{PUT_LOG_EVENTS}", self.after_put)
        self.client.meta.events.register(f"after-call-error.{PUT_LOG_EVENTS}", self.put_failed)
        self.create_destination()
        return self.client

    def create_destination(self) -> None:
        try:
            create_destination(self.client, self.group, stream_name(self.prefix))
        except Exception as error:  # PutLogEvents then fails as well, and tries again
            self.failed(error_code(error), "creating the log stream")

    def before_put(self, params: dict, **_) -> None:
        """A new batch means watchtower gave up on the one before, after its retries."""
        previous, self.batch = self.batch, params["logEvents"]
        if previous is not None and previous is not self.batch:
            self.backlog.settle(0, len(previous))

    def after_put(self, http_response, parsed: dict, **_) -> None:
        """Accepted (some refused as too old or too new), or failed with an AWS error."""
        if http_response.status_code >= 300:
            code = parsed.get("Error", {}).get("Code") or f"HTTP {http_response.status_code}"
            self.failed(code, "PutLogEvents")
            if code == "ResourceNotFoundException":  # deleted under us: watchtower's next attempt lands
                self.create_destination()
            return
        batch, self.batch = self.batch or [], None
        rejected = rejected_count(parsed.get("rejectedLogEventsInfo"), len(batch))
        self.backlog.settle(len(batch) - rejected, rejected)

    def put_failed(self, exception: BaseException, **_) -> None:
        """No answer (refused, timed out): watchtower tries the batch again."""
        self.failed(type(exception).__name__, "PutLogEvents")

    def failed(self, kind: str, call: str) -> None:
        self.backlog.status.record_error(kind)
        self.backlog.warning.warn("CloudWatch Logs: %s for %s failed (%s)", call, self.group, kind)


class CloudWatchQueueHandler(ShippingHandler, logging.handlers.QueueHandler):
    """The root logger's handler: formats on the caller's thread, queues without blocking."""

    def __init__(self, cloudwatch: logging.Handler, deliveries: Deliveries):
        logging.handlers.QueueHandler.__init__(self, queue.Queue())  # bounded by the Backlog
        self.setup(deliveries.backlog)
        self.cloudwatch, self.deliveries = cloudwatch, deliveries
        self.listener = logging.handlers.QueueListener(self.queue, cloudwatch)
        self.listener.start()

    def enqueue(self, record: logging.LogRecord) -> None:
        if self.backlog.admit():
            self.queue.put_nowait(record)

    def send_now(self) -> bool:
        self.queue.join()  # the listener has handed everything to watchtower
        self.cloudwatch.flush()  # watchtower sends its batch and waits for the answer
        return self.deliveries.batch is None  # False: watchtower gave up on the last batch

    def drain(self) -> None:
        self.listener.stop()  # hands over everything queued, then ends
        self.cloudwatch.close()  # watchtower sends the rest and stops


def rejected_count(info: dict | None, total: int) -> int:
    """How many events of a batch PutLogEvents refused (its indexes mark the refused ends)."""
    info = info or {}
    too_old = max(info.get("tooOldLogEventEndIndex", -1), info.get("expiredLogEventEndIndex", -1)) + 1
    too_new = total - info["tooNewLogEventStartIndex"] if "tooNewLogEventStartIndex" in info else 0
    return min(total, too_old + too_new)
