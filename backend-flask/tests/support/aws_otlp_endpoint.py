"""AWS's OTLP endpoints on loopback: X-Ray ``/v1/traces`` and CloudWatch Logs ``/v1/logs``, SigV4-checked.

What it enforces, as AWS documents it:

- Signature Version 4 ("Authenticating requests: AWS Signature Version 4", IAM user guide): the
  ``Authorization`` header names an access key, a credential scope ``<yyyymmdd>/<region>/<service>/aws4_request``,
  the signed headers and the signature. The signature is recomputed here with botocore's own
  ``SigV4Auth`` over the request as received (method, path, query, the signed headers, the SHA-256
  of the body as sent); any difference is ``403 SignatureDoesNotMatch``. ``host`` and ``x-amz-date``
  must be signed, and so must every ``x-amz-*`` header sent.
- The access key must be one this endpoint knows (``403 UnrecognizedClientException``); temporary
  credentials must carry their session token in ``x-amz-security-token``; a token marked expired is
  ``403 ExpiredTokenException``.
- A signed request is valid for 5 minutes from its ``X-Amz-Date`` (AWS rejects clock skew beyond
  that): a request signed more than 5 minutes away from this server's clock is
  ``403 InvalidSignatureException`` ("Signature expired").
- The scope must name this endpoint's region, the date of ``x-amz-date``, and the service of the
  path: ``xray`` for ``/v1/traces``, ``logs`` for ``/v1/logs`` (CloudWatch OTLP endpoints guide).
- ``/v1/logs`` needs the headers ``x-aws-log-group`` and ``x-aws-log-stream`` (400 without them),
  naming a log group and stream that exist: they are created beforehand with the CloudWatch Logs
  API, which this stand-in also serves for those two calls (``POST /`` with
  ``X-Amz-Target: Logs_20140328.CreateLogGroup`` / ``CreateLogStream``, JSON 1.1, signed for
  ``logs``); an unknown one is ``400 ResourceNotFoundException``. ``require_existing=False`` accepts
  any names.
- Log records that PutLogEvents would refuse (older than 14 days or more than 2 hours in the future)
  are rejected in the answer's ``partialSuccess`` (``rejected_log_records``), and not stored;
  ``reject_next_logs(n)`` rejects the next ``n`` records the same way.
- Bodies are OTLP protobuf (``application/x-protobuf``); anything else is 400/415. A span whose
  trace id is all zeros or whose ids have the wrong length (invalid in OTLP) is 400.

The fault modes of ``FaultyHTTPServer`` (refused, blackhole, slow, 500, 429 with ``Retry-After``)
apply before any of this, as a network or an overloaded service would.
"""

from __future__ import annotations

import hmac
import json
import re
import threading
import time
from datetime import UTC, datetime

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.support.faulty_http import BadRequest, FaultyHTTPServer, Response
from tests.support.otlp_receiver import any_value, key_values, spans_of
from tests.support.waiting import wait_for

REGION = "us-east-1"
# Test credentials: the app under test finds them through botocore's default chain (environment).
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "cruddur-test-session-token"
MAX_CLOCK_SKEW_SECONDS = 5 * 60
MAX_LOG_AGE_SECONDS = 14 * 24 * 3600
MAX_LOG_FUTURE_SECONDS = 2 * 3600
SERVICES = {"/v1/traces": "xray", "/v1/logs": "logs"}
SEVERITY_NAMES = {0: "UNSPECIFIED", 5: "DEBUG", 9: "INFO", 13: "WARN", 17: "ERROR", 21: "FATAL"}
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r"\s*SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


class Forbidden(Exception):
    """A request AWS would answer 403."""

    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type


def test_env(endpoint: str, region: str = REGION) -> dict[str, str]:
    """Variables that point botocore's default chain and endpoint resolution at this stand-in."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_SESSION_TOKEN": SESSION_TOKEN,
        "AWS_DEFAULT_REGION": region,
        "AWS_ENDPOINT_URL_XRAY": endpoint,
        "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": endpoint,
    }


def log_record_dict(record, resource, scope, headers):
    """One protobuf ``LogRecord`` as a plain dict."""
    return {
        "time_unix_nano": record.time_unix_nano,
        "observed_time_unix_nano": record.observed_time_unix_nano,
        "severity_number": record.severity_number,
        "severity": SEVERITY_NAMES.get(record.severity_number, str(record.severity_number)),
        "severity_text": record.severity_text,
        "body": any_value(record.body),
        "attributes": key_values(record.attributes),
        "trace_id": record.trace_id.hex() or None,
        "span_id": record.span_id.hex() or None,
        "flags": record.flags,
        "resource": resource,
        "scope": scope.name,
        "log_group": headers.get("x-aws-log-group"),
        "log_stream": headers.get("x-aws-log-stream"),
    }


def _aws_error(status: int, error_type: str, message: str) -> Response:
    return Response(
        status,
        json.dumps({"__type": error_type, "message": message}).encode(),
        "application/x-amz-json-1.1",
        {"x-amzn-ErrorType": error_type},
    )


class AWSOTLPEndpoint(FaultyHTTPServer):
    """X-Ray's and CloudWatch Logs' OTLP/HTTP endpoints in one loopback server; see the module docstring."""

    name = "aws-otlp"

    def __init__(
        self,
        region=REGION,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        session_token=SESSION_TOKEN,
        require_existing=True,
        **kw,
    ):
        """Accept requests signed for ``region`` with these credentials (``session_token`` None: long-term keys)."""
        super().__init__(**kw)
        self.require_existing = require_existing
        self.log_groups: dict[str, set[str]] = {}  # created with the Logs API: group -> streams
        self.region = region
        self.credentials = {access_key: (secret_key, session_token)}
        self.expired_tokens: set[str] = set()
        self.clock_offset = 0.0  # seconds added to this server's clock (to test skew)
        self._spans: list[dict] = []
        self._logs: list[dict] = []
        self._denied: list[dict] = []
        self._rejected = 0
        self._reject_next = 0
        self._data_lock = threading.Lock()

    @property
    def endpoint(self):
        """The base URL (``AWS_ENDPOINT_URL_XRAY`` / ``AWS_ENDPOINT_URL_CLOUDWATCH_LOGS``)."""
        return self.url

    def env(self) -> dict[str, str]:
        """The app's environment for this endpoint (credentials, region, endpoint overrides)."""
        return test_env(self.url, self.region)

    def reject_next_logs(self, count: int) -> None:
        """Reject the next ``count`` log records in a partialSuccess."""
        with self._data_lock:
            self._reject_next += count

    # -- the service ---------------------------------------------------------------------------

    def handle(self, request):
        """Authenticate, then decode and store (or reject) the export."""
        path = request.path.split("?")[0]
        service = SERVICES.get(path)
        target = request.headers.get("x-amz-target", "")
        if request.method == "POST" and path == "/" and target.startswith("Logs_20140328."):
            service = "logs"
        elif request.method != "POST" or service is None:
            return super().handle(request)
        try:
            self.authenticate(request, service)
        except Forbidden as denied:
            with self._data_lock:
                self._denied.append({"type": denied.error_type, "message": str(denied), "path": path})
            return _aws_error(403, denied.error_type, str(denied))
        if path == "/":
            return self._logs_api(target.split(".", 1)[1], request)
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip() != "application/x-protobuf":
            return Response.json(415, {"message": f"unsupported content type {content_type!r}"})
        if service == "xray":
            return self._traces(request)
        return self._logs_export(request)

    def authenticate(self, request, service: str) -> None:
        """Raise Forbidden unless the request carries a valid SigV4 signature for ``service`` here."""
        authorization = request.headers.get("authorization")
        if not authorization:
            raise Forbidden("MissingAuthenticationTokenException", "Missing Authentication Token")
        match = _AUTHORIZATION.match(authorization.strip())
        if match is None:
            raise Forbidden("IncompleteSignatureException", "Authorization header is not a valid SigV4 header")
        known = self.credentials.get(match["key"])
        if known is None:
            raise Forbidden("UnrecognizedClientException", "The security token included in the request is invalid.")
        secret, token = known
        signed = match["signed"].split(";")
        if "host" not in signed or "x-amz-date" not in signed:
            raise Forbidden("IncompleteSignatureException", "host and x-amz-date must be signed headers")
        unsigned_amz = [h for h in request.headers if h.startswith("x-amz-") and h not in signed]
        if unsigned_amz:
            raise Forbidden("IncompleteSignatureException", f"x-amz-* headers must be signed: {unsigned_amz}")
        missing = [h for h in signed if h not in request.headers]
        if missing:
            raise Forbidden("IncompleteSignatureException", f"signed headers not in the request: {missing}")
        sent_token = request.headers.get("x-amz-security-token")
        if sent_token in self.expired_tokens:
            raise Forbidden("ExpiredTokenException", "The security token included in the request is expired")
        if token is not None and sent_token != token:
            raise Forbidden("UnrecognizedClientException", "The security token included in the request is invalid.")
        amz_date = request.headers["x-amz-date"]
        try:
            signed_at = datetime.strptime(amz_date, SIGV4_TIMESTAMP).replace(tzinfo=UTC).timestamp()
        except ValueError as error:
            raise Forbidden("IncompleteSignatureException", f"bad x-amz-date {amz_date!r}") from error
        now = time.time() + self.clock_offset
        if abs(now - signed_at) > MAX_CLOCK_SKEW_SECONDS:
            raise Forbidden(
                "InvalidSignatureException",
                f"Signature expired: {amz_date} is outside 5 minutes of the server time",
            )
        if match["date"] != amz_date[:8]:
            raise Forbidden("InvalidSignatureException", "Credential scope date does not match x-amz-date")
        if match["region"] != self.region:
            raise Forbidden(
                "InvalidSignatureException", f"Credential should be scoped to a valid region, not '{match['region']}'"
            )
        if match["service"] != service:
            raise Forbidden("InvalidSignatureException", f"Credential should be scoped to correct service: '{service}'")
        headers = {name: request.headers[name] for name in signed}
        aws_request = AWSRequest(
            method=request.method, url=f"http://{headers['host']}{request.path}", headers=headers, data=request.raw_body
        )
        aws_request.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(match["key"], secret, token), service, self.region)
        canonical = signer.canonical_request(aws_request)
        expected = signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
        if not hmac.compare_digest(expected, match["signature"]):
            raise Forbidden(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method.",
            )

    def _traces(self, request):
        message = ExportTraceServiceRequest()
        try:
            message.ParseFromString(request.body)
        except DecodeError as error:
            raise BadRequest(f"invalid protobuf: {error}") from error
        spans = spans_of(message)
        for span in spans:
            trace_ok = len(span["trace_id"]) == 32 and int(span["trace_id"], 16)
            if not (trace_ok and len(span["span_id"]) == 16 and int(span["span_id"], 16)):
                raise BadRequest(f"invalid span ids: {span['trace_id']!r} {span['span_id']!r}")
        with self._data_lock:
            self._spans.extend(spans)
        return Response(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")

    def _logs_api(self, operation, request):
        """CreateLogGroup and CreateLogStream, answered as CloudWatch Logs does (JSON 1.1)."""
        try:
            body = json.loads(request.body or b"{}")
        except ValueError as error:
            raise BadRequest(f"invalid JSON: {error}") from error
        group = body.get("logGroupName", "")
        with self._data_lock:
            if operation == "CreateLogGroup":
                if group in self.log_groups:
                    return _aws_error(400, "ResourceAlreadyExistsException", "The specified log group already exists")
                self.log_groups[group] = set()
            elif operation == "CreateLogStream":
                streams = self.log_groups.get(group)
                if streams is None:
                    return _aws_error(400, "ResourceNotFoundException", "The specified log group does not exist.")
                if body.get("logStreamName") in streams:
                    return _aws_error(400, "ResourceAlreadyExistsException", "The specified log stream already exists")
                streams.add(body.get("logStreamName", ""))
            else:
                return _aws_error(400, "InvalidAction", f"{operation} is not served by this stand-in")
        return Response(200, b"", "application/x-amz-json-1.1")

    def _logs_export(self, request):
        group, stream = request.headers.get("x-aws-log-group"), request.headers.get("x-aws-log-stream")
        if not group or not stream:
            raise BadRequest("x-aws-log-group and x-aws-log-stream headers are required")
        with self._data_lock:
            exists = stream in self.log_groups.get(group, ())
        if self.require_existing and not exists:
            return _aws_error(400, "ResourceNotFoundException", "The specified log group or log stream does not exist.")
        message = ExportLogsServiceRequest()
        try:
            message.ParseFromString(request.body)
        except DecodeError as error:
            raise BadRequest(f"invalid protobuf: {error}") from error
        now_ns = (time.time() + self.clock_offset) * 1e9
        accepted, rejected = [], 0
        with self._data_lock:
            for resource_logs in message.resource_logs:
                resource = key_values(resource_logs.resource.attributes)
                for scope_logs in resource_logs.scope_logs:
                    for record in scope_logs.log_records:
                        when = record.time_unix_nano or record.observed_time_unix_nano
                        too_old = when < now_ns - MAX_LOG_AGE_SECONDS * 1e9
                        too_new = when > now_ns + MAX_LOG_FUTURE_SECONDS * 1e9
                        if self._reject_next > 0 or too_old or too_new:
                            self._reject_next = max(0, self._reject_next - 1)
                            rejected += 1
                            continue
                        accepted.append(log_record_dict(record, resource, scope_logs.scope, request.headers))
            self._logs.extend(accepted)
            self._rejected += rejected
        answer = ExportLogsServiceResponse()
        if rejected:
            answer.partial_success.rejected_log_records = rejected
            answer.partial_success.error_message = f"{rejected} log records are too old or too far in the future"
        return Response(200, answer.SerializeToString(), "application/x-protobuf")

    def reset_data(self):
        """Forget what was stored."""
        with self._data_lock:
            self._spans.clear()
            self._logs.clear()
            self._denied.clear()
            self._rejected = 0

    # -- accessors -----------------------------------------------------------------------------

    def spans(self) -> list[dict]:
        """Spans accepted on /v1/traces (same shape as ``OTLPReceiver.spans``)."""
        with self._data_lock:
            return list(self._spans)

    def logs(self) -> list[dict]:
        """Log records accepted on /v1/logs (see ``log_record_dict``)."""
        with self._data_lock:
            return list(self._logs)

    def denied(self) -> list[dict]:
        """Requests answered 403: ``{"type", "message", "path"}``."""
        with self._data_lock:
            return list(self._denied)

    @property
    def rejected_log_records(self) -> int:
        """Log records rejected in partialSuccess answers."""
        with self._data_lock:
            return self._rejected

    def wait_for_spans(self, predicate=lambda span: True, count=1, timeout=10.0):
        """Wait until ``count`` accepted spans match ``predicate``; return them."""

        def matching():
            found = [s for s in self.spans() if predicate(s)]
            return found if len(found) >= count else None

        return wait_for(matching, timeout, message=f"fewer than {count} matching spans at {self.url}")

    def wait_for_logs(self, predicate=lambda record: True, count=1, timeout=10.0):
        """Wait until ``count`` accepted log records match ``predicate``; return them."""

        def matching():
            found = [r for r in self.logs() if predicate(r)]
            return found if len(found) >= count else None

        return wait_for(matching, timeout, message=f"fewer than {count} matching log records at {self.url}")
