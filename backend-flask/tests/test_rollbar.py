"""Rollbar integration, against a Rollbar API stand-in on loopback (real HTTP, real JSON items)."""

from __future__ import annotations

import ast
import http.client
import inspect
import logging
import threading
import time

import pytest
import requests
import rollbar
from flask import got_request_exception
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from werkzeug.serving import make_server

from cruddur import create_app
from cruddur.telemetry import rollbar as rollbar_integration
from cruddur.telemetry.rollbar import reporter as rollbar_reporter
from cruddur.telemetry.rollbar import routes as rollbar_routes
from tests.support.rollbar_receiver import RollbarReceiver, item_message
from tests.support.waiting import wait_for

TOKEN = "rollbar-test-token-0123456789"
SENDER_THREAD = "cruddur-rollbar-sender"


@pytest.fixture
def database_url(tmp_path) -> str:
    """Shipping does not depend on the database: SQLite only (not both databases)."""
    return f"sqlite:///{tmp_path / 'cruddur.db'}"


@pytest.fixture
def receiver():
    """A Rollbar API stand-in on 127.0.0.1."""
    with RollbarReceiver() as server:
        yield server


@pytest.fixture
def rollbar_config(config, receiver):
    """The test configuration with Rollbar pointed at the receiver."""
    return config.replace(rollbar_access_token=TOKEN, rollbar_endpoint=receiver.endpoint, user_handle="bayko")


@pytest.fixture
def rollbar_app(rollbar_config):
    """An app with Rollbar on; its reporter is stopped afterwards."""
    app = create_app(rollbar_config)
    yield app
    app.extensions[rollbar_integration.EXTENSION].flush(0)


def reporter_of(app) -> rollbar_reporter.RollbarReporter:
    """The app's Rollbar reporter."""
    return app.extensions[rollbar_integration.EXTENSION]


def status_of(app) -> dict:
    """The Rollbar counters the health check shows."""
    return app.extensions["cruddur.integrations"]["rollbar"].status()


def trace_id_of(response) -> str:
    """The trace id in a `traceresponse: 00-<trace>-<span>-<flags>` header."""
    return response.headers["traceresponse"].split("-")[1]


def test_hello_world_is_a_warning_item(rollbar_app, rollbar_config, receiver):
    response = rollbar_app.test_client().get("/rollbar/test")
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "Hello World!"

    [item] = receiver.wait_for_items()
    assert item["level"] == "warning"
    assert item_message(item) == "Hello World!"
    assert item["environment"] == (rollbar_config.rollbar_environment or rollbar_config.env)
    assert item["code_version"] == "test"
    assert item["person"] == {"id": "bayko", "username": "bayko"}
    assert item["request"]["route"] == "/rollbar/test"
    assert item["custom"]["trace_id"] == trace_id_of(response)
    assert receiver.payloads()[0]["access_token"] == TOKEN
    assert receiver.headers()[0]["x-rollbar-access-token"] == TOKEN
    wait_for(lambda: status_of(rollbar_app)["sent"] == 1)
    assert status_of(rollbar_app) | {"last_error_at": None} == {
        "enabled": True,
        "reason": status_of(rollbar_app)["reason"],
        "queued": 0,
        "sent": 1,
        "dropped": 0,
        "failed": 0,
        "last_error": None,
        "last_error_at": None,
    }
    assert TOKEN not in status_of(rollbar_app)["reason"]


def test_unhandled_exception_is_an_error_item_with_request_person_and_trace(rollbar_app, rollbar_config, receiver):
    response = rollbar_app.test_client().get("/rollbar/test/exception?page=2", headers={"X-Request-Note": "hi"})
    assert response.status_code == 500
    assert response.get_json()["errors"] == ["internal_server_error"]
    assert "Traceback" not in response.get_data(as_text=True)

    [item] = receiver.wait_for_items()
    assert item["level"] == "error"
    trace = item["body"]["trace"]
    assert trace["exception"] == {"class": "RuntimeError", "message": "Cruddur test exception for Rollbar"}
    assert trace["frames"][-1]["method"] == "test_exception"
    assert item["environment"] == (rollbar_config.rollbar_environment or rollbar_config.env)
    assert item["code_version"] == "test"
    assert item["person"] == {"id": "bayko", "username": "bayko"}
    req = item["request"]
    assert req["method"] == "GET"
    assert req["url"] == "http://localhost/rollbar/test/exception?page=2"
    assert req["route"] == "/rollbar/test/exception"
    assert req["query_string"] == "page=2"
    assert req["GET"] == {"page": "2"}
    assert req["headers"]["X-Request-Note"] == "hi"
    trace_id = trace_id_of(response)
    assert item["custom"]["trace_id"] == trace_id
    assert item["custom"]["xray_trace_id"] == f"1-{trace_id[:8]}-{trace_id[8:]}"
    assert "honeycomb_trace_url" not in item["custom"]


def test_incoming_traceparent_is_the_items_trace_id(rollbar_app, receiver):
    trace_id = "5f1e7a3b9c0d4e2fa1b2c3d4e5f60718"
    response = rollbar_app.test_client().get(
        "/rollbar/test/exception", headers={"traceparent": f"00-{trace_id}-1111111111111111-01"}
    )
    assert trace_id_of(response) == trace_id
    [item] = receiver.wait_for_items()
    assert item["custom"]["trace_id"] == trace_id


def test_honeycomb_trace_link_when_team_and_environment_are_set(rollbar_config, receiver):
    app = create_app(rollbar_config.replace(honeycomb_team="cruddur-team", honeycomb_environment="dev env"))
    try:
        response = app.test_client().get("/rollbar/test")
        [item] = receiver.wait_for_items()
        assert item["custom"]["honeycomb_trace_url"] == (
            "https://ui.honeycomb.io/cruddur-team/environments/dev%20env/trace?trace_id=" + trace_id_of(response)
        )
    finally:
        reporter_of(app).flush(0)


SECRETS = {
    "authorization": "Bearer secret-authorization-5e1f",
    "cookie": "session=secret-cookie-77aa",
    "set-cookie": "id=secret-set-cookie-0c3d",
    "x-honeycomb-team": "secret-honeycomb-key-91b2",
    "x-api-key": "secret-api-key-header-4d6e",
    "x-amz-security-token": "secret-aws-session-token-8f0a",
    "proxy-authorization": "Basic secret-proxy-2b7c",
}
QUERY_SECRETS = {
    "token": "secret-token-q1",
    "access_token": "secret-access-token-q2",
    "api_key": "secret-api-key-q3",
    "key": "secret-key-q4",
    "password": "secret-password-q5",
    "secret": "secret-secret-q6",
    "AWS_SECRET_ACCESS_KEY": "secret-aws-secret-q7",
}


@pytest.fixture
def served(rollbar_app):
    """The app behind a real HTTP server on 127.0.0.1 (werkzeug), so requests go through the wire."""
    server = make_server("127.0.0.1", 0, rollbar_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("path", ["/rollbar/test/exception", "/rollbar/test"])
def test_secrets_never_reach_rollbar(served, receiver, path):
    query = "&".join(f"{k}={v}" for k, v in QUERY_SECRETS.items()) + "&page=2"
    conn = http.client.HTTPConnection("127.0.0.1", served.server_port, timeout=10)
    conn.request("GET", f"{path}?{query}", headers={**SECRETS, "X-Visible": "kept"})
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status in (200, 500)

    [item] = receiver.wait_for_items()
    raw = receiver.requests()[-1].body.decode()
    for secret in [*SECRETS.values(), *QUERY_SECRETS.values()]:
        assert secret.split()[-1].split("=")[-1] not in raw, secret
    headers = {name.lower(): value for name, value in item["request"]["headers"].items()}
    assert headers["x-visible"] == "kept"
    for name in SECRETS:
        assert name in headers and set(headers[name]) == {"*"}, name
    assert item["request"]["GET"]["page"] == "2"
    assert "page=2" in item["request"]["url"] and "page=2" in item["request"]["query_string"]
    assert "token=REDACTED" in item["request"]["query_string"]


def test_acting_user_comes_from_configuration_not_the_request(rollbar_app, receiver):
    rollbar_app.test_client().get(
        "/rollbar/test/exception?user=worf&person=worf", headers={"X-Rollbar-Person": "worf", "X-User": "worf"}
    )
    [item] = receiver.wait_for_items()
    assert item["person"] == {"id": "bayko", "username": "bayko"}


def _timed_requests(client, count):
    """Send `count` requests alternating message and exception; return the slowest duration."""
    slowest = 0.0
    for i in range(count):
        started = time.monotonic()
        response = client.get("/rollbar/test" if i % 2 else "/rollbar/test/exception")
        slowest = max(slowest, time.monotonic() - started)
        assert response.status_code == (200 if i % 2 else 500)
    return slowest


def _failure_warnings(caplog):
    return [r for r in caplog.records if r.name == rollbar_integration.__name__ and "failed" in r.getMessage()]


def test_refused_connections_are_counted_and_never_slow_a_request(rollbar_app, receiver, caplog):
    caplog.set_level(logging.WARNING, logger=rollbar_integration.__name__)
    receiver.mode = "refuse"
    slowest = _timed_requests(rollbar_app.test_client(), 6)
    assert slowest < 2.0
    wait_for(lambda: status_of(rollbar_app)["failed"] == 6)
    status = status_of(rollbar_app)
    assert (status["sent"], status["dropped"], status["queued"]) == (0, 6, 0)
    assert status["last_error"] == "ConnectionError" and status["last_error_at"]
    assert len(_failure_warnings(caplog)) == 1  # rate-limited: one line, not one per item
    assert not [r for r in caplog.records if r.name.startswith(("rollbar", "cruddur.telemetry")) and r.exc_info]

    receiver.mode = "ok"
    rollbar_app.test_client().get("/rollbar/test")
    receiver.wait_for_items()
    wait_for(lambda: status_of(rollbar_app)["sent"] == 1)


def test_blackholed_endpoint_times_out_off_the_request_path(rollbar_app, receiver):
    reporter_of(rollbar_app).timeout = 2.0
    receiver.mode = "blackhole"
    slowest = _timed_requests(rollbar_app.test_client(), 4)
    assert slowest < 2.0  # a request that waited for the vendor would take the 2 s timeout at least
    wait_for(lambda: status_of(rollbar_app)["failed"] >= 1, timeout=15)
    assert status_of(rollbar_app)["last_error"] in ("ReadTimeout", "ConnectionError", "Timeout")
    assert status_of(rollbar_app)["sent"] == 0

    started = time.monotonic()
    reporter_of(rollbar_app).flush(0.3)
    assert time.monotonic() - started < 5.0
    status = status_of(rollbar_app)
    # Every item is accounted for: failed ones and those given up at shutdown are dropped.
    assert status["sent"] + status["dropped"] + status["queued"] == 4
    assert status["queued"] <= 1  # at most the one post still waiting for its timeout


def test_http_429_pauses_the_sender_for_retry_after(rollbar_app, receiver):
    receiver.retry_after = 30
    receiver.mode = "status429"
    client = rollbar_app.test_client()
    client.get("/rollbar/test")
    wait_for(lambda: status_of(rollbar_app)["failed"] == 1)
    assert status_of(rollbar_app)["last_error"] == "HTTP 429"

    slowest = _timed_requests(client, 5)
    assert slowest < 2.0
    time.sleep(0.3)  # give a sender that ignored Retry-After the chance to post again
    assert receiver.request_count == 1
    assert status_of(rollbar_app)["queued"] == 5

    started = time.monotonic()
    reporter_of(rollbar_app).flush(10)  # the pause outlasts the budget: give up at once
    assert time.monotonic() - started < 5.0
    status = status_of(rollbar_app)
    assert (status["sent"], status["dropped"], status["failed"], status["queued"]) == (0, 6, 1, 0)
    assert receiver.request_count == 1


def test_retry_after_parsing():
    from cruddur.telemetry.core.delivery import MAX_RETRY_AFTER_SECONDS, RetryLater, retry_after_seconds

    assert retry_after_seconds("12") == 12
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # in the past
    assert RetryLater(retry_after_seconds("999999")).seconds == MAX_RETRY_AFTER_SECONDS
    assert retry_after_seconds("soon") == 60.0
    assert retry_after_seconds(None) == 60.0


def test_full_queue_drops_and_counts(rollbar_app, receiver, caplog):
    caplog.set_level(logging.WARNING, logger=rollbar_integration.__name__)
    reporter = reporter_of(rollbar_app)
    reporter.sender.max_queue = 5
    reporter.timeout = 2.5  # long enough for the ten requests below, on a busy machine too
    receiver.mode = "blackhole"
    client = rollbar_app.test_client()
    client.get("/rollbar/test")
    wait_for(lambda: receiver.request_count == 1)  # the sender is stuck on this one

    for _ in range(10):
        assert client.get("/rollbar/test").status_code == 200
    status = status_of(rollbar_app)
    assert (status["queued"], status["dropped"]) == (6, 5)  # 1 in flight + 5 queued
    assert len([r for r in caplog.records if "queue full" in r.getMessage()]) == 1

    receiver.mode = "ok"
    wait_for(lambda: status_of(rollbar_app)["sent"] == 5, timeout=15)
    status = status_of(rollbar_app)
    assert (status["sent"], status["failed"], status["dropped"], status["queued"]) == (5, 1, 6, 0)
    assert receiver.item_count == 5


def test_flush_delivers_what_is_queued_then_stops(rollbar_app, receiver):
    receiver.delay = 0.2
    receiver.mode = "slow"
    reporter = reporter_of(rollbar_app)
    for i in range(5):
        assert reporter.report_message(f"queued {i}", "info")
    rollbar_app.extensions["cruddur.shutdown"].run()  # what SIGTERM / interpreter exit runs
    assert receiver.item_count == 5
    assert [item_message(i) for i in receiver.items()] == [f"queued {i}" for i in range(5)]
    assert status_of(rollbar_app)["sent"] == 5

    assert reporter.report_message("after shutdown", "info") is False
    assert status_of(rollbar_app)["dropped"] == 1
    wait_for(lambda: not reporter.sender._thread.is_alive())


def _our_receivers(app):
    return [
        r
        for r in got_request_exception.receivers_for(app)
        if getattr(getattr(r, "__func__", r), "__module__", "") == rollbar_reporter.__name__
    ]


def _sender_threads():
    return {t for t in threading.enumerate() if t.name == SENDER_THREAD}


def test_off_without_token_installs_nothing(config):
    before = _sender_threads()
    app = create_app(config)
    client = app.test_client()
    assert client.get("/rollbar/test").status_code == 200
    assert client.get("/rollbar/test/exception").status_code == 500
    assert rollbar_integration.EXTENSION not in app.extensions
    assert _our_receivers(app) == []
    assert app.extensions["cruddur.integrations"]["rollbar"].status()["enabled"] is False
    assert _sender_threads() - before == set()
    assert not [name for _, name, _ in app.extensions["cruddur.shutdown"]._callbacks if name == "rollbar"]


def test_on_with_token_connects_one_receiver_and_a_flush(rollbar_app):
    assert len(_our_receivers(rollbar_app)) == 1
    flushes = [name for _, name, _ in rollbar_app.extensions["cruddur.shutdown"]._callbacks]
    assert flushes.count("rollbar") == 1


def test_each_app_keeps_its_own_token_endpoint_and_environment(config):
    with RollbarReceiver() as first_receiver, RollbarReceiver() as second_receiver:
        first = create_app(
            config.replace(
                rollbar_access_token="token-first",
                rollbar_endpoint=first_receiver.endpoint,
                rollbar_environment="first-env",
                code_version="v1",
            )
        )
        second = create_app(
            config.replace(
                rollbar_access_token="token-second",
                rollbar_endpoint=second_receiver.endpoint,
                rollbar_environment="second-env",
                code_version="v2",
            )
        )
        try:
            # The first app reports after the second one reconfigured pyrollbar's globals.
            first.test_client().get("/rollbar/test/exception")
            second.test_client().get("/rollbar/test")
            [one] = first_receiver.wait_for_items()
            [two] = second_receiver.wait_for_items()
            assert (one["environment"], one["code_version"], one["level"]) == ("first-env", "v1", "error")
            assert (two["environment"], two["code_version"], two["level"]) == ("second-env", "v2", "warning")
            assert first_receiver.payloads()[0]["access_token"] == "token-first"
            assert second_receiver.headers()[0]["x-rollbar-access-token"] == "token-second"
            # Only the app that raised reported: one item each, nothing crossed over.
            time.sleep(0.2)
            assert (first_receiver.item_count, second_receiver.item_count) == (1, 1)
        finally:
            reporter_of(first).flush(0)
            reporter_of(second).flush(0)


def test_rollbar_http_calls_are_not_traced(rollbar_app, receiver):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = RequestsInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    instrumentor.instrument(tracer_provider=provider)
    try:
        # Control: an ordinary requests call from application code does become a span.
        requests.get(receiver.url + "/control", timeout=5)
        assert [s.name for s in exporter.get_finished_spans()] == ["GET"]
        exporter.clear()

        rollbar_app.test_client().get("/rollbar/test/exception")
        rollbar_app.test_client().get("/rollbar/test")
        receiver.wait_for_items(count=2)
        wait_for(lambda: status_of(rollbar_app)["sent"] == 2)
        assert exporter.get_finished_spans() == ()
    finally:
        instrumentor.uninstrument()


def _library_names(tree: ast.Module) -> set[str]:
    """The names a module binds by importing a library (absolute imports)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names |= {alias.asname or alias.name for alias in node.names}
    return names


def _root(node: ast.expr) -> ast.expr:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node


@pytest.mark.parametrize("module", [rollbar_integration, rollbar_reporter, rollbar_routes])
def test_libraries_are_used_through_their_public_api(module):
    """No private library name imported or read, no library attribute assigned, no library class subclassed."""
    tree = ast.parse(inspect.getsource(module))
    libraries = _library_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
            assert not any(part.startswith("_") for part in node.module.split(".")), node.module
            assert not any(alias.name.startswith("_") for alias in node.names), ast.unparse(node)
        elif isinstance(node, ast.Attribute) and isinstance(_root(node), ast.Name) and _root(node).id in libraries:
            assert not node.attr.startswith("_"), ast.unparse(node)
            # flask.g is Flask's documented namespace for data during an app context: storing is its use.
            if isinstance(node.ctx, ast.Store | ast.Del) and _root(node).id != "g":
                raise AssertionError(f"rebinds {ast.unparse(node)}")
        elif isinstance(node, ast.ClassDef):
            assert not [b for b in node.bases if isinstance(_root(b), ast.Name) and _root(b).id in libraries], node.name


def test_the_public_api_check_catches_a_private_read():
    tree = ast.parse("from flask import request\nrequest._get_current_object()\n")
    libraries = _library_names(tree)
    reads = [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and _root(n).id in libraries]
    assert reads == ["_get_current_object"]


def test_a_direct_pyrollbar_call_goes_to_the_apps_reporter_and_pyrollbar_does_not_send_it(
    rollbar_app, rollbar_config, receiver
):
    # A later app re-initialises pyrollbar's globals; the direct call still carries this app's settings.
    other = create_app(rollbar_config.replace(rollbar_environment="other-env", code_version="other"))
    reporter_of(other).flush(0)
    with rollbar_app.test_request_context("/rollbar/direct"):
        rollbar.report_message("direct call", "warning")  # application code using pyrollbar itself
    [item] = receiver.wait_for_items()
    assert item_message(item) == "direct call"
    assert (item["environment"], item["code_version"]) == ("test", "test")
    assert receiver.payloads()[0]["access_token"] == TOKEN
    time.sleep(0.3)  # pyrollbar's own send (blocking, to its configured endpoint) would show up here
    assert receiver.request_count == 1
