"""X-Ray and CloudWatch Logs over OTLP (CRUDDUR_XRAY_TRANSPORT=otlp, CRUDDUR_CLOUDWATCH_TRANSPORT=otlp).

Against the SigV4-verifying stand-in on loopback (tests/support/aws_otlp_endpoint.py): the app signs
with botocore and the default credential chain (here: the environment), the stand-in recomputes
every signature.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from cruddur import create_app
from cruddur.config import Config
from cruddur.telemetry.cloudwatch import otlp as cloudwatch_otlp
from cruddur.telemetry.cloudwatch.otlp import OTLPLogHandler
from tests.support.app_server import BACKEND_DIR
from tests.support.aws_otlp_endpoint import SECRET_KEY, SESSION_TOKEN, AWSOTLPEndpoint
from tests.support.waiting import wait_for


@pytest.fixture
def database_url(tmp_path) -> str:
    """Telemetry transports do not depend on the database: SQLite only (not both databases)."""
    return f"sqlite:///{tmp_path / 'cruddur.db'}"


@pytest.fixture
def aws_endpoint(monkeypatch, tmp_path):
    """The stand-in, with botocore's resolution pointed at it and at nothing else."""
    with AWSOTLPEndpoint() as endpoint:
        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_REGION", "AWS_XRAY_DAEMON_ADDRESS"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
        for name, value in endpoint.env().items():
            monkeypatch.setenv(name, value)
        yield endpoint


@pytest.fixture
def otlp_app(config):
    """`otlp_app(**config changes)`: the app with both AWS transports on OTLP; handlers detached after."""
    apps = []

    def build(**changes):
        changes = {
            "xray_transport": "otlp",
            "cloudwatch_transport": "otlp",
            "cloudwatch_log_group": "cruddur",
            **changes,
        }
        app = create_app(config.replace(**changes))
        apps.append(app)
        return app

    yield build
    for app in apps:
        handler = app.extensions.get("cruddur.cloudwatch")
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.shutdown(0.5)
        app.extensions["cruddur.tracer_provider"].shutdown()


def trace_id_of(response) -> str:
    return response.headers["traceresponse"].split("-")[1]


def flush_logs(app) -> None:
    assert app.extensions["cruddur.cloudwatch"].flush(10)


def test_spans_go_to_xray_signed_with_the_request_trace_id(otlp_app, aws_endpoint):
    app = otlp_app()
    response = app.test_client().get("/api/activities/home")
    assert response.status_code == 200
    trace_id = trace_id_of(response)
    assert app.extensions["cruddur.tracer_provider"].force_flush(10_000)
    spans = aws_endpoint.wait_for_spans(lambda s: s["trace_id"] == trace_id and s["kind"] == "SERVER")
    assert spans[0]["resource"]["service.name"] == "backend-flask"
    # An id the app starts is valid for X-Ray: its first 8 hex digits are the epoch seconds, now.
    assert abs(int(trace_id[:8], 16) - int(__import__("time").time())) < 60
    signed = [r for r in aws_endpoint.requests() if r.path == "/v1/traces"]
    assert signed and all(r.headers["authorization"].startswith("AWS4-HMAC-SHA256 ") for r in signed)
    assert "/xray/aws4_request" in signed[0].headers["authorization"]
    assert aws_endpoint.denied() == []
    state = app.test_client().get("/api/health-check").get_json()["integrations"]["xray"]
    assert state["enabled"] and state["sent"] >= 1 and state["failed"] == 0
    assert "amazonaws" not in state["reason"] and "127.0.0.1" not in state["reason"]


def test_unsampled_requests_send_nothing_to_xray(otlp_app, aws_endpoint):
    app = otlp_app(cloudwatch_log_group="")
    parent = "00-" + "1" * 32 + "-" + "2" * 16 + "-00"
    assert app.test_client().get("/api/activities/home", headers={"traceparent": parent}).status_code == 200
    assert app.extensions["cruddur.tracer_provider"].force_flush(10_000)
    assert aws_endpoint.spans() == []


def test_log_lines_become_otlp_log_records(otlp_app, aws_endpoint):
    app = otlp_app(xray_transport="daemon")
    client = app.test_client()
    responses = [client.get("/api/activities/home"), client.get("/api/activities/@nobody-here")]
    responses.append(client.get("/rollbar/test/exception"))
    assert [r.status_code for r in responses] == [200, 404, 500]
    flush_logs(app)
    access = [r for r in aws_endpoint.logs() if r["attributes"].get("logger") == "cruddur.access"]
    assert len(access) == 3
    by_status = {r["attributes"]["status"]: r for r in access}
    assert {s: r["severity"] for s, r in by_status.items()} == {200: "INFO", 404: "WARN", 500: "ERROR"}
    for response in responses:
        record = by_status[response.status_code]
        assert record["trace_id"] == trace_id_of(response)
        assert record["attributes"]["trace_id"] == record["trace_id"]
        assert len(record["span_id"]) == 16
        assert record["body"].startswith("GET /api/activities/") or record["body"].startswith("GET /rollbar/")
        assert record["severity_text"] in ("INFO", "WARNING", "ERROR")
    assert by_status[200]["attributes"]["path"] == "/api/activities/home"
    assert by_status[200]["resource"]["service.name"] == "backend-flask"
    streams = {(r["log_group"], r["log_stream"]) for r in aws_endpoint.logs()}
    assert streams == {("cruddur", f"backend-flask/{socket.gethostname()}/{os.getpid()}")}
    assert "/logs/aws4_request" in aws_endpoint.requests()[-1].headers["authorization"]
    state = client.get("/api/health-check").get_json()["integrations"]["cloudwatch"]
    assert state["enabled"] and state["failed"] == 0 and state["dropped"] == 0


def test_log_records_leave_at_most_128_an_export(otlp_app, aws_endpoint):
    """As for spans: encoding the SDK's default 512 records at once doubled p99."""
    app = otlp_app(xray_transport="daemon")
    for i in range(300):
        logging.getLogger("cruddur.batching").warning("line %d", i)
    flush_logs(app)
    exports = [ExportLogsServiceRequest.FromString(r.body) for r in aws_endpoint.requests() if r.path == "/v1/logs"]
    counts = [sum(len(s.log_records) for rl in e.resource_logs for s in rl.scope_logs) for e in exports]
    assert sum(counts) >= 300 and max(counts) == 128


def test_records_rejected_in_a_partial_success_are_counted_as_dropped(otlp_app, aws_endpoint):
    app = otlp_app(xray_transport="daemon")
    aws_endpoint.reject_next_logs(2)
    client = app.test_client()
    for _ in range(5):
        client.get("/api/activities/home")
    status = app.extensions["cruddur.integrations"]["cloudwatch"]
    flush_logs(app)
    assert aws_endpoint.rejected_log_records == 2
    assert status.dropped == 2 and status.sent == len(aws_endpoint.logs()) and status.sent >= 3


@pytest.mark.parametrize("credential", ["wrong-secret", "expired-token"])
def test_refused_credentials_are_counted_and_the_signature_is_never_logged(
    otlp_app, aws_endpoint, monkeypatch, caplog, credential
):
    if credential == "wrong-secret":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-" + SECRET_KEY)
        expected = "SignatureDoesNotMatch"
    else:
        aws_endpoint.expired_tokens.add(SESSION_TOKEN)
        expected = "ExpiredTokenException"
    caplog.set_level(logging.DEBUG)
    app = otlp_app()
    client = app.test_client()
    assert client.get("/api/activities/home").status_code == 200
    assert app.extensions["cruddur.tracer_provider"].force_flush(10_000) is not None
    flush_logs(app)
    # The log sender's first call is CreateLogGroup (Logs API, path "/"), refused just the same.
    wait_for(lambda: {d["path"] for d in aws_endpoint.denied()} == {"/v1/traces", "/"}, 10)
    assert {d["type"] for d in aws_endpoint.denied()} == {expected}
    integrations = app.extensions["cruddur.integrations"]
    for name in ("xray", "cloudwatch"):
        assert integrations[name].failed >= 1 and integrations[name].dropped >= 1, name
        assert integrations[name].sent == 0, name
    signatures = [r.headers["authorization"].rsplit("Signature=", 1)[1] for r in aws_endpoint.requests()]
    logged = caplog.text + json.dumps(client.get("/api/health-check").get_json())
    leaked = [line for line in logged.splitlines() if any(signature in line for signature in signatures)]
    assert signatures and not leaked, leaked[:3]
    assert SECRET_KEY not in logged and SESSION_TOKEN not in logged


def test_the_log_exporter_builds_one_logs_client_however_often_creating_the_stream_fails(
    otlp_app, aws_endpoint, monkeypatch
):
    """A client is ~100 ms of CPU and 30,000 objects: built per export, it stalled every request."""
    import boto3

    built = []
    client = boto3.session.Session.client

    def counting_client(session, service, *args, **kwargs):
        built.append(service)
        return client(session, service, *args, **kwargs)

    monkeypatch.setattr(boto3.session.Session, "client", counting_client)
    aws_endpoint.expired_tokens.add(SESSION_TOKEN)  # CreateLogGroup refused, every time
    app = otlp_app(xray_transport="daemon")
    handler = app.extensions["cruddur.cloudwatch"]
    for _ in range(3):
        app.test_client().get("/api/activities/home")
        handler.flush(10)
    create_attempts = [d for d in aws_endpoint.denied() if d["path"] == "/"]
    assert len(create_attempts) >= 3, aws_endpoint.denied()
    assert built == ["logs"]


def test_credentials_expiring_later_fail_the_otlp_log_export_itself(otlp_app, aws_endpoint, monkeypatch):
    monkeypatch.setattr(cloudwatch_otlp, "SEND_INTERVAL_SECONDS", 0.2)
    app = otlp_app(xray_transport="daemon")
    client = app.test_client()
    client.get("/api/activities/home")
    aws_endpoint.wait_for_logs(lambda r: r["attributes"].get("logger") == "cruddur.access")
    aws_endpoint.expired_tokens.add(SESSION_TOKEN)
    client.get("/api/activities/home")
    wait_for(lambda: aws_endpoint.denied(), 10)
    assert aws_endpoint.denied()[0]["path"] == "/v1/logs"
    assert aws_endpoint.denied()[0]["type"] == "ExpiredTokenException"
    wait_for(lambda: app.extensions["cruddur.integrations"]["cloudwatch"].failed, 5)
    status = app.extensions["cruddur.integrations"]["cloudwatch"].status()
    assert status["failed"] >= 1 and status["dropped"] >= 1 and status["sent"] >= 1
    assert status["last_error"] == "ExpiredTokenException"  # the type AWS names, never the body


def test_no_credential_ever_travels_in_a_payload(otlp_app, aws_endpoint):
    app = otlp_app()
    app.test_client().get("/api/activities/home")
    app.extensions["cruddur.tracer_provider"].force_flush(10_000)
    flush_logs(app)
    bodies = [r.body for r in aws_endpoint.requests()]
    assert len(bodies) >= 2
    assert not any(secret.encode() in body for body in bodies for secret in (SECRET_KEY, SESSION_TOKEN))


def test_otlp_mode_imports_neither_the_xray_sdk_nor_watchtower(tmp_path):
    script = (
        "import sys\n"
        "from cruddur import create_app\n"
        "from cruddur.config import Config\n"
        f"app = create_app(Config.from_env().replace(database_url='sqlite:///{tmp_path}/x.db'))\n"
        "xray = app.extensions['cruddur.integrations']['xray']\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('aws_xray_sdk', 'watchtower')))\n"
        # To a file: the app's threads log to stdout meanwhile, and a line of theirs can land
        # between the words of a print.
        f"open({str(tmp_path / 'result')!r}, 'w').write(f'{{xray.enabled}} {{loaded}}')\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OTEL_", "CRUDDUR_", "CLOUDWATCH_"))},
        **AWSOTLPEndpoint().env(),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "CRUDDUR_ENV": "test",
        "CRUDDUR_XRAY_TRANSPORT": "otlp",
        "CRUDDUR_CLOUDWATCH_TRANSPORT": "otlp",
        "CLOUDWATCH_LOG_GROUP": "cruddur",
    }
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=BACKEND_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "result").read_text() == "True []"
    env["CRUDDUR_XRAY_TRANSPORT"] = "daemon"
    env["AWS_XRAY_DAEMON_ADDRESS"] = "127.0.0.1:2000"
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=BACKEND_DIR, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "aws_xray_sdk" in (tmp_path / "result").read_text()


def test_defaults_are_the_daemon_and_the_api(config):
    assert (config.xray_transport, config.cloudwatch_transport) == ("daemon", "api")
    with pytest.raises(ValueError, match="CRUDDUR_XRAY_TRANSPORT"):
        Config.from_env({"CRUDDUR_XRAY_TRANSPORT": "udp"})
    with pytest.raises(ValueError, match="CRUDDUR_CLOUDWATCH_TRANSPORT"):
        Config.from_env({"CRUDDUR_CLOUDWATCH_TRANSPORT": "watchtower"})
    assert Config.from_env({"CRUDDUR_XRAY_TRANSPORT": "OTLP"}).xray_transport == "otlp"


def test_endpoints_resolve_as_boto3_resolves_them(monkeypatch, tmp_path):
    import boto3

    from cruddur.telemetry.otel.aws import resolve

    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_XRAY", "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    keys = {"aws_access_key_id": "k", "aws_secret_access_key": "s"}
    for service in ("xray", "logs"):
        assert resolve(service) == (boto3.client(service, **keys).meta.endpoint_url, "eu-west-3", "")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", "http://127.0.0.1:9999/")
    assert resolve("xray")[0] == boto3.client("xray", **keys).meta.endpoint_url == "http://127.0.0.1:4566"
    assert resolve("logs")[0] == "http://127.0.0.1:9999"
    assert boto3.client("logs", **keys).meta.endpoint_url.rstrip("/") == "http://127.0.0.1:9999"


def test_otlp_transports_stay_off_without_a_region(otlp_app, monkeypatch, tmp_path):
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    app = otlp_app()
    integrations = app.extensions["cruddur.integrations"]
    assert not integrations["xray"].enabled and "no region" in integrations["xray"].reason
    assert not integrations["cloudwatch"].enabled and "no region" in integrations["cloudwatch"].reason
    assert not [h for h in logging.getLogger().handlers if isinstance(h, OTLPLogHandler)]
