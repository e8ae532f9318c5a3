"""CloudWatch Logs: the same JSON log lines as stdout, shipped by watchtower when CLOUDWATCH_LOG_GROUP is set.

watchtower 3.4 as shipped does not fit a web worker: its constructor builds the boto3 client (which
resolves credentials, possibly from instance metadata) and describes/creates the log group, so an
unreachable endpoint blocks or breaks startup; its per-stream queue is unbounded; a failed batch is
retried five times back to back, each failure reported through `warnings`; and `close()` waits up to
30 s per queue; and its sender wakes up for every log event. The subclass below keeps watchtower's
handler, formatting and batch limits (size, count, interval, FLUSH/END sentinels) and replaces exactly
those parts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import threading
import time
from operator import itemgetter

import boto3
import watchtower
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from flask import Flask
from opentelemetry.instrumentation.utils import suppress_instrumentation

from ..config import Config
from ..logs import JsonFormatter, LibraryRecordFilter, TraceContextFilter
from .shutdown import on_shutdown
from .status import IntegrationStatus, RateLimitedWarning, announce, register

log = logging.getLogger(__name__)
NAME = "cloudwatch"

# Events waiting to be sent, per worker; beyond this, new events are dropped and counted. At
# ~500 bytes a line that is ~5 MB, and an outage then costs memory once, not per request.
QUEUE_CAPACITY = 10_000
# PutLogEvents limits: 10,000 events and 1,048,576 bytes (UTF-8 messages + 26 bytes each) per call.
MAX_BATCH_COUNT = 10_000
MAX_BATCH_BYTES = 1_048_576
SEND_INTERVAL_SECONDS = 5
# botocore's defaults (60 s connect and read timeouts, several retries) would hold the sender for
# minutes per batch on a blackholed endpoint while the queue fills; fail fast and drop instead.
BOTO_CONFIG = BotoConfig(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 2})
# logging.shutdown() calls flush() and close() on every handler at interpreter exit; when the app's
# own shutdown flush did not run first, these bound how long that may take.
FLUSH_TIMEOUT_SECONDS = 5.0
CLOSE_TIMEOUT_SECONDS = 2.0

# Records of these loggers are never shipped: the SDK and HTTP stack log while we send (a loop that
# feeds itself), and this module's warnings are about CloudWatch being unreachable (stdout only).
EXCLUDED_LOGGERS = ("watchtower", "botocore", "boto3", "urllib3", "s3transfer", __name__)
# create_log_* answers that mean "go on": it exists, someone else is creating it, or the role may
# write to the group but not create it (then create_log_stream or put says whether it exists).
_CREATE_OK = {"ResourceAlreadyExistsException", "OperationAbortedException"}


def _not_aws_sdk(record: logging.LogRecord) -> bool:
    """Handler filter: keep the record unless an excluded logger (or a child of one) wrote it."""
    name = record.name
    return not any(name == prefix or name.startswith(prefix + ".") for prefix in EXCLUDED_LOGGERS)


def _error_code(error: BaseException) -> str:
    return error.response.get("Error", {}).get("Code", "") if isinstance(error, ClientError) else ""


class BoundedCloudWatchHandler(watchtower.CloudWatchLogHandler):
    """watchtower's handler with a bounded, counted queue and all network I/O on its sender thread."""

    def __init__(
        self,
        log_group: str,
        stream_prefix: str,
        status: IntegrationStatus,
        capacity: int = QUEUE_CAPACITY,
        region: str | None = None,
    ):
        self.status = status
        self.capacity = capacity
        self.stream_prefix = stream_prefix
        self._warning = RateLimitedWarning(log)
        super().__init__(
            log_group_name=log_group,
            send_interval=SEND_INTERVAL_SECONDS,
            max_batch_size=MAX_BATCH_BYTES,
            max_batch_count=MAX_BATCH_COUNT,
            # Not a client: a factory, called on the sender thread (see `cwl_client`).
            boto3_client=lambda: boto3.session.Session(region_name=region).client("logs", config=BOTO_CONFIG),
            create_log_group=False,  # done by the sender thread before its first batch
        )
        self.setFormatter(JsonFormatter())
        self.addFilter(_not_aws_sdk)
        self.addFilter(LibraryRecordFilter())
        self.addFilter(TraceContextFilter())
        status.set_queue_probe(self.queued)

    # watchtower's __init__ assigns `cwl_client`; we keep the factory and build the client on first use,
    # which happens on the sender thread, so credential resolution never runs on the startup path.
    @property
    def cwl_client(self):
        """The boto3 CloudWatch Logs client (built on first use)."""
        if self._client is None:
            self._client = self._make_client()
        return self._client

    @cwl_client.setter
    def cwl_client(self, factory) -> None:
        self._make_client, self._client = factory, None

    def _init_state(self) -> None:
        # Also runs in a forked child (`_at_fork_reinit`): the parent's queue and thread are not ours.
        super()._init_state()
        self._queue: queue.Queue | None = None
        self._client = None  # a boto3 client's connection pool must not cross a fork either
        self._sender_ident: int | None = None
        self._stream_ready = False
        # Every accepted event is settled exactly once: sent, rejected or failed by the sender, or
        # written off by shutdown() when its time is up (the lock decides who counts a late batch).
        self._accepted = 0
        self._settled = 0
        self._settle_lock = threading.Lock()
        self._gave_up = False
        self._failed_late = threading.Event()  # a send failed after shutdown() began
        self._wake = threading.Event()  # the sender sleeps on this, not on the queue (see _dequeue_batch)

    def queued(self) -> int:
        """Events waiting to be sent."""
        return self._queue.qsize() if self._queue is not None else 0

    def emit(self, record: logging.LogRecord) -> None:
        """Format on the caller's thread (trace ids are there) and enqueue; never blocks, never raises."""
        if threading.get_ident() == self._sender_ident:
            return  # whatever logs on the sender thread (credential providers...) would feed itself
        try:
            if self.shutting_down:
                self.status.record_dropped()
                return
            event = {"timestamp": int(record.created * 1000), "message": self.format(record)}
            if self._size(event) > self.max_message_size:
                event = self._truncate(event, self.max_message_size - self.EXTRA_MSG_PAYLOAD_SIZE)
            if self._queue is None:
                self._start_sender()
            self._queue.put_nowait(event)
            self._accepted += 1  # under the handler lock
            if self._queue.unfinished_tasks >= self._wake_at and not self._wake.is_set():
                self._wake.set()  # a full batch is waiting: send it before the interval is up
        except queue.Full:
            self.status.record_dropped()
            self._warning.warn("CloudWatch Logs queue is full (%d events): dropping log events", self.capacity)
        except Exception as error:
            self.status.record_error(error)
            self._warning.warn("CloudWatch Logs handler failed (%s: %s)", type(error).__name__, error)

    def _start_sender(self) -> None:
        # Called under the handler lock, in the process that logs (each gunicorn worker has its own).
        self._queue = queue.Queue(maxsize=self.capacity)
        hostname = socket.gethostname().replace(":", "_").replace("*", "_")  # not allowed in stream names
        stream = f"{self.stream_prefix}/{hostname}/{os.getpid()}"
        thread = threading.Thread(target=self._send_loop, args=(self._queue, stream), name="cloudwatch-logs")
        thread.daemon = True  # a blackholed endpoint must not keep the process alive; shutdown() flushes
        self.threads.append(thread)
        thread.start()

    def _send_loop(self, events: queue.Queue, stream: str) -> None:
        self._sender_ident = threading.get_ident()
        # Our own HTTP calls are not application spans, whatever instrumentation is installed.
        with suppress_instrumentation():
            self._prepare(stream)
            self._dequeue_batch(events, stream, self.send_interval, self.max_batch_size, self.max_batch_count)

    def _prepare(self, stream: str) -> None:
        """Build the client and the destination now, while the worker starts, not under its first load.

        Building a boto3 client loads botocore's service model: ~60 ms holding the GIL, which a
        request waiting on this worker would feel. Failures here are retried by the first batch.
        """
        try:
            self._create_destination(stream)
        except Exception as error:
            self._warning.warn(
                "CloudWatch Logs: %s not ready yet (%s); retrying with the first batch",
                self.log_group_name,
                type(error).__name__,
            )

    @property
    def _wake_at(self) -> int:
        return min(self.max_batch_count, self.capacity // 2)

    def _dequeue_batch(self, my_queue, stream_name, send_interval, max_batch_size, max_batch_count) -> None:
        """watchtower's batching (count, size and interval limits; FLUSH and END), waking once per batch.

        watchtower blocks in `queue.get` for every event, so every log line woke this thread, which
        then contended for the GIL with the request that logged it (a fifth of the worker's samples
        with every integration on: docs/performance.md). This thread sleeps until the interval is
        up, a batch is full, or flush/shutdown wakes it, then takes everything that is queued.
        """
        batch: list[dict] = []
        batch_size = 0
        deadline = time.monotonic() + send_interval
        while True:
            self._wake.wait(max(0.0, deadline - time.monotonic()))
            self._wake.clear()
            while True:
                try:
                    msg = my_queue.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(msg, dict):  # FLUSH or END: send now (task_done after the send)
                    self._submit_batch(batch, stream_name)
                    batch, batch_size = [], 0
                    deadline = time.monotonic() + send_interval
                    my_queue.task_done()
                    if msg == self.END:
                        return
                    continue
                size = self._size(msg)
                if batch and (batch_size + size > max_batch_size or len(batch) >= max_batch_count):
                    self._submit_batch(batch, stream_name)
                    batch, batch_size = [], 0
                batch.append(msg)
                batch_size += size
                my_queue.task_done()
            if time.monotonic() >= deadline:
                self._submit_batch(batch, stream_name)
                batch, batch_size = [], 0
                deadline = time.monotonic() + send_interval

    def _truncate(self, msg: dict, max_size: int) -> dict:
        # watchtower warns per event through `warnings`; cutting the line is enough.
        msg["message"] = msg["message"].encode("utf-8")[:max_size].decode("utf-8", "ignore")
        return msg

    def _submit_batch(self, batch: list, log_stream_name: str, max_retries: int = 1) -> None:
        """Send one batch (botocore retries once); on failure count it as dropped. Never raises."""
        if not batch:
            return
        batch.sort(key=itemgetter("timestamp"))  # PutLogEvents wants chronological order
        try:
            if not self._stream_ready:
                self._create_destination(log_stream_name)
            try:
                response = self._put(batch, log_stream_name)
            except ClientError as error:
                if _error_code(error) != "ResourceNotFoundException":
                    raise
                self._create_destination(log_stream_name)  # the group or stream was deleted under us
                response = self._put(batch, log_stream_name)
        except Exception as error:
            self.status.record_error(error)
            self._settle(sent=0, dropped=len(batch))
            if self.shutting_down:
                self._failed_late.set()
            self._warning.warn(
                "CloudWatch Logs: could not deliver %d log events to %s (%s: %s)",
                len(batch),
                self.log_group_name,
                type(error).__name__,
                str(error)[:300],
            )
            return
        rejected = _rejected_count(response.get("rejectedLogEventsInfo"), len(batch))
        self._settle(sent=len(batch) - rejected, dropped=rejected)
        if rejected:
            self._warning.warn("CloudWatch Logs rejected %d log events (too old or too new)", rejected)

    def _settle(self, sent: int, dropped: int) -> None:
        with self._settle_lock:
            if self._gave_up:  # shutdown() already counted this batch as lost
                return
            self._settled += sent + dropped
        self.status.record_sent(sent)
        self.status.record_dropped(dropped)

    def _put(self, batch: list, stream: str) -> dict:
        # No sequenceToken: CloudWatch has ignored it since 2023.
        return self.cwl_client.put_log_events(logGroupName=self.log_group_name, logStreamName=stream, logEvents=batch)

    def _create_destination(self, stream: str) -> None:
        """Create the group (if this role may) and this worker's stream; existing ones are fine."""
        try:
            self.cwl_client.create_log_group(logGroupName=self.log_group_name)
        except ClientError as error:
            # AccessDenied: a role allowed to write but not to create groups; the stream call decides.
            if _error_code(error) not in _CREATE_OK | {"AccessDeniedException"}:
                raise
        try:
            self.cwl_client.create_log_stream(logGroupName=self.log_group_name, logStreamName=stream)
        except ClientError as error:
            if _error_code(error) not in _CREATE_OK:
                raise
        self._stream_ready = True

    def flush(self, timeout: float = FLUSH_TIMEOUT_SECONDS) -> bool:
        """Send what is queued now; wait at most `timeout` seconds. Returns whether it all went out."""
        events = self._queue
        if events is None or self.shutting_down:
            return True
        deadline = time.monotonic() + timeout
        self._wake.set()  # a full queue has room again once the sender runs
        try:
            events.put(self.FLUSH, timeout=timeout)
        except queue.Full:
            return False
        self._wake.set()
        with events.all_tasks_done:
            return events.all_tasks_done.wait_for(
                lambda: events.unfinished_tasks == 0, timeout=max(0.0, deadline - time.monotonic())
            )

    def shutdown(self, timeout: float) -> None:
        """Deliver what is queued within `timeout` seconds, then stop; what is left is counted as dropped."""
        with self.lock:  # emit() holds this lock: from here on nothing new is queued
            if self.shutting_down:
                return
            self.shutting_down = True
            events = self._queue
        if events is None:
            return
        deadline = time.monotonic() + timeout
        self._wake.set()
        with contextlib.suppress(queue.Full):  # full and stuck: nothing more gets out anyway
            events.put(self.END, timeout=timeout)  # the sender sends the rest, then ends
        self._wake.set()
        # A send failing now means CloudWatch is down: the remaining batches would only use up the
        # worker's graceful-stop time, so stop waiting.
        while events.unfinished_tasks and not self._failed_late.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._settle_lock:
            self._gave_up = True
            left = self._accepted - self._settled
        if left:
            self.status.record_dropped(left)
            log.warning("CloudWatch Logs: gave up on %d queued log events after %.1f s", left, timeout)

    def close(self) -> None:
        """Bounded shutdown (watchtower's close waits up to 30 s per queue), then detach."""
        self.shutdown(CLOSE_TIMEOUT_SECONDS)
        logging.Handler.close(self)


def _rejected_count(info: dict | None, total: int) -> int:
    """How many events of a batch PutLogEvents refused (its indexes mark the refused ends)."""
    if not info:
        return 0
    too_old = max(info.get("tooOldLogEventEndIndex", -1), info.get("expiredLogEventEndIndex", -1)) + 1
    too_new = total - info["tooNewLogEventStartIndex"] if "tooNewLogEventStartIndex" in info else 0
    return min(total, too_old + too_new)


def init_app(app: Flask) -> bool:
    """Ship every log line to CLOUDWATCH_LOG_GROUP when it is set. Returns whether it is on."""
    config: Config = app.extensions["cruddur.config"]
    group = config.cloudwatch_log_group
    # boto3's own resolution (AWS_DEFAULT_REGION, config files; no network), then AWS_REGION.
    region = (boto3.session.Session().region_name or config.aws_region) if group else None
    if not group:
        status = IntegrationStatus(NAME, False, "CLOUDWATCH_LOG_GROUP is not set")
    elif not region:
        status = IntegrationStatus(NAME, False, "CLOUDWATCH_LOG_GROUP is set but boto3 finds no region")
    else:
        status = IntegrationStatus(NAME, True, f"log group {group} in {region}, one stream per worker")
    register(app, status)
    if not status.enabled:
        return announce(log, status)

    handler = BoundedCloudWatchHandler(group, config.service_name, status, region=region)
    logging.getLogger().addHandler(handler)
    app.extensions["cruddur.cloudwatch"] = handler
    # Priority 90: logs go last, so the other integrations' shutdown lines are shipped too.
    on_shutdown(app, priority=90, name=NAME, flush=handler.shutdown)
    return announce(log, status)
