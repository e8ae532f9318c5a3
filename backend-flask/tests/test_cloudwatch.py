"""CloudWatch Logs through watchtower, against moto in server mode (read back through boto3).

The fault cases use loopback stand-ins: a closed port (connection refused) and a server that accepts
and never answers (blackhole). Each test removes and shuts down its handler so nothing leaks.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import socket
import time
import urllib.request

import pytest
import watchtower

from cruddur import create_app
from cruddur.telemetry import cloudwatch
from cruddur.telemetry.cloudwatch import FLUSH_TIMEOUT_SECONDS
from cruddur.telemetry.cloudwatch.api import SEND_INTERVAL_SECONDS, CloudWatchQueueHandler
from tests.support.faulty_http import FaultyHTTPServer, closed_port
from tests.support.moto_logs import FAKE_CREDENTIALS, REGION
from tests.support.waiting import wait_for

ACCESS = "cruddur.access"


@pytest.fixture
def database_url(tmp_path) -> str:
    """Shipping does not depend on the database: SQLite only (not both databases)."""
    return f"sqlite:///{tmp_path / 'cruddur.db'}"


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """Point boto3's standard resolution at `endpoint` (and nowhere else: no profile, no real config)."""

    def point_at(endpoint: str) -> None:
        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_REGION"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", endpoint)
        monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
        for name, value in FAKE_CREDENTIALS.items():
            monkeypatch.setenv(name, value)

    return point_at


@pytest.fixture
def cloudwatch_app(config, aws_env):
    """`cloudwatch_app(endpoint, group)` builds the app with CloudWatch Logs on; teardown detaches it."""
    handlers = []

    def build(endpoint: str, group: str):
        aws_env(endpoint)
        app = create_app(config.replace(cloudwatch_log_group=group))
        handlers.append(app.extensions["cruddur.cloudwatch"])
        return app

    yield build
    for handler in handlers:
        logging.getLogger().removeHandler(handler)
        handler.shutdown(0.5)
        handler.close()


def cloudwatch_handlers():
    return [h for h in logging.getLogger().handlers if isinstance(h, CloudWatchQueueHandler)]


def test_access_log_events_arrive_as_json_with_the_trace_id(cloudwatch_app, moto_logs, log_group):
    app = cloudwatch_app(moto_logs.endpoint, log_group)
    client = app.test_client()
    responses = {
        200: client.get("/api/activities/home?term=x"),
        404: client.get("/api/activities/@nobody-by-that-name"),
        500: client.get("/rollbar/test/exception"),
    }
    assert {status: r.status_code for status, r in responses.items()} == {200: 200, 404: 404, 500: 500}
    handler = app.extensions["cruddur.cloudwatch"]
    assert handler.flush(10)

    # flush() returns once the batch was answered: no polling needed.
    events = [e for e in moto_logs.events(log_group) if (e["json"] or {}).get("logger") == ACCESS]
    assert len(events) == 3
    by_status = {e["json"]["status"]: e for e in events}
    expected_level = {200: "INFO", 404: "WARNING", 500: "ERROR"}
    for status, response in responses.items():
        record = by_status[status]["json"]
        _version, trace_id, span_id, _flags = response.headers["traceresponse"].split("-")
        assert record["trace_id"] == trace_id
        assert record["span_id"] == span_id
        assert record["xray_trace_id"] == f"1-{trace_id[:8]}-{trace_id[8:]}"
        assert record["level"] == expected_level[status]
        assert {"method", "path", "duration_ms", "remote_addr", "user_agent", "message"} <= set(record)
    assert by_status[200]["json"]["path"] == "/api/activities/home?term=x"
    # One stream per worker process.
    assert {e["logStreamName"] for e in events} == {f"backend-flask/{socket.gethostname()}/{os.getpid()}"}

    health = client.get("/api/health-check").get_json()["integrations"]["cloudwatch"]
    assert health["enabled"] is True
    assert health["sent"] >= 3 and health["dropped"] == 0 and health["failed"] == 0


def test_app_shutdown_delivers_queued_events_last(cloudwatch_app, moto_logs, log_group):
    app = cloudwatch_app(moto_logs.endpoint, log_group)
    flushes = app.extensions["cruddur.shutdown"]
    assert max(flushes._callbacks, key=lambda c: c[0])[1] == "cloudwatch"  # logs go last
    client = app.test_client()
    for _ in range(5):
        assert client.get("/api/activities/home").status_code == 200
    flushes.run()  # what SIGTERM / interpreter exit runs; nothing was sent yet (2.5 s send interval)

    records = moto_logs.records(log_group)  # no waiting: shutdown returns after delivery
    assert len([r for r in records if r["logger"] == ACCESS]) == 5
    status = app.extensions["cruddur.integrations"]["cloudwatch"]
    assert status.sent == len(records) and status.failed == 0


@pytest.mark.parametrize("fault", ["refused", "blackhole"])
def test_unreachable_endpoint_neither_blocks_startup_nor_requests(cloudwatch_app, log_group, fault):
    with FaultyHTTPServer(mode="blackhole") as blackhole:
        endpoint = blackhole.url if fault == "blackhole" else f"http://127.0.0.1:{closed_port()}"
        started = time.monotonic()
        app = cloudwatch_app(endpoint, log_group)
        assert time.monotonic() - started < 2.0
        client = app.test_client()
        for _ in range(20):
            started = time.monotonic()
            assert client.get("/api/activities/home").status_code == 200
            assert time.monotonic() - started < 1.0
        handler = app.extensions["cruddur.cloudwatch"]
        status = app.extensions["cruddur.integrations"]["cloudwatch"]
        assert not handler.flush(0.5)  # send now instead of after the interval
        if fault == "refused":
            wait_for(lambda: status.failed >= 1, timeout=20, message="the refused send was not counted")
        else:
            wait_for(lambda: blackhole.request_count >= 1, timeout=10, message="the sender never connected")
        assert status.status()["queued"] >= 20
        started = time.monotonic()
        handler.shutdown(0.2)  # the sender is stuck in a read (5 s timeout) or a retry: give up and count
        # Bounded: well under the read timeout it would wait out otherwise, with room for a loaded machine.
        assert time.monotonic() - started < 2.5
        assert status.dropped >= 20 and status.sent == 0 and status.status()["queued"] == 0


def test_the_backlog_is_bounded_and_drops_are_counted(cloudwatch_app, log_group, caplog, monkeypatch):
    """Beyond CAPACITY lines not yet delivered (anywhere: our queue, watchtower's, the batch), new ones are dropped."""
    monkeypatch.setattr(cloudwatch, "CAPACITY", 50)
    with FaultyHTTPServer(mode="blackhole") as blackhole:
        app = cloudwatch_app(blackhole.url, log_group)
        handler = app.extensions["cruddur.cloudwatch"]
        status = app.extensions["cruddur.integrations"]["cloudwatch"]
        logger = logging.getLogger("tests.cloudwatch.capacity")
        already = status.status()["queued"]  # the startup lines
        for i in range(50 - already):
            logger.warning("event %d", i)
        handler.flush(0.0)
        wait_for(lambda: blackhole.request_count >= 1, timeout=10, message="the sender never connected")
        with caplog.at_level(logging.WARNING, logger="cruddur.telemetry.cloudwatch"):
            for i in range(9):
                logger.warning("over %d", i)
        assert status.status()["queued"] == 50
        assert status.dropped == 9
        full = [r for r in caplog.records if "dropping log lines" in r.getMessage()]
        assert len(full) == 1  # rate-limited: one line, not nine
        handler.shutdown(0.2)
        assert status.dropped == 9 + 50  # everything accepted but never delivered is counted too
        assert status.sent == 0


@pytest.fixture
def botocore_debug():
    """botocore at DEBUG logs every request it makes: shipping those would feed itself."""
    botocore = logging.getLogger("botocore")
    previous = botocore.level
    botocore.setLevel(logging.DEBUG)  # setLevel (not assignment) also resets the loggers' level caches
    yield
    botocore.setLevel(previous)


def test_aws_sdk_and_own_records_are_never_shipped(cloudwatch_app, moto_logs, log_group, botocore_debug):
    app = cloudwatch_app(moto_logs.endpoint, log_group)
    handler = app.extensions["cruddur.cloudwatch"]
    excluded = ["watchtower", "botocore.endpoint", "boto3.resources", "urllib3.connectionpool", "s3transfer"]
    excluded += ["cruddur.telemetry.cloudwatch", "cruddur.telemetry.cloudwatch.api"]
    for name in excluded:
        logging.getLogger(name).warning("excluded-marker from %s", name)
    # A message of its own per run: the library rate limit is per process and per message text.
    logging.getLogger("botocore_lookalike").warning(f"kept-marker {log_group}")
    assert handler.flush(10)
    assert handler.flush(10)  # a second batch: the first one's botocore DEBUG lines had their chance
    records = moto_logs.records(log_group)
    assert any(r["message"] == f"kept-marker {log_group}" for r in records)
    assert not [r for r in records if "excluded-marker" in r["message"]]
    assert not [r for r in records if r["logger"].split(".")[0] in {"botocore", "urllib3", "boto3"}]


def test_off_when_the_log_group_is_unset(app, client):
    assert not cloudwatch_handlers()
    assert "cruddur.cloudwatch" not in app.extensions
    status = client.get("/api/health-check").get_json()["integrations"]["cloudwatch"]
    assert status["enabled"] is False and "CLOUDWATCH_LOG_GROUP" in status["reason"]


def test_off_without_a_region(config, aws_env, monkeypatch, log_group):
    aws_env("http://127.0.0.1:9")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    app = create_app(config.replace(cloudwatch_log_group=log_group))
    assert not cloudwatch_handlers()
    assert app.extensions["cruddur.integrations"]["cloudwatch"].enabled is False


def test_aws_region_is_a_fallback_for_boto3s_region(cloudwatch_app, moto_logs, log_group, monkeypatch, config):
    cloudwatch_app(moto_logs.endpoint, log_group)  # sets the fake credentials and endpoint
    for handler in cloudwatch_handlers():
        logging.getLogger().removeHandler(handler)
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    app = create_app(config.replace(cloudwatch_log_group=log_group, aws_region=REGION))
    handler = app.extensions["cruddur.cloudwatch"]
    try:
        assert app.extensions["cruddur.integrations"]["cloudwatch"].enabled is True
        app.test_client().get("/api/health-check")
        handler.shutdown(5)
        assert moto_logs.records(log_group)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


@pytest.mark.slow
def test_each_gunicorn_worker_ships_its_own_stream(app_server_factory, moto_logs, log_group):
    server = app_server_factory({**moto_logs.env(), "CLOUDWATCH_LOG_GROUP": log_group}, workers=2)
    workers = server.wait_for_workers(2)
    for _ in range(10):
        with urllib.request.urlopen(server.url + "/api/activities/home", timeout=10) as response:
            assert response.status == 200
    _duration, returncode = server.stop()
    assert returncode == 0

    events = moto_logs.events(log_group)
    access = [e for e in events if (e["json"] or {}).get("path") == "/api/activities/home"]
    assert len(access) == 10  # shipped at SIGTERM, nothing lost
    started = [e for e in events if (e["json"] or {}).get("message") == "cruddur started"]
    streams = {e["logStreamName"] for e in started}
    assert streams == {f"backend-flask/{socket.gethostname()}/{pid}" for pid in workers}


def test_the_handlers_are_stock(cloudwatch_app, log_group):
    with FaultyHTTPServer(mode="blackhole") as blackhole:
        app = cloudwatch_app(blackhole.url, log_group)
        handler = app.extensions["cruddur.cloudwatch"]
        assert isinstance(handler, logging.handlers.QueueHandler)
        assert type(handler.cloudwatch) is watchtower.CloudWatchLogHandler
        assert handler.listener.handlers == (handler.cloudwatch,)


def test_lines_leave_without_a_flush_within_the_send_interval(cloudwatch_app, moto_logs, log_group):
    app = cloudwatch_app(moto_logs.endpoint, log_group)
    status = app.extensions["cruddur.integrations"]["cloudwatch"]
    logger = logging.getLogger("tests.cloudwatch.interval")
    started = time.monotonic()
    for i in range(30):
        logger.warning("interval %d", i)
    wait_for(lambda: status.sent >= 30, timeout=15, message="the lines never left without a flush")
    assert time.monotonic() - started < SEND_INTERVAL_SECONDS + 5.0  # the interval, and moto's first answers
    assert len([r for r in moto_logs.records(log_group) if r["message"].startswith("interval ")]) == 30


def test_close_without_the_apps_shutdown_is_bounded(cloudwatch_app, log_group):
    """logging.shutdown() at exit calls flush() and close(): both are bounded, whatever CloudWatch does."""
    with FaultyHTTPServer(mode="blackhole") as blackhole:
        app = cloudwatch_app(blackhole.url, log_group)
        handler = app.extensions["cruddur.cloudwatch"]
        logging.getLogger("tests.cloudwatch.close").warning("stuck")
        handler.flush(0.0)
        wait_for(lambda: blackhole.request_count >= 1, timeout=10, message="the sender never connected")
        started = time.monotonic()
        assert handler.flush() is False
        handler.close()
        handler.cloudwatch.flush()  # watchtower's own, which logging.shutdown() calls next: closed, returns
        assert time.monotonic() - started < 2 * FLUSH_TIMEOUT_SECONDS + 1.0


def test_rejected_events_are_counted_as_dropped(cloudwatch_app, moto_logs, log_group):
    app = cloudwatch_app(moto_logs.endpoint, log_group)
    handler = app.extensions["cruddur.cloudwatch"]
    status = app.extensions["cruddur.integrations"]["cloudwatch"]
    assert handler.flush(10)
    before = status.status()
    old = logging.LogRecord("tests.cloudwatch.old", logging.WARNING, __file__, 1, "from last month", None, None)
    old.created = time.time() - 30 * 86400  # CloudWatch refuses events older than 14 days
    logging.getLogger("tests.cloudwatch.old").handle(old)
    logging.getLogger("tests.cloudwatch.old").warning("from now")
    assert handler.flush(10)
    after = status.status()
    assert after["dropped"] - before["dropped"] == 1 and after["sent"] - before["sent"] >= 1
    assert "from last month" not in [r["message"] for r in moto_logs.records(log_group)]


def test_library_lines_are_rate_limited_in_cloudwatch_as_on_stdout(cloudwatch_app, moto_logs, log_group, capsys):
    app = cloudwatch_app(moto_logs.endpoint, log_group)
    noisy = logging.getLogger("opentelemetry.exporter.otlp.test")
    marker = f"export failed {log_group}"
    for _ in range(5):
        try:
            raise ConnectionError("vendor down")
        except ConnectionError:
            noisy.error(marker, exc_info=True)
    assert app.extensions["cruddur.cloudwatch"].flush(10)
    shipped = [r for r in moto_logs.records(log_group) if r["message"].startswith(marker)]
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if marker in line]
    assert len(shipped) == len(printed) == 1
    assert shipped[0]["message"] == printed[0]["message"] == f"{marker} (ConnectionError: vendor down)"
    assert "exception" not in shipped[0] and "exception" not in printed[0]  # no traceback in either
    assert shipped[0]["level"] == "WARNING"


def test_a_stream_deleted_under_us_is_recreated_by_watchtower(cloudwatch_app, moto_logs, log_group):
    app = cloudwatch_app(moto_logs.endpoint, log_group)
    handler = app.extensions["cruddur.cloudwatch"]
    status = app.extensions["cruddur.integrations"]["cloudwatch"]
    logger = logging.getLogger("tests.cloudwatch.recreate")
    logger.warning("before")
    assert handler.flush(10)
    stream = f"backend-flask/{socket.gethostname()}/{os.getpid()}"
    moto_logs.client().delete_log_stream(logGroupName=log_group, logStreamName=stream)
    logger.warning("not lost with the stream")
    # PutLogEvents: ResourceNotFoundException; the stream is created again, watchtower's next attempt lands.
    assert handler.flush(10)
    assert status.status()["dropped"] == 0 and status.status()["failed"] == 1
    assert "not lost with the stream" in [r["message"] for r in moto_logs.records(log_group)]
