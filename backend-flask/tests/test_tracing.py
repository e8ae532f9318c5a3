"""OpenTelemetry and X-Ray, in process, against a real OTLP/HTTP receiver and a UDP X-Ray listener."""

from __future__ import annotations

import time

import pytest

from cruddur import create_app
from cruddur.config import HONEYCOMB_ENDPOINT, Config
from tests.support.waiting import wait_for
from tests.support.xray_listener import flatten, xray_trace_id

W3C_TRACE = "0af7651916cd43dd8448eb211c80319c"
W3C_PARENT = "b7ad6b7169203331"


def traceresponse_ids(response):
    _, trace_id, span_id, _ = response.headers["traceresponse"].split("-")
    return trace_id, span_id


def flush(app):
    app.extensions["cruddur.tracer_provider"].force_flush()


@pytest.fixture
def traced_app(config, otlp_receiver):
    app = create_app(config.replace(otlp_endpoint=otlp_receiver.url))
    yield app


def test_config_honeycomb_shortcut_and_standard_variables():
    config = Config.from_env({"HONEYCOMB_API_KEY": "hc-key"})
    assert config.traces_url == f"{HONEYCOMB_ENDPOINT}/v1/traces"
    assert config.otlp_headers == {"x-honeycomb-team": "hc-key"}
    config = Config.from_env(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/", "OTEL_EXPORTER_OTLP_HEADERS": "a=1,B=x%3Dy"}
    )
    assert config.traces_url == "http://collector:4318/v1/traces"
    assert config.otlp_headers == {"a": "1", "b": "x=y"}
    assert Config.from_env({}).traces_url == ""
    assert Config.from_env({}).span_queue_size == 8192
    assert Config.from_env({"OTEL_BSP_MAX_QUEUE_SIZE": "100"}).span_queue_size == 100
    assert Config.from_env({}).span_batch_size == 128
    assert Config.from_env({"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "512"}).span_batch_size == 512
    with pytest.raises(ValueError):
        Config.from_env({"CRUDDUR_ENV": "staging"})


def db_system(config) -> str:
    """The OpenTelemetry db.system of the test's database."""
    return "sqlite" if config.database.startswith("sqlite") else "postgresql"


def test_request_spans_reach_the_receiver_with_resource_and_service_attributes(traced_app, otlp_receiver, config):
    response = traced_app.test_client().get("/api/activities/home")
    trace_id, span_id = traceresponse_ids(response)
    flush(traced_app)
    spans = wait_for(
        lambda: len(otlp_receiver.spans_for_trace(trace_id)) >= 4 and otlp_receiver.spans_for_trace(trace_id)
    )
    by_name = {s["name"]: s for s in spans}
    server = by_name["GET /api/activities/home"]
    assert (server["span_id"], server["kind"], server["parent_span_id"]) == (span_id, "SERVER", None)
    assert server["resource"]["service.name"] == "backend-flask"
    assert server["resource"]["service.version"] == "test"
    assert server["resource"]["deployment.environment"] == "test"
    home = by_name["home_activities"]
    assert home["parent_span_id"] == span_id
    assert home["attributes"]["app.result_length"] == len(response.json)
    assert "app.now" in home["attributes"]
    sql = [s for s in spans if s["attributes"].get("db.system") == db_system(config)]
    assert sql and all(s["parent_span_id"] == home["span_id"] for s in sql)
    assert all("FROM activities" in s["attributes"]["db.statement"] for s in sql)


def test_trace_ids_are_xray_compatible(client):
    trace_id, _ = traceresponse_ids(client.get("/api/health-check"))
    assert abs(int(trace_id[:8], 16) - time.time()) < 600  # the first 8 hex digits are epoch seconds


def test_export_headers_are_sent_and_telemetry_traffic_is_not_traced(config, otlp_receiver):
    app = create_app(config.replace(otlp_endpoint=otlp_receiver.url, otlp_headers={"x-honeycomb-team": "k1"}))
    client = app.test_client()
    for _ in range(3):
        client.get("/api/activities/home")
        flush(app)
    wait_for(lambda: otlp_receiver.span_count >= 3)
    assert all(h.get("x-honeycomb-team") == "k1" for h in otlp_receiver.headers())
    # The exporter's own POSTs (made with `requests`, which is instrumented) are never spans.
    assert not [s for s in otlp_receiver.spans() if s["kind"] == "CLIENT" and "db.system" not in s["attributes"]]


def test_traceparent_is_continued(traced_app, otlp_receiver):
    response = traced_app.test_client().get(
        "/api/activities/home", headers={"traceparent": f"00-{W3C_TRACE}-{W3C_PARENT}-01"}
    )
    trace_id, span_id = traceresponse_ids(response)
    assert trace_id == W3C_TRACE
    flush(traced_app)
    server = wait_for(lambda: [s for s in otlp_receiver.spans_for_trace(W3C_TRACE) if s["kind"] == "SERVER"])[0]
    assert (server["span_id"], server["parent_span_id"]) == (span_id, W3C_PARENT)


@pytest.mark.parametrize(
    "header",
    [
        "Root=1-6b09fd17-7c53a535e19af8e1438b6781;Parent=53995c3f42cd8ad8;Sampled=1",
        "Root=1-6b09fd17-7c53a535e19af8e1438b6781",  # what an AWS load balancer sends
    ],
)
def test_xray_header_is_continued_without_xray_enabled(client, header):
    response = client.get("/api/activities/home", headers={"X-Amzn-Trace-Id": header})
    assert traceresponse_ids(response)[0] == "6b09fd177c53a535e19af8e1438b6781"
    # ...and the next request, without a header, starts a new trace.
    assert traceresponse_ids(client.get("/api/health-check"))[0] != "6b09fd177c53a535e19af8e1438b6781"


def test_console_exporter_prints_spans(config, capsys):
    app = create_app(config.replace(traces_exporter="console"))
    trace_id, _ = traceresponse_ids(app.test_client().get("/api/activities/home"))
    flush(app)
    printed = capsys.readouterr().out
    assert f'"trace_id": "0x{trace_id}"' in printed
    assert '"name": "home_activities"' in printed


def test_export_off_reports_status(client):
    status = client.get("/api/health-check").json["integrations"]["opentelemetry"]
    assert status["enabled"] is False
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in status["reason"]


def test_secret_query_parameters_never_reach_spans_or_logs(traced_app, otlp_receiver, capsys):
    secret = "s3cr3t-value-123"
    response = traced_app.test_client().get(
        f"/api/activities/search?term=cloud&token={secret}&api_key={secret}",
        headers={"Authorization": f"Bearer {secret}", "Cookie": f"session={secret}"},
    )
    assert response.status_code == 200
    trace_id, _ = traceresponse_ids(response)
    flush(traced_app)
    spans = wait_for(lambda: otlp_receiver.spans_for_trace(trace_id))
    assert secret not in repr(spans)
    server = next(s for s in spans if s["kind"] == "SERVER")
    assert "token=REDACTED" in repr(server["attributes"])
    logs = capsys.readouterr().out
    assert "token=REDACTED" in logs and secret not in logs


# -- X-Ray ----------------------------------------------------------------------------------------
@pytest.fixture
def xray_app(config, otlp_receiver, xray_listener):
    return create_app(config.replace(otlp_endpoint=otlp_receiver.url, xray_daemon_address=xray_listener.daemon_address))


def test_xray_segment_shares_the_opentelemetry_trace(xray_app, otlp_receiver, xray_listener, config):
    response = xray_app.test_client().get(
        "/api/activities/home", headers={"X-Amzn-Trace-Id": "Root=1-6b09fd17-7c53a535e19af8e1438b6781;Sampled=1"}
    )
    trace_id, span_id = traceresponse_ids(response)
    assert trace_id == "6b09fd177c53a535e19af8e1438b6781"
    assert response.headers["X-Amzn-Trace-Id"].startswith(f"Root={xray_trace_id(trace_id)}")
    segment = wait_for(lambda: xray_listener.segments())[0]
    assert segment["trace_id"] == xray_trace_id(trace_id)
    assert segment["id"] == span_id
    assert segment["http"]["response"]["status"] == 200
    documents = flatten(segment)
    home = next(d for d in documents if d["name"] == "home_activities")
    assert home["annotations"]["app_result_length"] == len(response.json)
    sql = [d for d in documents if "sql" in d]
    database_type = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[db_system(config)]
    assert sql and all(d["sql"]["database_type"] == database_type for d in sql)
    if db_system(config) == "postgresql":  # the server's URL and user, never a password
        assert all(d["sql"]["url"].startswith("postgresql://postgres@127.0.0.1:") for d in sql)
        assert all(d["sql"]["user"] == "postgres" for d in sql)
    flush(xray_app)
    otel_ids = {s["span_id"] for s in wait_for(lambda: otlp_receiver.spans_for_trace(trace_id))}
    assert {d["id"] for d in documents} <= otel_ids  # every subsegment is an OpenTelemetry span


def test_xray_continues_a_w3c_trace_with_the_callers_parent(xray_app, xray_listener):
    w3c_trace = f"{int(time.time()):08x}" + W3C_TRACE[8:]  # an id X-Ray takes: its time is now
    response = xray_app.test_client().get(
        "/api/activities/home", headers={"traceparent": f"00-{w3c_trace}-{W3C_PARENT}-01"}
    )
    assert traceresponse_ids(response)[0] == w3c_trace
    segment = wait_for(lambda: xray_listener.segments())[0]
    assert (segment["trace_id"], segment["parent_id"]) == (xray_trace_id(w3c_trace), W3C_PARENT)
    assert response.headers["X-Amzn-Trace-Id"] == f"Root={xray_trace_id(w3c_trace)};Sampled=1"


def test_xray_unsampled_requests_send_nothing(xray_app, xray_listener):
    client = xray_app.test_client()
    for _ in range(5):
        client.get(
            "/api/activities/home", headers={"X-Amzn-Trace-Id": "Root=1-6b09fd17-7c53a535e19af8e1438b6782;Sampled=0"}
        )
    client.get("/api/health-check", headers={"X-Amzn-Trace-Id": "Root=1-6b09fd17-7c53a535e19af8e1438b6783;Sampled=1"})
    wait_for(lambda: xray_listener.segments())
    assert {s["trace_id"] for s in xray_listener.segments()} == {"1-6b09fd17-7c53a535e19af8e1438b6783"}


def test_xray_without_a_daemon_is_quiet(config, capsys):
    from tests.support.xray_listener import XRayListener

    with XRayListener(mode="refuse") as nobody:
        app = create_app(config.replace(xray_daemon_address=nobody.daemon_address))
        client = app.test_client()
        for _ in range(20):
            assert client.get("/api/activities/home").status_code == 200
    output = capsys.readouterr()
    assert "Traceback" not in output.out + output.err


def test_xray_off_installs_nothing(app):
    assert "cruddur.xray" not in app.extensions
    assert app.test_client().get("/api/health-check").json["integrations"]["xray"]["enabled"] is False


def test_xray_takes_centralized_sampling_rules_from_the_daemon(config):
    """The daemon's rules (here: sample everything) replace the local ones (1/s + 10%)."""
    from tests.support.xray_listener import XRayListener, sampling_rule

    rules = [sampling_rule("everything", 1, 1.0, 0), sampling_rule("Default", 10000, 0.05, 1)]
    with XRayListener(sampling_rules=rules) as daemon:
        app = create_app(config.replace(xray_daemon_address=daemon.daemon_address))
        client = app.test_client()
        client.get("/api/health-check")  # the first request starts the sampler's pollers
        wait_for(lambda: any(r.path.startswith("/GetSamplingRules") for r in daemon._sampling.requests()))
        time.sleep(0.5)  # the poller loads the rules it fetched into its cache
        before = len(daemon.segments())
        for _ in range(20):
            client.get("/api/activities/home")
        wait_for(lambda: len(daemon.segments()) - before == 20)


def test_no_secret_reaches_an_xray_segment(xray_app, xray_listener):
    secret = "s3cr3t-value-456"
    xray_app.test_client().get(
        f"/api/activities/search?term=cloud&access_token={secret}",
        headers={
            "Authorization": f"Bearer {secret}",
            "Cookie": f"session={secret}",
            "X-Amzn-Trace-Id": "Root=1-6b09fd17-7c53a535e19af8e1438b6799;Sampled=1",
        },
    )
    segment = wait_for(lambda: xray_listener.segments())[0]
    assert segment["trace_id"] == "1-6b09fd17-7c53a535e19af8e1438b6799"
    assert secret not in repr(xray_listener.documents())


def test_xray_dynamic_naming_from_aws_xray_url(config, xray_listener):
    sampled = {"X-Amzn-Trace-Id": "Root=1-6b09fd17-7c53a535e19af8e1438b6798;Sampled=1"}
    named = create_app(config.replace(xray_daemon_address=xray_listener.daemon_address, xray_url="*4567*"))
    named.test_client().get("/api/health-check", headers=sampled, base_url="http://cruddur-4567.example.test")
    named.test_client().get("/api/health-check", headers=sampled, base_url="http://other.example.test")
    names = [s["name"] for s in wait_for(lambda: len(xray_listener.segments()) == 2 and xray_listener.segments())]
    # A host that matches the pattern names the segment; any other falls back to the service name.
    assert names == ["cruddur-4567.example.test", "backend-flask"]


def test_each_export_carries_at_most_one_batch_of_128_spans_by_default(config, otlp_receiver):
    """Not the specification's 512: one export's encoding holds the interpreter while requests wait."""
    app = create_app(config.replace(otlp_endpoint=otlp_receiver.endpoint))
    tracer = app.extensions["cruddur.tracer"]
    for i in range(300):
        tracer.start_span(f"span {i}").end()
    assert app.extensions["cruddur.tracer_provider"].force_flush(10_000)
    app.extensions["cruddur.shutdown"].run()
    counts = [export["span_count"] for export in otlp_receiver.exports()]
    assert sum(counts) == 300 and max(counts) == 128


def test_span_queue_is_bounded_by_configuration_and_every_span_is_counted(config):
    """With export stuck, spans beyond OTEL_BSP_MAX_QUEUE_SIZE are refused and counted as dropped."""
    from tests.support.faulty_http import FaultyHTTPServer

    with FaultyHTTPServer(mode="blackhole") as blackhole:
        app = create_app(config.replace(otlp_endpoint=blackhole.url, span_queue_size=10, graceful_timeout=4))
        tracer = app.extensions["cruddur.tracer"]
        for i in range(10):  # one full batch: exported at once, and stuck on the blackhole
            tracer.start_span(f"first {i}").end()
        wait_for(lambda: blackhole.request_count >= 1, timeout=10, message="the first batch was never sent")
        for i in range(15):
            tracer.start_span(f"then {i}").end()
        status = app.extensions["cruddur.integrations"]["opentelemetry"].status()
        # The batch in flight still takes its room in the queue: all 15 later spans are refused.
        assert (status["produced"], status["queued"], status["dropped"], status["sent"]) == (25, 10, 15, 0)
        app.extensions["cruddur.shutdown"].run()
        status = app.extensions["cruddur.integrations"]["opentelemetry"].status()
        assert (status["produced"], status["queued"], status["dropped"]) == (25, 0, 25)
