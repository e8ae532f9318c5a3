"""The AWS OTLP stand-in is as strict as AWS: it verifies SigV4 and refuses what AWS refuses.

Requests here are signed with botocore's SigV4Auth directly (not with the app's code), then sent
with plain `requests`.
"""

from __future__ import annotations

import gzip
import time

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support.aws_otlp_endpoint import ACCESS_KEY, SECRET_KEY, SESSION_TOKEN, AWSOTLPEndpoint

PROTOBUF = {"Content-Type": "application/x-protobuf"}
TRACE_ID = bytes.fromhex(f"{int(time.time()):08x}" + "a" * 24)


@pytest.fixture
def endpoint():
    with AWSOTLPEndpoint() as server:
        yield server


def create_log_stream(endpoint, group="cruddur", stream="backend-flask/host/1", secret=SECRET_KEY):
    """Create the group and stream with boto3 itself (its own signer, its own JSON protocol)."""
    logs = boto3.client(
        "logs",
        endpoint_url=endpoint.url,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=secret,
        aws_session_token=SESSION_TOKEN,
    )
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    return logs


def trace_body() -> bytes:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = TRACE_ID, bytes.fromhex("b" * 16), "GET /api/activities/home"
    return request.SerializeToString()


def logs_body(*times_ns: int) -> bytes:
    request = ExportLogsServiceRequest()
    scope_logs = request.resource_logs.add().scope_logs.add()
    for when in times_ns:
        record = scope_logs.log_records.add()
        record.time_unix_nano, record.severity_number = when, 9
        record.body.string_value = "hello"
        record.trace_id = TRACE_ID
    return request.SerializeToString()


def send(url, body, service, region="us-east-1", secret=SECRET_KEY, token=SESSION_TOKEN, headers=None):
    """Sign with botocore's SigV4Auth and POST."""
    aws_request = AWSRequest(method="POST", url=url, data=body, headers={**PROTOBUF, **(headers or {})})
    SigV4Auth(Credentials(ACCESS_KEY, secret, token), service, region).add_auth(aws_request)
    return requests.post(url, data=body, headers=dict(aws_request.headers.items()), timeout=5)


def test_a_correctly_signed_trace_export_is_decoded(endpoint):
    response = send(endpoint.url + "/v1/traces", trace_body(), "xray")
    assert response.status_code == 200, response.text
    (span,) = endpoint.spans()
    assert span["trace_id"] == TRACE_ID.hex() and span["name"] == "GET /api/activities/home"
    assert endpoint.denied() == []


def test_gzip_bodies_are_verified_as_sent(endpoint):
    body = gzip.compress(trace_body())
    response = send(endpoint.url + "/v1/traces", body, "xray", headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    assert len(endpoint.spans()) == 1


@pytest.mark.parametrize(
    ("change", "error_type"),
    [
        ({"secret": "not-the-secret"}, "SignatureDoesNotMatch"),
        ({"service": "logs"}, "InvalidSignatureException"),
        ({"region": "eu-west-1"}, "InvalidSignatureException"),
        ({"token": "some-other-token"}, "UnrecognizedClientException"),
        ({"server_clock": +6 * 60}, "InvalidSignatureException"),
        ({"server_clock": -6 * 60}, "InvalidSignatureException"),
    ],
    ids=["wrong-secret", "wrong-service", "wrong-region", "wrong-token", "stale", "future"],
)
def test_what_aws_refuses_is_refused_with_403(endpoint, change, error_type):
    service = change.pop("service", "xray")
    endpoint.clock_offset = change.pop("server_clock", 0.0)  # the request's x-amz-date is that far off
    response = send(endpoint.url + "/v1/traces", trace_body(), service, **change)
    assert response.status_code == 403, response.text
    assert response.json()["__type"] == error_type
    assert endpoint.spans() == []
    assert [d["type"] for d in endpoint.denied()] == [error_type]


def test_a_timestamp_inside_the_5_minute_window_is_accepted(endpoint):
    endpoint.clock_offset = 4 * 60
    response = send(endpoint.url + "/v1/traces", trace_body(), "xray")
    assert response.status_code == 200, response.text


def test_an_expired_session_token_is_refused(endpoint):
    endpoint.expired_tokens.add(SESSION_TOKEN)
    response = send(endpoint.url + "/v1/traces", trace_body(), "xray")
    assert response.status_code == 403 and response.json()["__type"] == "ExpiredTokenException"


def test_unsigned_and_tampered_requests_are_refused(endpoint):
    url = endpoint.url + "/v1/traces"
    assert requests.post(url, data=trace_body(), headers=PROTOBUF, timeout=5).status_code == 403
    aws_request = AWSRequest(method="POST", url=url, data=trace_body(), headers=PROTOBUF)
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN), "xray", "us-east-1").add_auth(aws_request)
    tampered = trace_body().replace(b"home", b"HOME")
    response = requests.post(url, data=tampered, headers=dict(aws_request.headers.items()), timeout=5)
    assert response.status_code == 403 and response.json()["__type"] == "SignatureDoesNotMatch"
    assert endpoint.spans() == []


def test_logs_need_the_log_group_and_stream_headers_and_the_logs_service(endpoint):
    url = endpoint.url + "/v1/logs"
    now = time.time_ns()
    assert send(url, logs_body(now), "logs").status_code == 400
    headers = {"x-aws-log-group": "cruddur", "x-aws-log-stream": "backend-flask/host/1"}
    missing = send(url, logs_body(now), "logs", headers=headers)
    assert missing.status_code == 400 and missing.json()["__type"] == "ResourceNotFoundException"
    create_log_stream(endpoint)
    assert send(url, logs_body(now), "xray", headers=headers).status_code == 403
    response = send(url, logs_body(now), "logs", headers=headers)
    assert response.status_code == 200, response.text
    (record,) = endpoint.logs()
    assert record["body"] == "hello" and record["severity"] == "INFO" and record["trace_id"] == TRACE_ID.hex()
    assert (record["log_group"], record["log_stream"]) == ("cruddur", "backend-flask/host/1")


def test_the_logs_api_calls_are_signed_and_answered_as_boto3_expects(endpoint):
    logs = create_log_stream(endpoint)
    with pytest.raises(ClientError) as exists:
        logs.create_log_group(logGroupName="cruddur")
    assert exists.value.response["Error"]["Code"] == "ResourceAlreadyExistsException"
    with pytest.raises(ClientError) as missing:
        logs.create_log_stream(logGroupName="no-such-group", logStreamName="s")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as denied:
        create_log_stream(endpoint, group="other", secret="not-the-secret")
    assert denied.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert endpoint.log_groups == {"cruddur": {"backend-flask/host/1"}}


def test_logs_too_old_or_too_new_are_rejected_in_a_partial_success(endpoint):
    create_log_stream(endpoint, stream="s")
    headers = {"x-aws-log-group": "cruddur", "x-aws-log-stream": "s"}
    now = time.time_ns()
    day = 24 * 3600 * 10**9
    response = send(endpoint.url + "/v1/logs", logs_body(now, now - 15 * day, now + day), "logs", headers=headers)
    assert response.status_code == 200
    answer = ExportLogsServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_log_records == 2
    assert len(endpoint.logs()) == 1 and endpoint.rejected_log_records == 2
    endpoint.reject_next_logs(1)
    response = send(endpoint.url + "/v1/logs", logs_body(now, now), "logs", headers=headers)
    assert ExportLogsServiceResponse.FromString(response.content).partial_success.rejected_log_records == 1


def test_fault_modes_apply_before_authentication(endpoint):
    endpoint.mode = "status429"
    response = send(endpoint.url + "/v1/traces", trace_body(), "xray")
    assert response.status_code == 429 and response.headers["Retry-After"] == str(endpoint.retry_after)
    endpoint.mode = "refuse"
    with pytest.raises(requests.ConnectionError):
        send(endpoint.url + "/v1/traces", trace_body(), "xray")
    endpoint.mode = "ok"
    assert send(endpoint.url + "/v1/traces", trace_body(), "xray").status_code == 200


def test_spans_with_invalid_ids_are_refused(endpoint):
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = bytes(16), bytes.fromhex("b" * 16), "zero trace id"
    response = send(endpoint.url + "/v1/traces", request.SerializeToString(), "xray")
    assert response.status_code == 400 and endpoint.spans() == []
