"""CloudWatch Logs over OTLP (CRUDDUR_CLOUDWATCH_TRANSPORT=otlp), with the OpenTelemetry logs SDK.

Each JSON line becomes a log record (`message` the body, other fields attributes), SigV4-signed to `<endpoint>/v1/logs`
with `x-aws-log-group` and `x-aws-log-stream`; the endpoint needs both to exist: `CountingExporter` makes them first.
"""

from __future__ import annotations

import json
import logging

from flask import Flask
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult

from ..otel.aws import signed_session
from ..otel.tracing import service_resource
from . import Backlog, PrebuiltClient, ShippingHandler, create_destination, error_code, logs_client, report, stream_name

SEND_INTERVAL_SECONDS = 5.0
EXPORT_TIMEOUT_SECONDS = 5.0  # one export, retries included: a blackhole holds it for seconds, not minutes
# The most severe first: a level between two takes the lower one.
SEVERITY = (
    (logging.CRITICAL, SeverityNumber.FATAL),
    (logging.ERROR, SeverityNumber.ERROR),
    (logging.WARNING, SeverityNumber.WARN),
    (logging.INFO, SeverityNumber.INFO),
)


def build_handler(app: Flask, endpoint: str, region: str) -> OTLPLogHandler:
    """The root logger's handler, shipping to CLOUDWATCH_LOG_GROUP over OTLP."""
    config = app.extensions["cruddur.config"]
    group = config.cloudwatch_log_group
    status = report(app, f"OTLP log records to log group {group} in {region}, one stream per worker")

    backlog, stream = Backlog(status), stream_name(config.service_name)
    session = signed_session("logs", region)
    headers = {"x-aws-log-group": group, "x-aws-log-stream": stream}
    otlp = OTLPLogExporter(f"{endpoint}/v1/logs", headers=headers, timeout=EXPORT_TIMEOUT_SECONDS, session=session)
    # The Backlog admits at most max_queue_size records (none dropped uncounted); batches as for spans.
    processor = BatchLogRecordProcessor(
        CountingExporter(otlp, session, backlog, (region, group, stream)),
        schedule_delay_millis=SEND_INTERVAL_SECONDS * 1000,
        max_queue_size=backlog.capacity,
        max_export_batch_size=min(config.span_batch_size, backlog.capacity),
    )
    provider = LoggerProvider(service_resource(config), shutdown_on_exit=False)  # our shutdown is bounded
    provider.add_log_record_processor(processor)
    return OTLPLogHandler(provider, backlog)


class OTLPLogHandler(ShippingHandler):
    """Emits each JSON line as an SDK log record on the caller's thread; never blocks."""

    def __init__(self, provider, backlog: Backlog):
        super().__init__()
        self.setup(backlog)
        self.provider, self.logger = provider, provider.get_logger("cruddur")

    def emit(self, record: logging.LogRecord) -> None:
        """The line's fields; the SDK takes the trace ids from the current span."""
        if not is_instrumentation_enabled():
            return  # logged while the SDK exports: shipping it would feed itself
        try:
            fields = json.loads(self.format(record))
        except Exception:
            return self.handleError(record)
        if self.backlog.admit():
            self.logger.emit(
                timestamp=int(record.created * 1e9),
                severity_number=next((n for level, n in SEVERITY if record.levelno >= level), SeverityNumber.DEBUG),
                severity_text=record.levelname,
                body=fields.pop("message", ""),
                attributes={key: value for key, value in fields.items() if value is not None},
            )

    def send_now(self) -> bool:
        return self.provider.force_flush() and not self.backlog.queued()

    def drain(self) -> None:
        self.provider.force_flush()
        self.provider.shutdown()


class CountingExporter(LogRecordExporter):
    """The SDK's OTLPLogExporter, settling the Backlog per batch; makes the group and stream first."""

    def __init__(self, exporter: LogRecordExporter, session, backlog: Backlog, destination: tuple[str, str, str]):
        self.exporter, self.backlog, self.destination = exporter, backlog, destination  # (region, group, stream)
        # One Logs client, built at startup: one built per export (~100 ms of CPU, 30,000 objects for
        # the collector) would stall the worker's requests at every retry of a failing stream.
        self.client = PrebuiltClient(lambda: logs_client(destination[0], attempts=2))
        self.ready = False
        self.answer = None  # the endpoint's last response, kept by a `requests` hook
        session.hooks["response"].append(self._answered)

    def _answered(self, response, **_) -> None:
        self.answer = response

    def _error(self) -> str:
        """The error AWS names in `x-amzn-ErrorType` (`Type:detail`), never the body."""
        if self.answer is None:
            return "NoResponse"
        return self.answer.headers.get("x-amzn-ErrorType", "").split(":")[0] or f"HTTP {self.answer.status_code}"

    def _send(self, batch, create: bool) -> LogRecordExportResult:
        if create:
            _region, group, stream = self.destination
            create_destination(self.client, group, stream)
            self.ready = True
        self.answer = None
        return self.exporter.export(batch)

    def export(self, batch) -> LogRecordExportResult:
        """Export one batch; count it as sent, refused (a `partialSuccess`) or dropped."""
        try:
            result = self._send(batch, create=not self.ready)
            if result is not LogRecordExportResult.SUCCESS and self._error() == "ResourceNotFoundException":
                result = self._send(batch, create=True)  # the group or stream was deleted under us
            kind = self._error()
        except Exception as error:  # CreateLogGroup/Stream refused
            result, kind = LogRecordExportResult.FAILURE, error_code(error)
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
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True
