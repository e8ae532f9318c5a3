"""CloudWatch Logs over OTLP (CRUDDUR_CLOUDWATCH_TRANSPORT=otlp), with the OpenTelemetry logs SDK.

Each JSON log line becomes one log record: `message` is the body, the level the severity, every
other field an attribute (Logs Insights queries on `status`, `path`, `trace_id` keep working), the
current span's ids its trace fields. A `BatchLogRecordProcessor` sends them with the SDK's
`OTLPLogExporter` to `<endpoint>/v1/logs`, SigV4-signed for `logs`, with the headers
`x-aws-log-group` and `x-aws-log-stream` (`<service>/<host>/<pid>`). That endpoint writes only to
an existing group and stream: `CountingExporter` creates both with the Logs API before its first
batch, and again when they are gone. The Backlog bounds and counts as for the API transport.
"""

from __future__ import annotations

import json
import logging

from flask import Flask
from opentelemetry._logs import SeverityNumber
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from ...logs import prepare
from ..core.shutdown import on_shutdown
from ..core.status import IntegrationStatus, announce, register
from ..otel.aws import LOGS_SIGNING_NAME, quiet_signature_logging, resolve, signed_session
from . import NAME, Backlog, create_destination, shipped, stream_name, switched_off, within

log = logging.getLogger(__name__)
LOGS_PATH = "/v1/logs"
MAX_BATCH = 1_000
SEND_INTERVAL_SECONDS = 5.0
EXPORT_TIMEOUT_SECONDS = 5.0  # one export, retries included: a blackholed endpoint holds it for seconds
FLUSH_TIMEOUT_SECONDS = 2.0  # flush() and close() without a timeout (logging.shutdown() at exit)
SEVERITY = (  # the most severe first: a level between two takes the lower one
    (logging.CRITICAL, SeverityNumber.FATAL),
    (logging.ERROR, SeverityNumber.ERROR),
    (logging.WARNING, SeverityNumber.WARN),
    (logging.INFO, SeverityNumber.INFO),
    (logging.DEBUG, SeverityNumber.DEBUG),
)


def init_app(app: Flask) -> bool:
    """Ship every log line to CLOUDWATCH_LOG_GROUP over OTLP when it is set. Returns whether it is on."""
    config = app.extensions["cruddur.config"]
    group = config.cloudwatch_log_group
    if not group:
        return switched_off(app, "CLOUDWATCH_LOG_GROUP is not set", log)
    endpoint, region, why_not = resolve("logs", config.aws_region)
    if not endpoint:
        return switched_off(app, f"CLOUDWATCH_LOG_GROUP is set, but {why_not}", log)
    status = IntegrationStatus(NAME, True, f"OTLP log records to log group {group} in {region}, one stream per worker")
    register(app, status)

    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    quiet_signature_logging()
    backlog = Backlog(status, log)
    stream = stream_name(config.service_name)
    session = signed_session(LOGS_SIGNING_NAME, region)
    headers = {"x-aws-log-group": group, "x-aws-log-stream": stream}
    otlp = OTLPLogExporter(endpoint + LOGS_PATH, headers=headers, timeout=EXPORT_TIMEOUT_SECONDS, session=session)
    exporter = CountingExporter(otlp, session, backlog, (region, group, stream))
    # The Backlog admits at most `max_queue_size` records: the processor never drops one unseen.
    processor = BatchLogRecordProcessor(
        exporter, int(SEND_INTERVAL_SECONDS * 1000), max_export_batch_size=MAX_BATCH, max_queue_size=backlog.capacity
    )
    resource = {"service.name": config.service_name, "service.version": config.code_version}
    resource["deployment.environment.name"] = config.env
    provider = LoggerProvider(Resource.create(resource), shutdown_on_exit=False)  # our flush, bounded
    provider.add_log_record_processor(processor)
    handler = OTLPLogHandler(provider, backlog)
    logging.getLogger().addHandler(handler)
    app.extensions["cruddur.cloudwatch"] = handler
    # Priority 90: logs go last, so the other integrations' shutdown lines are shipped too.
    on_shutdown(app, priority=90, name=NAME, flush=handler.shutdown)
    return announce(log, status)


def severity(levelno: int) -> SeverityNumber:
    """The OpenTelemetry severity of a `logging` level."""
    return next((number for level, number in SEVERITY if levelno >= level), SeverityNumber.TRACE)


class OTLPLogHandler(logging.Handler):
    """Turns each JSON line into an SDK log record on the caller's thread; never blocks, never raises."""

    def __init__(self, provider, backlog: Backlog):
        super().__init__()
        self.provider = provider
        self.logger = provider.get_logger("cruddur")
        self.backlog = backlog
        self.addFilter(shipped)
        prepare(self)  # stdout's JSON line, trace ids and library rate limit
        self._stopped = False

    def emit(self, record: logging.LogRecord) -> None:
        """Emit the line's fields (the SDK takes the trace ids from the current span)."""
        if not is_instrumentation_enabled():
            return  # logged while the SDK exports: shipping it would feed itself
        try:
            fields = json.loads(self.format(record))
            body = fields.pop("message", "")
            attributes = {key: value for key, value in fields.items() if value is not None}
        except Exception:
            self.handleError(record)
            return
        if self.backlog.admit():
            self.logger.emit(
                timestamp=int(record.created * 1e9),
                severity_number=severity(record.levelno),
                severity_text=record.levelname,
                body=body,
                attributes=attributes,
            )

    def handleError(self, record: logging.LogRecord) -> None:
        """Count a record that could not be turned into a log record; never print."""
        self.backlog.status.record_error("FormatError")

    def flush(self, timeout: float = FLUSH_TIMEOUT_SECONDS) -> bool:
        """Export what is queued now; wait at most `timeout` s. Returns whether it all went out."""
        return within(timeout, lambda: self.provider.force_flush(int(timeout * 1000))) and not self.backlog.queued()

    def shutdown(self, timeout: float) -> None:
        """Export what is queued within `timeout` s, then stop; what is left is counted as dropped."""
        if self._stopped:
            return
        self._stopped = True
        self.backlog.close()
        within(timeout, lambda: self.provider.force_flush(int(timeout * 1000)) and self.provider.shutdown())
        left = self.backlog.write_off()
        if left:
            log.warning("CloudWatch Logs: gave up on %d log records after %.1f s", left, timeout)

    def close(self) -> None:
        """logging.shutdown() at exit: a bounded shutdown, if the app's did not run."""
        self.shutdown(FLUSH_TIMEOUT_SECONDS)
        super().close()


class CountingExporter(LogRecordExporter):
    """The SDK's OTLPLogExporter, settling the Backlog per batch; creates the group and stream first."""

    def __init__(self, exporter: LogRecordExporter, session, backlog: Backlog, destination: tuple[str, str, str]):
        self.exporter = exporter
        self.backlog = backlog
        self.destination = destination  # region, group, stream
        self.ready = False
        self.answer = None  # the endpoint's last response (a `requests` hook keeps it)
        session.hooks["response"].append(self._answered)

    def _answered(self, response, **_):
        self.answer = response

    def _error(self) -> str:
        """The error AWS names in `x-amzn-ErrorType` (`Type:detail`), never the body."""
        if self.answer is None:
            return "NoResponse"
        return self.answer.headers.get("x-amzn-ErrorType", "").split(":")[0] or f"HTTP {self.answer.status_code}"

    def _create_destination(self) -> None:
        import boto3
        from botocore.config import Config

        region, group, stream = self.destination
        timeouts = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 2})
        create_destination(boto3.session.Session(region_name=region).client("logs", config=timeouts), group, stream)
        self.ready = True

    def _send(self, batch) -> LogRecordExportResult:
        self.answer = None
        return self.exporter.export(batch)

    def export(self, batch) -> LogRecordExportResult:
        """Export one batch; count it as sent, refused (a `partialSuccess`) or dropped."""
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

        try:
            if not self.ready:
                self._create_destination()
            result = self._send(batch)
            if result is not LogRecordExportResult.SUCCESS and self._error() == "ResourceNotFoundException":
                self._create_destination()  # the group or stream was deleted under us
                result = self._send(batch)
        except Exception as error:  # CreateLogGroup/Stream refused: the AWS error code
            code = getattr(error, "response", {}).get("Error", {}).get("Code")
            result, kind = LogRecordExportResult.FAILURE, code or type(error).__name__
        else:
            kind = self._error()
        if result is not LogRecordExportResult.SUCCESS:
            self.backlog.settle(0, len(batch))
            self.backlog.status.record_error(kind)
            self.backlog.warning.warn("CloudWatch Logs: could not deliver %d log records (%s)", len(batch), kind)
            return result
        try:
            rejected = ExportLogsServiceResponse.FromString(self.answer.content).partial_success.rejected_log_records
        except Exception:  # an empty or non-protobuf 2xx body: nothing was reported refused
            rejected = 0
        self.backlog.settle(len(batch) - rejected, rejected)
        return result

    def shutdown(self) -> None:
        """The SDK exporter's shutdown."""
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Nothing is buffered here."""
        return True
