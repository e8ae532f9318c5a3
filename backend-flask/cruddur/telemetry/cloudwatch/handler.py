"""The CloudWatch Logs handler: watchtower's, with a bounded queue and all network I/O on its sender thread.

Imported by telemetry/cloudwatch.py only when CLOUDWATCH_LOG_GROUP is set (boto3 and watchtower
take half a second to import). watchtower does the work: its sender thread batches by count, size and interval (its
`_dequeue_batch`), and its `_submit_batch` sorts a batch, calls PutLogEvents and creates this
worker's log stream when CloudWatch says it is missing. Its constructor options set the limits
(`send_interval`, `max_batch_count`, `max_batch_size`), hand it a client (`boto3_client`) and keep
the network out of the constructor (`create_log_group=False`; the group and stream are created on
the sender thread instead, and `log_group_retention_days` is left unset because it too calls AWS
there).

What its options cannot say, and so what this module adds (each pinned by tests/test_cloudwatch.py;
WATCHTOWER_INTERNALS lists the watchtower names they rely on):

- `_LazyClient`: the client is built on first use, on the sender thread. Building one loads
  botocore's service model (~60 ms holding the GIL) and resolves credentials, which may ask the
  instance metadata service: not on the startup path.
- `_BatchQueue`, given to watchtower's sender in place of its unbounded `queue.Queue`: bounded
  (full means dropped and counted), and it wakes the sender only for a full batch or a FLUSH/END
  marker. watchtower's sender otherwise wakes for every record and competes for the GIL with the
  request that logged it; without the wake-up it still collects everything queued when its
  interval is up, so a line leaves within two intervals.
- `emit`: starts that queue and watchtower's sender for this process's one stream on the first
  record, and counts records that arrive after shutdown.
- `_submit_batch`: one attempt instead of five back to back (botocore retries once), and every
  event counted once as sent or dropped.
- `handleError`: watchtower's emit routes its own errors here; they are counted, never printed.
- `flush(timeout)`: watchtower's waits a fixed 30 s and says nothing; this one is bounded and says
  whether everything went out. `shutdown(timeout)` is the bounded `close()`, counting what is left.
"""

from __future__ import annotations

import logging
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable

import boto3
import watchtower
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from opentelemetry.instrumentation.utils import suppress_instrumentation

from ...logs import prepare
from ..core.log_limits import RateLimitedWarning
from ..core.status import IntegrationStatus

# The integration's logger: what operators filter on, and never shipped itself (EXCLUDED_LOGGERS).
log = logging.getLogger("cruddur.telemetry.cloudwatch")

# Events waiting to be sent, per worker; beyond this, new events are dropped and counted. At
# ~500 bytes a line that is ~5 MB, and an outage then costs memory once, not per request.
QUEUE_CAPACITY = 10_000
# PutLogEvents limits: 10,000 events and 1,048,576 bytes (UTF-8 messages + 26 bytes each) per call.
MAX_BATCH_COUNT = 10_000
MAX_BATCH_BYTES = 1_048_576
SEND_INTERVAL_SECONDS = 2.5  # a line leaves within two intervals (see _BatchQueue)
# watchtower attempts per batch. One: botocore already retries once, and watchtower's five back to
# back would hold the sender for a minute per batch on a blackholed endpoint. (A stream deleted
# under us is recreated by watchtower when that attempt fails; the batch is counted as dropped.)
SUBMIT_ATTEMPTS = 1
# botocore's defaults (60 s connect and read timeouts, several retries) would hold the sender for
# minutes per batch on a blackholed endpoint while the queue fills; fail fast and drop instead.
BOTO_CONFIG = BotoConfig(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 2})
# flush() when no timeout is given (logging.shutdown() calls it at interpreter exit).
FLUSH_TIMEOUT_SECONDS = 5.0

# watchtower names that are not constructor options, and why this module relies on them; each is
# checked by tests/test_cloudwatch.py against the installed watchtower.
WATCHTOWER_INTERNALS = {
    "CloudWatchLogHandler.queues": "one queue per stream name; ours is put there before watchtower's emit looks",
    "CloudWatchLogHandler.threads": "the sender threads, where watchtower keeps its own",
    "CloudWatchLogHandler.shutting_down": "set by shutdown(); watchtower's emit, flush and close respect it",
    "CloudWatchLogHandler.creating_log_stream": "watchtower drops records while it is set; emit counts them",
    "CloudWatchLogHandler.FLUSH / END": "the markers its sender understands",
    "CloudWatchLogHandler.FLUSH_TIMEOUT": "how long its close() waits per queue",
    "CloudWatchLogHandler._get_stream_name(record)": "the stream name watchtower will look up in `queues`",
    "CloudWatchLogHandler._dequeue_batch(queue, stream, interval, size, count)": "its batching sender loop",
    "CloudWatchLogHandler._submit_batch(batch, stream, max_retries)": "its send: sort, put, create a missing stream",
}

# Records of these loggers are never shipped: the SDK and HTTP stack log while we send (a loop that
# feeds itself), and this module's warnings are about CloudWatch being unreachable (stdout only).
EXCLUDED_LOGGERS = ("watchtower", "botocore", "boto3", "urllib3", "s3transfer", log.name)
# create_log_* answers that mean "go on": it exists, someone else is creating it, or the role may
# write to the group but not create it (then the first put says whether it exists).
_CREATE_OK = {"ResourceAlreadyExistsException", "OperationAbortedException", "AccessDeniedException"}


def _not_aws_sdk(record: logging.LogRecord) -> bool:
    """Handler filter: keep the record unless an excluded logger (or a child of one) wrote it."""
    name = record.name
    return not any(name == prefix or name.startswith(prefix + ".") for prefix in EXCLUDED_LOGGERS)


def _error_code(error: BaseException) -> str:
    return error.response.get("Error", {}).get("Code", "") if isinstance(error, ClientError) else ""


class _LazyClient:
    """A CloudWatch Logs client built on first use, remembering the outcome of its last PutLogEvents."""

    def __init__(self, region: str | None):
        self._region = region
        self._client = None
        self._lock = threading.Lock()
        self.last_response: dict | None = None
        self.last_error: BaseException | None = None

    def _real(self):
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = boto3.session.Session(region_name=self._region).client("logs", config=BOTO_CONFIG)
        return self._client

    def __getattr__(self, name: str):
        return getattr(self._real(), name)

    def put_log_events(self, **kwargs) -> dict:
        """PutLogEvents, keeping its answer or error for the caller that cannot see them (watchtower)."""
        try:
            self.last_response = self._real().put_log_events(**kwargs)
        except Exception as error:
            self.last_error = error
            raise
        return self.last_response


class _BatchQueue(queue.Queue):
    """watchtower's per-stream queue, bounded, waking its sender only when a batch is due.

    Records beyond `capacity` are refused and reported to `on_full` (watchtower ignores what
    `put` returns); FLUSH and END markers are always taken. It also keeps the books for shutdown:
    every accepted record is settled once, as sent or dropped by the sender, or written off by
    shutdown when its time is up.
    """

    def __init__(self, capacity: int, wake_at: int, on_full: Callable[[], None]):
        super().__init__()  # no maxsize: a marker must get in even when the queue is full of records
        self.capacity = capacity
        self.wake_at = wake_at
        self.on_full = on_full
        self.accepted = 0
        self.settled = 0
        self.gave_up = False
        self.failed_late = threading.Event()  # a send failed after shutdown began

    def put(self, item, block: bool = True, timeout: float | None = None) -> bool:
        """Queue without blocking; a record beyond `capacity` is refused (False) and reported."""
        record = isinstance(item, dict)
        with self.mutex:
            full = record and self._qsize() >= self.capacity
            if not full:
                self._put(item)
                self.unfinished_tasks += 1
                self.accepted += record
                if not record or self._qsize() >= self.wake_at:
                    self.not_empty.notify()
        if full:
            self.on_full()
        return not full

    def settle(self, count: int) -> bool:
        """Book `count` records as done; False when shutdown has already written them off."""
        with self.mutex:
            if self.gave_up:
                return False
            self.settled += count
            return True

    def give_up(self) -> int:
        """Stop the books; returns how many accepted records were never settled."""
        with self.mutex:
            self.gave_up = True
            return self.accepted - self.settled


class BoundedCloudWatchHandler(watchtower.CloudWatchLogHandler):
    """watchtower's handler with a bounded, counted queue and all network I/O on its sender thread."""

    # Used by watchtower's close() when the app's own shutdown did not run first (interpreter exit).
    FLUSH_TIMEOUT = 2

    def __init__(
        self,
        log_group: str,
        stream_prefix: str,
        status: IntegrationStatus,
        capacity: int = QUEUE_CAPACITY,
        region: str | None = None,
        send_interval: float = SEND_INTERVAL_SECONDS,
    ):
        self.status = status
        self.capacity = capacity
        self._warning = RateLimitedWarning(log)
        self._client = _LazyClient(region)
        hostname = socket.gethostname().replace(":", "_").replace("*", "_")  # not allowed in stream names
        super().__init__(
            log_group_name=log_group,
            log_stream_name=f"{stream_prefix}/{hostname}/{{process_id}}",  # one stream per worker
            send_interval=send_interval,
            max_batch_size=MAX_BATCH_BYTES,
            max_batch_count=MAX_BATCH_COUNT,
            boto3_client=self._client,
            create_log_group=False,  # on the sender thread instead (_send_loop)
        )
        prepare(self)
        self.addFilter(_not_aws_sdk)
        status.set_queue_probe(self.queued)

    def _events(self) -> _BatchQueue | None:
        # watchtower keeps one queue per stream name in `queues`; this handler has one stream.
        return next(iter(self.queues.values()), None)

    def queued(self) -> int:
        """Events waiting to be sent."""
        events = self._events()
        return events.qsize() if events is not None else 0

    def emit(self, record: logging.LogRecord) -> None:
        """watchtower's emit (format on the caller's thread, where the trace ids are, and queue); never blocks."""
        # watchtower drops these silently: after shutdown, and while its sender creates the stream.
        if self.shutting_down or self.creating_log_stream:
            self.status.record_dropped()
            return
        if not self.queues:
            self._start_sender(self._get_stream_name(record))
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        """Count what watchtower's emit could not queue (it routes every error here); never print."""
        error = sys.exc_info()[1]
        self.status.record_error(error or "emit failed")
        self._warning.warn("CloudWatch Logs handler failed (%s: %s)", type(error).__name__, error)

    def _full(self) -> None:
        self.status.record_dropped()
        self._warning.warn("CloudWatch Logs queue is full (%d events): dropping log events", self.capacity)

    def _start_sender(self, stream: str) -> None:
        # Under the handler lock, in the process that logs (each gunicorn worker has its own).
        events = _BatchQueue(self.capacity, min(self.max_batch_count, self.capacity // 2), self._full)
        self.queues[stream] = events
        thread = threading.Thread(target=self._send_loop, args=(events, stream), name="cloudwatch-logs")
        thread.daemon = True  # a blackholed endpoint must not keep the process alive; shutdown() flushes
        self.threads.append(thread)
        thread.start()

    def _send_loop(self, events: _BatchQueue, stream: str) -> None:
        # Our own HTTP calls are not application spans, whatever instrumentation is installed.
        with suppress_instrumentation():
            self._create_destination(stream)
            self._dequeue_batch(events, stream, self.send_interval, self.max_batch_size, self.max_batch_count)

    def _create_destination(self, stream: str) -> None:
        """Create the group and this worker's stream while the worker starts; existing ones are fine.

        A failure here is left to the first batch (watchtower creates a missing stream then).
        """
        for call, names in (
            ("create_log_group", {"logGroupName": self.log_group_name}),
            ("create_log_stream", {"logGroupName": self.log_group_name, "logStreamName": stream}),
        ):
            try:
                getattr(self._client, call)(**names)
            except Exception as error:
                if _error_code(error) not in _CREATE_OK:
                    self._warning.warn(
                        "CloudWatch Logs: %s for %s failed (%s); the first batch tries again",
                        call,
                        self.log_group_name,
                        type(error).__name__,
                    )
                    return

    def _submit_batch(self, batch: list, log_stream_name: str, max_retries: int = SUBMIT_ATTEMPTS) -> None:
        """watchtower's send (it never raises), then count the batch as sent, rejected or dropped."""
        if not batch:
            return
        self._client.last_response = self._client.last_error = None
        super()._submit_batch(batch, log_stream_name, max_retries=SUBMIT_ATTEMPTS)
        response, error = self._client.last_response, self._client.last_error
        events = self.queues[log_stream_name]
        if response is not None:
            rejected = _rejected_count(response.get("rejectedLogEventsInfo"), len(batch))
            if events.settle(len(batch)):
                self.status.record_sent(len(batch) - rejected)
                self.status.record_dropped(rejected)
            if rejected:
                self._warning.warn("CloudWatch Logs rejected %d log events (too old or too new)", rejected)
            return
        if events.settle(len(batch)):
            self.status.record_error(error or "PutLogEvents failed")
            self.status.record_dropped(len(batch))
        if self.shutting_down:
            events.failed_late.set()
        self._warning.warn(
            "CloudWatch Logs: could not deliver %d log events to %s (%s: %s)",
            len(batch),
            self.log_group_name,
            type(error).__name__,
            str(error)[:300],
        )

    def flush(self, timeout: float = FLUSH_TIMEOUT_SECONDS) -> bool:
        """Send what is queued now; wait at most `timeout` seconds. Returns whether it all went out."""
        events = self._events()
        if events is None or self.shutting_down:
            return True
        events.put(self.FLUSH)
        with events.all_tasks_done:
            return events.all_tasks_done.wait_for(lambda: events.unfinished_tasks == 0, timeout=max(timeout, 0.0))

    def shutdown(self, timeout: float) -> None:
        """Deliver what is queued within `timeout` seconds, then stop; what is left is counted as dropped."""
        with self.lock:  # emit() runs under this lock: from here on nothing new is queued
            if self.shutting_down:
                return
            self.shutting_down = True
        events = self._events()
        if events is None:
            return
        deadline = time.monotonic() + timeout
        events.put(self.END)  # the sender sends the rest, then ends
        # A send failing now means CloudWatch is down: the remaining batches would only use up the
        # worker's graceful-stop time, so stop waiting.
        while events.unfinished_tasks and not events.failed_late.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = events.give_up()
        if left:
            self.status.record_dropped(left)
            log.warning("CloudWatch Logs: gave up on %d queued log events after %.1f s", left, timeout)


def _rejected_count(info: dict | None, total: int) -> int:
    """How many events of a batch PutLogEvents refused (its indexes mark the refused ends)."""
    if not info:
        return 0
    too_old = max(info.get("tooOldLogEventEndIndex", -1), info.get("expiredLogEventEndIndex", -1)) + 1
    too_new = total - info["tooNewLogEventStartIndex"] if "tooNewLogEventStartIndex" in info else 0
    return min(total, too_old + too_new)
