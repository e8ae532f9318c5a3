"""CloudWatch Logs over OTLP (CRUDDUR_CLOUDWATCH_TRANSPORT=otlp): the same log lines as OTLP log records.

Each JSON log line becomes one OTLP log record: `message` is the body, the level sets the severity,
the trace and span ids fill the record's own trace fields, and every other field of the line is an
attribute (so Logs Insights queries on `status`, `path`, `trace_id`... keep working). Records go to
`<AWS_ENDPOINT_URL_CLOUDWATCH_LOGS or https://logs.<region>.amazonaws.com>/v1/logs`, SigV4-signed
for the service `logs`, with `x-aws-log-group: $CLOUDWATCH_LOG_GROUP` and one `x-aws-log-stream`
per worker, `<service>/<host>/<pid>`, as with the API transport. The endpoint only writes to an
existing group and stream: the sender creates both with the CloudWatch Logs API (CreateLogGroup,
which a role may be denied if the group is provisioned, and CreateLogStream) before its first batch,
and again if the endpoint says they are gone.

The request thread formats the line (the trace ids are only there) and appends it to a bounded
queue; one sender thread per worker encodes and sends batches (delivery.BoundedSender), and the
shutdown flush delivers what is queued within its share of the budget. Records the endpoint
rejects in a `partialSuccess` are counted as dropped.
"""

from __future__ import annotations

import json
import logging
import os
import socket

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from flask import Flask
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber

from ...config import Config
from ...logs import JsonFormatter, LibraryRecordFilter, TraceContextFilter
from .. import disabled
from ..core.delivery import BoundedSender, RetryLater, retry_after_seconds
from ..core.shutdown import on_shutdown
from ..core.status import IntegrationStatus, announce, register
from ..otel.aws import LOGS_SIGNING_NAME, quiet_signature_logging, resolve, signed_session

log = logging.getLogger(__name__)
NAME = "cloudwatch"
LOGS_PATH = "/v1/logs"
QUEUE_CAPACITY = 10_000  # records per worker, as the API transport
MAX_BATCH = 1_000
SEND_INTERVAL_SECONDS = 5.0
TIMEOUT = (2.0, 5.0)  # connect, read: a blackholed endpoint holds the sender for seconds, not minutes
# Loggers whose records are never shipped: the HTTP stack and botocore log while we send (a loop
# that feeds itself), and this module's warnings are about the endpoint being unreachable.
EXCLUDED_LOGGERS = ("botocore", "boto3", "urllib3", "requests", __name__)
SEVERITY = {
    logging.DEBUG: SeverityNumber.SEVERITY_NUMBER_DEBUG,
    logging.INFO: SeverityNumber.SEVERITY_NUMBER_INFO,
    logging.WARNING: SeverityNumber.SEVERITY_NUMBER_WARN,
    logging.ERROR: SeverityNumber.SEVERITY_NUMBER_ERROR,
    logging.CRITICAL: SeverityNumber.SEVERITY_NUMBER_FATAL,
}
# Fields that have their own place in an OTLP log record.
_BODY_FIELD = "message"
# Creating the destination: fail fast (a blackholed endpoint must not hold the sender for minutes).
BOTO_CONFIG = BotoConfig(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 2})
# Answers to CreateLogGroup/CreateLogStream that mean "go on": it exists, someone is creating it,
# or (groups only) this role may write to the group but not create it.
_EXISTS = {"ResourceAlreadyExistsException", "OperationAbortedException"}


class DeliveryError(Exception):
    """The endpoint answered with an error status (the type AWS names, never the body)."""


def _severity(levelno: int) -> int:
    if levelno in SEVERITY:
        return SEVERITY[levelno]
    below = [level for level in SEVERITY if level <= levelno]
    return SEVERITY[max(below)] if below else SeverityNumber.SEVERITY_NUMBER_TRACE


def _set_any(target: AnyValue, value) -> None:
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int) and -(1 << 63) <= value < (1 << 63):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, list | tuple):
        target.array_value.SetInParent()
        for item in value:
            _set_any(target.array_value.values.add(), item)
    elif isinstance(value, dict):
        target.kvlist_value.SetInParent()
        for key, item in value.items():
            pair = target.kvlist_value.values.add(key=str(key))
            _set_any(pair.value, item)
    elif value is not None:
        target.string_value = str(value)


def _id_bytes(value, length: int) -> bytes:
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        return b""
    return raw if len(raw) == length and any(raw) else b""


def encode(records: list[tuple[int, int, str, dict]], resource: dict[str, str]) -> bytes:
    """An ExportLogsServiceRequest for queued `(time_ns, levelno, levelname, fields)` records."""
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    for key, value in resource.items():
        _set_any(resource_logs.resource.attributes.add(key=key).value, value)
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name = "cruddur"
    for time_ns, levelno, levelname, fields in records:
        record = scope_logs.log_records.add()
        record.time_unix_nano = record.observed_time_unix_nano = time_ns
        record.severity_number = _severity(levelno)
        record.severity_text = levelname
        record.trace_id = _id_bytes(fields.get("trace_id"), 16)
        record.span_id = _id_bytes(fields.get("span_id"), 8)
        _set_any(record.body, fields.get(_BODY_FIELD, ""))
        for key, value in fields.items():
            if key != _BODY_FIELD and value is not None:
                _set_any(record.attributes.add(key=key).value, value)
    return request.SerializeToString()


def _error_type(response) -> str:
    """The error AWS names in `x-amzn-ErrorType` (`Type:detail`), never the body."""
    return response.headers.get("x-amzn-ErrorType", "").split(":")[0]


def _not_excluded(record: logging.LogRecord) -> bool:
    name = record.name
    return not any(name == prefix or name.startswith(prefix + ".") for prefix in EXCLUDED_LOGGERS)


class OTLPLogSender:
    """Sends batches of formatted records to the OTLP logs endpoint; one stream per worker process."""

    def __init__(self, url: str, region: str, log_group: str, stream_prefix: str, resource: dict[str, str]):
        self.url = url
        self.region = region
        self.log_group = log_group
        self.stream_prefix = stream_prefix
        self.resource = resource
        self.session = signed_session(LOGS_SIGNING_NAME, region)
        self._ready_stream = ""  # the stream created for this process (a forked worker makes its own)
        self._client = None

    def prepare(self) -> None:
        """Build the Logs client, create the stream and resolve credentials now, while the worker starts.

        Building a boto3 client loads botocore's service model (tens of milliseconds holding the
        GIL); done under load, at the first batch, a request waiting on this worker would feel it.
        """
        self._create_destination(self.stream)
        self.session.auth.credentials()

    def _create_destination(self, stream: str) -> None:
        """CreateLogGroup (existing or not ours to create is fine), then CreateLogStream."""
        if self._client is None:
            self._client = boto3.session.Session(region_name=self.region).client("logs", config=BOTO_CONFIG)
        try:
            self._client.create_log_group(logGroupName=self.log_group)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in _EXISTS | {"AccessDeniedException"}:
                raise
        try:
            self._client.create_log_stream(logGroupName=self.log_group, logStreamName=stream)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in _EXISTS:
                raise
        self._ready_stream = stream

    @property
    def stream(self) -> str:
        """This worker's stream (the pid is read when sending: each forked worker has its own)."""
        hostname = socket.gethostname().replace(":", "_").replace("*", "_")  # not allowed in stream names
        return f"{self.stream_prefix}/{hostname}/{os.getpid()}"

    def __call__(self, records: list) -> int:
        """POST one batch; return how many records the endpoint rejected. Raises on failure."""
        stream = self.stream
        if self._ready_stream != stream:
            self._create_destination(stream)
        headers = {
            "Content-Type": "application/x-protobuf",
            "x-aws-log-group": self.log_group,
            "x-aws-log-stream": stream,
        }
        body = encode(records, self.resource)
        response = self.session.post(self.url, data=body, headers=headers, timeout=TIMEOUT)
        if response.status_code == 400 and _error_type(response) == "ResourceNotFoundException":
            self._create_destination(stream)  # the group or stream was deleted under us
            response = self.session.post(self.url, data=body, headers=headers, timeout=TIMEOUT)
        if response.status_code in (429, 503):
            raise RetryLater(retry_after_seconds(response.headers.get("Retry-After")), f"HTTP {response.status_code}")
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"HTTP {response.status_code} {_error_type(response)}".strip())
        try:
            answer = ExportLogsServiceResponse.FromString(response.content)
        except Exception:  # an empty or non-protobuf 2xx body: nothing was reported rejected
            return 0
        return int(answer.partial_success.rejected_log_records)


class OTLPLogHandler(logging.Handler):
    """Formats each record on the caller's thread and queues it; never blocks, never raises."""

    def __init__(self, sender: BoundedSender, status: IntegrationStatus):
        super().__init__()
        self.sender = sender
        self.status = status
        self.setFormatter(JsonFormatter())
        self.addFilter(_not_excluded)
        self.addFilter(LibraryRecordFilter())  # the same library lines as stdout, rate-limited and bounded
        self.addFilter(TraceContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        """Queue `(time, level, fields of the JSON line)`."""
        if self.sender.on_sender_thread():
            return  # whatever logs while sending (credential providers...) would feed itself
        try:
            fields = json.loads(self.format(record))
            self.sender.submit((int(record.created * 1e9), record.levelno, record.levelname, fields))
        except Exception as error:
            self.status.record_error(error)


def init_app(app: Flask) -> bool:
    """Ship every log line to CLOUDWATCH_LOG_GROUP over OTLP when it is set. Returns whether it is on."""
    config: Config = app.extensions["cruddur.config"]
    group = config.cloudwatch_log_group
    endpoint, region, why_not = resolve("logs", config.aws_region) if group else ("", "", "")
    if not endpoint:
        reason = f"CLOUDWATCH_LOG_GROUP is set, but {why_not}" if group else "CLOUDWATCH_LOG_GROUP is not set"
        return disabled(app, NAME, reason, log)

    status = IntegrationStatus(NAME, True, f"OTLP log records to log group {group} in {region}, one stream per worker")
    quiet_signature_logging()
    resource = {
        "service.name": config.service_name,
        "service.version": config.code_version,
        "deployment.environment.name": config.env,
    }
    send = OTLPLogSender(endpoint + LOGS_PATH, region, group, config.service_name, resource)
    sender = BoundedSender(
        "cloudwatch-otlp",
        send,
        status,
        log,
        max_queue=QUEUE_CAPACITY,
        max_batch=MAX_BATCH,
        linger=SEND_INTERVAL_SECONDS,
        on_start=send.prepare,
    )
    handler = OTLPLogHandler(sender, status)
    logging.getLogger().addHandler(handler)
    app.extensions["cruddur.cloudwatch"] = handler
    # Priority 90: logs go last, so the other integrations' shutdown lines are shipped too.
    on_shutdown(app, priority=90, name=NAME, flush=sender.flush)
    register(app, status)
    return announce(log, status)
