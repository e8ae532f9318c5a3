"""With healthy vendors nothing is lost: N requests over 3 gunicorn workers, then SIGTERM, and every
span, access-log event and Rollbar item is at the stand-ins, exactly once; one request's trace id is in
all four tools."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.support.xray_listener import otel_trace_id

from .load import get_json, run_load

pytestmark = pytest.mark.slow

N = 300
HEALTH = "/api/health-check"


def _path(span) -> str:
    attributes = span["attributes"]
    return str(attributes.get("url.path") or attributes.get("http.target") or attributes.get("http.route") or "")


def test_nothing_is_lost_across_three_workers_and_sigterm(
    app_server_factory, otlp_receiver, xray_listener, rollbar_receiver, moto_logs, log_group
):
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
        "AWS_XRAY_DAEMON_ADDRESS": xray_listener.daemon_address,
        "ROLLBAR_ENDPOINT": rollbar_receiver.endpoint,
        "ROLLBAR_ACCESS_TOKEN": f"token-{uuid.uuid4().hex}",
        "CLOUDWATCH_LOG_GROUP": log_group,
        **moto_logs.env(),
    }
    server = app_server_factory(env, workers=3)
    workers = server.wait_for_workers()

    load = run_load(server.url, concurrency=6, duration=120, max_requests=N)
    assert load.count == N and load.errors == 0, load.summary()
    rollbar_calls = sum(1 for s in load.samples if s.call == "rollbar_test")
    assert rollbar_calls == N // 10

    # The sample request: continued from an X-Ray header that says "sampled" (X-Ray samples 1/s + 10%).
    root = f"1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"
    status, headers, _body = get_json(
        server.url, "/rollbar/test/exception", headers={"X-Amzn-Trace-Id": f"Root={root};Sampled=1"}
    )
    assert status == 500
    trace_id = headers["traceresponse"].split("-")[1]
    assert trace_id == otel_trace_id(root)

    duration, returncode = server.stop()
    assert returncode == 0 and duration < 35

    sent = N + 1
    served_trace_ids = {s.traceresponse.split("-")[1] for s in load.samples} | {trace_id}
    assert len(served_trace_ids) == sent

    # OpenTelemetry: exactly one server span per request (health checks of the runner aside).
    server_spans = [s for s in otlp_receiver.spans() if s["kind"] == "SERVER" and not _path(s).startswith(HEALTH)]
    assert len(server_spans) == sent, f"{len(server_spans)} server spans for {sent} requests"
    assert {s["trace_id"] for s in server_spans} == served_trace_ids

    # CloudWatch Logs: exactly one access-log event per request, from every worker's stream.
    events = [
        e
        for e in moto_logs.events(log_group)
        if e["json"] and e["json"].get("logger") == "cruddur.access" and e["json"].get("path") != HEALTH
    ]
    assert len(events) == sent, f"{len(events)} access-log events for {sent} requests"
    assert {e["json"]["trace_id"] for e in events} == served_trace_ids
    assert all(e["json"]["status"] in (200, 500) and e["json"]["method"] in ("GET", "POST") for e in events)
    streams = {e["logStreamName"] for e in events}
    assert {int(stream.rsplit("/", 1)[1]) for stream in streams} == set(workers), streams

    # Rollbar: every item (a warning per /rollbar/test, the error of the sample request).
    items = rollbar_receiver.items()
    assert len(items) == rollbar_calls + 1
    assert sum(1 for item in items if item["level"] == "warning") == rollbar_calls

    # One trace id in all four tools for the sample request.
    assert [s for s in server_spans if s["trace_id"] == trace_id]
    assert xray_listener.documents_for_trace(root), f"no X-Ray segment for {root}"
    assert [e for e in events if e["json"]["trace_id"] == trace_id and e["json"]["status"] == 500]
    (error_item,) = [item for item in items if item["level"] == "error"]
    assert error_item["custom"]["trace_id"] == trace_id
