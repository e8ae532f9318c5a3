"""The agents' stand-ins decode what the real protocols carry, and refuse what the real services refuse."""

import gzip
import json
import urllib.error
import urllib.request

import msgpack
import pytest

from tests.support.datadog_agent import DatadogAgent
from tests.support.elastic_apm_intake import ElasticAPMIntake
from tests.support.sentry_envelope import PUBLIC_KEY, SentryEnvelopeEndpoint, parse_envelope

URL = "http://127.0.0.1:8000/api/activities/home"


def post(url, body, headers, method="POST"):
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
def agent():
    with DatadogAgent() as server:
        yield server


def dd_trace(trace_id):
    root = {
        "trace_id": trace_id,
        "span_id": 1,
        "parent_id": 0,
        "name": "flask.request",
        "service": "svc",
        "resource": "GET /api/activities/home",
        "type": "web",
        "start": 1,
        "duration": 2,
        "error": 0,
        "meta": {"http.url": URL},
        "metrics": {},
    }
    sql = {**root, "span_id": 2, "parent_id": 1, "name": "sqlite.query", "type": "sql", "meta": {}}
    return [root, sql]


def test_datadog_v04_and_v05_payloads_are_counted_alike(agent):
    headers = {"Content-Type": "application/msgpack", "X-Datadog-Trace-Count": "1"}
    status, body = post(agent.url + "/v0.4/traces", msgpack.packb([dd_trace(7)]), headers, "PUT")
    assert status == 200 and "rate_by_service" in json.loads(body)

    table = ["svc", "flask.request", "GET /api/activities/home", "http.url", URL, "web", "sqlite.query", "sql"]
    spans = [
        [0, 1, 2, 8, 1, 0, 1, 2, 0, {3: 4}, {}, 5],
        [0, 6, 2, 8, 2, 1, 1, 2, 0, {}, {}, 7],
    ]
    status, _ = post(agent.url + "/v0.5/traces", msgpack.packb([table, [spans]]), headers)
    assert status == 200

    counts = agent.summary()["services"]["svc"]
    assert counts["traces"] == 2 and counts["spans"] == 4 and counts["sql_spans"] == 2
    assert counts["by_path"] == {"/api/activities/home": {"traces": 2, "spans": 4, "sql_spans": 2}}


def test_datadog_refuses_what_it_cannot_decode(agent):
    packed = msgpack.packb([dd_trace(1)])
    assert post(agent.url + "/v0.4/traces", packed, {"Content-Type": "application/json"})[0] == 400
    assert post(agent.url + "/v0.4/traces", b"\xc1", {"Content-Type": "application/msgpack"})[0] == 400
    bad_table = msgpack.packb([["svc"], [[[0, 9, 0, 1, 1, 0, 1, 2, 0, {}, {}, 0]]]])
    assert post(agent.url + "/v0.5/traces", bad_table, {"Content-Type": "application/msgpack"})[0] == 400
    wrong_count = {"Content-Type": "application/msgpack", "X-Datadog-Trace-Count": "2"}
    assert post(agent.url + "/v0.4/traces", packed, wrong_count)[0] == 400
    info = json.loads(urllib.request.urlopen(agent.url + "/info", timeout=5).read())
    assert "/v0.5/traces" in info["endpoints"]
    assert agent.summary()["services"] == {}


def envelope(*items):
    lines = [json.dumps({"event_id": "a" * 32}).encode()]
    for kind, payload in items:
        data = json.dumps(payload).encode()
        lines += [json.dumps({"type": kind, "length": len(data)}).encode(), data]
    return b"\n".join(lines) + b"\n"


def test_sentry_counts_transactions_and_discard_reports():
    transaction = {
        "type": "transaction",
        "transaction": "activities.home",
        "contexts": {"trace": {"trace_id": "b" * 32, "span_id": "c" * 16, "op": "http.server"}},
        "request": {"url": URL},
        "spans": [{"op": "db.sql.query", "description": "SELECT 1"}, {"op": "http.client"}],
    }
    report = {"discarded_events": [{"reason": "queue_overflow", "category": "transaction", "quantity": 3}]}
    with SentryEnvelopeEndpoint() as sentry:
        auth = {"X-Sentry-Auth": f"Sentry sentry_key={PUBLIC_KEY}, sentry_version=7", "Content-Encoding": "gzip"}
        body = gzip.compress(envelope(("transaction", transaction), ("client_report", report)))
        status, answer = post(sentry.url + "/api/5/envelope/", body, auth)
        assert status == 200 and json.loads(answer) == {"id": "a" * 32}
        assert post(sentry.url + "/api/5/envelope/", envelope(), {"X-Sentry-Auth": "Sentry sentry_key=x"})[0] == 401
        assert post(sentry.url + "/api/5/envelope/", b"not json\n", auth | {"Content-Encoding": "identity"})[0] == 400
        project = sentry.summary()["5"]
    assert project["traces"] == 1 and project["spans"] == 3 and project["sql_spans"] == 1
    assert project["discarded"] == {"queue_overflow:transaction": 3}
    assert sentry.dsn(5).endswith(f"/{5}") and PUBLIC_KEY in sentry.dsn(5)


def test_sentry_envelope_items_without_length_end_at_a_newline():
    _, items = parse_envelope(b'{}\n{"type":"transaction"}\n{"a":1}\n{"type":"client_report","length":2}\n{}')
    assert [(h["type"], p) for h, p in items] == [("transaction", b'{"a":1}'), ("client_report", b"{}")]


def test_elastic_intake_counts_transactions_with_their_spans():
    metadata = {"metadata": {"service": {"name": "svc", "agent": {"name": "python", "version": "6"}}}}
    span = {"span": {"transaction_id": "t1", "type": "db", "subtype": "sqlite", "context": {"db": {"statement": "S"}}}}
    span["span"]["composite"] = {"count": 2}
    transaction = {"transaction": {"id": "t1", "type": "request", "context": {"request": {"url": {"pathname": "/x"}}}}}
    ndjson = "\n".join(json.dumps(line) for line in (metadata, span, transaction)).encode() + b"\n"
    headers = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
    with ElasticAPMIntake() as intake:
        assert post(intake.url + "/intake/v2/events", gzip.compress(ndjson), headers)[0] == 202
        no_metadata = "\n".join(json.dumps(line) for line in (span, transaction)).encode()
        status, body = post(intake.url + "/intake/v2/events", no_metadata, {"Content-Type": "application/x-ndjson"})
        assert status == 400 and json.loads(body)["errors"]
        assert post(intake.url + "/intake/v2/events", ndjson, {"Content-Type": "application/json"})[0] == 400
        assert json.loads(urllib.request.urlopen(intake.url + "/", timeout=5).read())["version"]
        found = intake.summary()["services"]["svc"]
    assert found["by_path"] == {"/x": {"traces": 1, "spans": 2, "sql_spans": 1}}
    assert found["sql_statements"] == 2 and found["events"] == {"span": 1, "transaction": 1}
