"""The browser span relay, POST /api/telemetry/v1/traces, forwarding to a real OTLP receiver.

The app prints its own spans to the console here (OTEL_TRACES_EXPORTER=console), so everything
the receiver gets came through the relay.
"""

from __future__ import annotations

import json
import math
import time

import pytest
from google.protobuf.unknown_fields import UnknownFieldSet
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from cruddur import create_app
from cruddur.clients import client_key
from cruddur.config import Config
from cruddur.telemetry.browser import BYTE_BURST, BYTES_PER_SECOND, MAX_BODY_BYTES
from cruddur.telemetry.browser.limits import ClientBuckets
from cruddur.telemetry.browser.spans import MAX_ATTRIBUTES, MAX_SPANS, MAX_VALUE_BYTES
from tests.support.browser_exports import (
    FRONTEND_RESOURCE,
    KIND_CLIENT,
    KIND_INTERNAL,
    KIND_SERVER,
    LINK_SPAN_ID,
    LINK_TRACE_ID,
    PARENT_ID,
    SPAN_ID,
    TRACE_ID,
    export_json,
    export_protobuf,
    json_attributes,
    json_span,
    key_values,
    proto_request,
    proto_span,
)
from tests.support.waiting import wait_for

ORIGIN = "http://localhost:3000"
TRACES = "/api/telemetry/v1/traces"
JSON = "application/json"
PROTOBUF = "application/x-protobuf"
UNKNOWN_FIELD = b"\xb8\x3e\x07"  # field 999, varint 7


def post(client, body, content_type=JSON, origin=ORIGIN, remote_addr="127.0.0.1", **headers):
    if origin:
        headers["Origin"] = origin
    return client.post(
        TRACES, data=body, content_type=content_type, headers=headers, environ_base={"REMOTE_ADDR": remote_addr}
    )


@pytest.fixture
def relay_config(config, otlp_receiver) -> Config:
    return config.replace(
        otlp_endpoint=otlp_receiver.url, otlp_headers={"x-honeycomb-team": "server-key"}, traces_exporter="console"
    )


@pytest.fixture
def relay_app(relay_config):
    return create_app(relay_config)


def relay_status(app):
    return app.test_client().get("/api/health-check").json["integrations"]["browser_relay"]


def delivered(app, exports: int) -> None:
    """Wait until the relay's sender has delivered `exports` batches."""
    wait_for(lambda: relay_status(app)["sent"] >= exports, message=f"the relay did not deliver {exports} exports")


# -- what goes through -------------------------------------------------------------------------------
def test_json_and_protobuf_arrive_re_encoded_as_protobuf_with_ids_intact(relay_app, otlp_receiver):
    client = relay_app.test_client()
    assert post(client, export_json()).status_code == 204
    assert post(client, export_protobuf(), PROTOBUF).status_code == 204
    delivered(relay_app, 2)

    fetch = next(s for s in otlp_receiver.spans() if s["name"] == "HTTP GET")
    assert (fetch["trace_id"], fetch["span_id"], fetch["parent_span_id"]) == (TRACE_ID, SPAN_ID, PARENT_ID)
    assert fetch["links"][0]["trace_id"] == LINK_TRACE_ID and fetch["links"][0]["span_id"] == LINK_SPAN_ID
    assert fetch["kind"] == "CLIENT" and fetch["start_time_unix_nano"] == 1_700_000_000_000_000_000
    assert fetch["attributes"] == {
        "http.method": "GET",
        "http.url": "http://localhost:4567/api/activities/home",
        "http.status_code": 200,
    }
    assert fetch["events"][0]["name"] == "fetchStart"
    page_load = next(s for s in otlp_receiver.spans() if s["name"] == "documentLoad")
    assert (page_load["trace_id"], page_load["span_id"], page_load["kind"]) == (TRACE_ID, SPAN_ID, "INTERNAL")
    for export in otlp_receiver.exports():
        assert export["headers"]["content-type"] == PROTOBUF
        assert export["headers"]["x-honeycomb-team"] == "server-key"


def test_what_is_forwarded_is_a_fresh_encoding_never_the_clients_bytes(relay_app, otlp_receiver):
    # Field 999 (a varint) is not in the schema: a protobuf parser keeps such a field and writes it
    # out again, so a relay that did not discard it would pass along whatever a client put there.
    smuggled = Span.FromString(proto_span().SerializeToString() + UNKNOWN_FIELD)
    sent = proto_request([smuggled]).SerializeToString()
    assert UNKNOWN_FIELD in sent
    assert post(relay_app.test_client(), sent, PROTOBUF).status_code == 204
    delivered(relay_app, 1)

    forwarded = otlp_receiver.exports()[0]["body"]
    assert forwarded != sent and UNKNOWN_FIELD not in forwarded
    span = ExportTraceServiceRequest.FromString(forwarded).resource_spans[0].scope_spans[0].spans[0]
    assert not UnknownFieldSet(span)
    assert span == proto_span()


def test_resource_attributes_that_could_name_another_service_are_dropped(relay_app, otlp_receiver):
    resource = {
        **FRONTEND_RESOURCE,
        "browser.language": "en-GB",
        "service.namespace": "payments",
        "service.instance.id": "backend-flask-1",
        "host.name": "db-primary",
        "cloud.provider": "aws",
        "k8s.pod.name": "backend-flask-7d9",
        "deployment.environment": "production",
    }
    assert post(relay_app.test_client(), export_json(resource=resource)).status_code == 204
    span = otlp_receiver.wait_for_spans()[0]
    assert span["resource"] == {**FRONTEND_RESOURCE, "browser.language": "en-GB"}
    decoded = ExportTraceServiceRequest.FromString(otlp_receiver.exports()[0]["body"])
    assert decoded.resource_spans[0].resource.dropped_attributes_count == 6


@pytest.mark.parametrize(
    "span",
    [
        json_span(traceId=TRACE_ID.upper(), spanId=SPAN_ID.upper()),  # OTLP/JSON: hex is case-insensitive
        json_span(startTimeUnixNano=1_700_000_000_000_000_000, endTimeUnixNano=1_700_000_000_100_000_000),
        json_span(parentSpanId=""),  # a root span
        json_span(kind=KIND_INTERNAL, futureField={"anything": 1}),  # unknown fields are ignored
    ],
    ids=["upper-case-hex", "64-bit-as-numbers", "empty-parent", "unknown-field"],
)
def test_valid_otlp_json_variants_are_accepted(relay_app, otlp_receiver, span):
    assert post(relay_app.test_client(), export_json([span])).status_code == 204
    received = otlp_receiver.wait_for_spans()[0]
    assert (received["trace_id"], received["span_id"]) == (TRACE_ID, SPAN_ID)
    assert received["start_time_unix_nano"] == 1_700_000_000_000_000_000


def test_the_limits_themselves_are_accepted(relay_app, otlp_receiver):
    client = relay_app.test_client()
    spans = [proto_span(span_id=f"{i + 1:016x}") for i in range(MAX_SPANS)]
    assert post(client, export_protobuf(spans), PROTOBUF).status_code == 204
    attributes = {f"a{i}": "v" for i in range(MAX_ATTRIBUTES - 1)} | {"big": "é" * (MAX_VALUE_BYTES // 2)}
    assert post(client, export_protobuf([proto_span(attributes=attributes)]), PROTOBUF).status_code == 204
    delivered(relay_app, 2)
    assert otlp_receiver.span_count == MAX_SPANS + 1


def test_an_export_without_spans_is_accepted_and_not_forwarded(relay_app, otlp_receiver):
    client = relay_app.test_client()
    assert post(client, b"", PROTOBUF).status_code == 204
    assert post(client, json.dumps({"resourceSpans": []})).status_code == 204
    assert post(client, export_json()).status_code == 204
    delivered(relay_app, 1)
    assert len(otlp_receiver.exports()) == 1


# -- what is refused ------------------------------------------------------------------------------
def _with_spans(*spans):
    return export_json(list(spans))


REJECTED = {
    # another service, or no clear service
    "backend-service-name": (export_json(resource={**FRONTEND_RESOURCE, "service.name": "backend-flask"}), JSON),
    "no-service-name": (export_json(resource={"telemetry.sdk.language": "webjs"}), JSON),
    "service-name-twice": (
        export_json(resource=json_attributes(FRONTEND_RESOURCE) + json_attributes({"service.name": "backend-flask"})),
        JSON,
    ),
    "service-name-not-a-string": (
        export_protobuf(resource=key_values({"service.name": ["frontend-react-js"]})),
        PROTOBUF,
    ),
    # span kinds the web SDK never produces
    "kind-server": (_with_spans(json_span(kind=KIND_SERVER)), JSON),
    "kind-producer": (export_protobuf([proto_span(kind=4)]), PROTOBUF),
    "kind-consumer": (export_protobuf([proto_span(kind=5)]), PROTOBUF),
    "kind-unspecified": (export_protobuf([proto_span(kind=0)]), PROTOBUF),
    "kind-unknown-number": (_with_spans(json_span(kind=9)), JSON),
    "kind-as-enum-name": (_with_spans(json_span(kind="SPAN_KIND_CLIENT")), JSON),
    "status-code-as-enum-name": (_with_spans(json_span(status={"code": "STATUS_CODE_ERROR"})), JSON),
    # ids
    "base64-trace-id": (_with_spans(json_span(traceId="W47/95gDgQPSabYzgT/GDA==")), JSON),
    "base64-span-id-snake-case": (
        _with_spans({**{k: v for k, v in json_span().items() if k != "spanId"}, "span_id": "7uGbfsPBsXQ="}),
        JSON,
    ),
    "base64-link-id": (_with_spans(json_span(links=[{"traceId": LINK_TRACE_ID, "spanId": "t61rcWkgMzE="}])), JSON),
    "short-hex-trace-id": (_with_spans(json_span(traceId=TRACE_ID[:30])), JSON),
    "non-hex-span-id": (_with_spans(json_span(spanId="eee19b7ec3c1b17z")), JSON),
    "numeric-span-id": (_with_spans(json_span(spanId=12345678)), JSON),
    "zero-trace-id": (_with_spans(json_span(traceId="0" * 32)), JSON),
    "missing-span-id": (export_protobuf([proto_span(span_id="")]), PROTOBUF),
    "nine-byte-span-id": (export_protobuf([proto_span(span_id="00" * 9)]), PROTOBUF),
    # sizes
    "too-many-spans": (export_protobuf([proto_span(span_id=f"{i + 1:016x}") for i in range(MAX_SPANS + 1)]), PROTOBUF),
    "too-many-spans-json": (_with_spans(*[json_span(spanId=f"{i + 1:016x}") for i in range(MAX_SPANS + 1)]), JSON),
    "too-many-attributes": (
        export_protobuf([proto_span(attributes={f"a{i}": i for i in range(MAX_ATTRIBUTES + 1)})]),
        PROTOBUF,
    ),
    "too-many-event-attributes": (
        _with_spans(json_span(events=[{"name": "e", "attributes": json_attributes({f"a{i}": i for i in range(65)})}])),
        JSON,
    ),
    "too-many-resource-attributes": (
        export_protobuf(resource={**FRONTEND_RESOURCE, **{f"r{i}": "x" for i in range(MAX_ATTRIBUTES)}}),
        PROTOBUF,
    ),
    "value-over-4-kib": (export_protobuf([proto_span(attributes={"v": "x" * (MAX_VALUE_BYTES + 1)})]), PROTOBUF),
    "utf8-value-over-4-kib": (export_protobuf([proto_span(attributes={"v": "é" * 2049})]), PROTOBUF),
    "bytes-value-over-4-kib": (export_protobuf([proto_span(attributes={"v": b"\0" * 5000})]), PROTOBUF),
    "array-value-over-4-kib": (export_protobuf([proto_span(attributes={"v": ["x" * 1000] * 5})]), PROTOBUF),
    "nested-map-over-4-kib": (export_protobuf([proto_span(attributes={"v": {"a": {"b": "x" * 4100}}})]), PROTOBUF),
    "scope-attribute-over-4-kib": (
        json.dumps(
            {
                "resourceSpans": [
                    {
                        "resource": {"attributes": json_attributes(FRONTEND_RESOURCE)},
                        "scopeSpans": [
                            {"scope": {"name": "s", "attributes": json_attributes({"v": "x" * 5000})}, "spans": []}
                        ],
                    }
                ]
            }
        ).encode(),
        JSON,
    ),
    "span-name-over-4-kib": (export_protobuf([proto_span(name="n" * (MAX_VALUE_BYTES + 1))]), PROTOBUF),
    "attribute-key-over-4-kib": (export_protobuf([proto_span(attributes={"k" * 5000: 1})]), PROTOBUF),
    "duplicate-span-attribute": (
        _with_spans(json_span(attributes=json_attributes({"a": "1"}) + json_attributes({"a": "2"}))),
        JSON,
    ),
    # not OTLP at all
    "protobuf-garbage": (bytes(range(256)) * 64, PROTOBUF),
    "truncated-protobuf": (export_protobuf()[:-3], PROTOBUF),
    "protobuf-as-json": (export_protobuf(), JSON),
    "json-as-protobuf": (export_json(), PROTOBUF),
    "invalid-json": (b'{"resourceSpans": [', JSON),
    "json-array": (b"[]", JSON),
    "json-wrong-shape": (b'{"resourceSpans": "<script>"}', JSON),
    "json-span-not-an-object": (export_json(["span"]), JSON),
    "json-deeply-nested": (b'{"resourceSpans": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", JSON),
    "json-wrong-field-type": (_with_spans(json_span(name=["a"])), JSON),
}

EXPECTED_CODE = {
    "backend-service-name": "otlp_service_not_allowed",
    "no-service-name": "otlp_service_not_allowed",
    "service-name-twice": "otlp_duplicate_attribute",
    "service-name-not-a-string": "otlp_service_not_allowed",
    "kind-server": "otlp_span_kind_not_allowed",
    "kind-producer": "otlp_span_kind_not_allowed",
    "kind-consumer": "otlp_span_kind_not_allowed",
    "kind-unspecified": "otlp_span_kind_not_allowed",
    "kind-unknown-number": "otlp_span_kind_not_allowed",
    "too-many-spans": "otlp_too_many_spans",
    "too-many-spans-json": "otlp_too_many_spans",
    "too-many-attributes": "otlp_too_many_attributes",
    "too-many-event-attributes": "otlp_too_many_attributes",
    "too-many-resource-attributes": "otlp_too_many_attributes",
    "span-name-over-4-kib": "otlp_name_too_long",
    "attribute-key-over-4-kib": "otlp_name_too_long",
    "duplicate-span-attribute": "otlp_duplicate_attribute",
}
for _case in REJECTED:
    if "id" in _case.split("-"):
        EXPECTED_CODE[_case] = "otlp_invalid_id"
    elif "4-kib" in _case and _case not in EXPECTED_CODE:
        EXPECTED_CODE[_case] = "otlp_attribute_too_large"
    EXPECTED_CODE.setdefault(_case, "otlp_malformed")


@pytest.mark.parametrize("case", list(REJECTED))
def test_anything_but_the_frontends_spans_is_refused_with_its_code(relay_app, otlp_receiver, case):
    body, content_type = REJECTED[case]
    client = relay_app.test_client()
    response = post(client, body, content_type)
    assert (response.status_code, response.json["errors"]) == (400, [EXPECTED_CODE[case]]), response.json
    assert response.json["message"]
    # The relay delivers in order: once a valid export has arrived, the refused one would have too.
    assert post(client, export_json([json_span(name="after")])).status_code == 204
    otlp_receiver.wait_for_spans(lambda s: s["name"] == "after")
    assert [s["name"] for s in otlp_receiver.spans()] == ["after"]
    assert relay_status(relay_app)["dropped"] == 0


def test_compressed_bodies_are_refused(relay_app):
    response = post(relay_app.test_client(), export_json(), **{"Content-Encoding": "gzip"})
    assert (response.status_code, response.json["errors"]) == (415, ["unsupported_content_encoding"])


def test_checks_apply_with_export_off_too(client):
    assert post(client, export_json()).status_code == 204
    refused = post(client, export_json(resource={"service.name": "backend-flask"}))
    assert (refused.status_code, refused.json["errors"]) == (400, ["otlp_service_not_allowed"])
    status = client.get("/api/health-check").json["integrations"]["browser_relay"]
    assert status["enabled"] is False and status["sent"] == 0


# -- the gate in front of the checks ----------------------------------------------------------------
def test_the_browser_never_needs_or_sees_the_key(relay_app):
    response = post(relay_app.test_client(), export_json())
    assert "server-key" not in str(response.headers) + response.get_data(as_text=True)
    assert "server-key" not in json.dumps(relay_app.test_client().get("/api/health-check").json)


@pytest.mark.parametrize(
    ("origin", "status"),
    [(None, 403), ("http://evil.example", 403), ("http://localhost:4567", 403), (ORIGIN, 204)],
)
def test_only_the_frontend_origin(relay_app, origin, status):
    response = post(relay_app.test_client(), export_json(), origin=origin)
    assert response.status_code == status
    if status != 204:
        assert response.json["errors"] == ["forbidden"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_only_otlp_content_types(relay_app, content_type):
    response = post(relay_app.test_client(), export_json(), content_type)
    assert (response.status_code, response.json["errors"]) == (415, ["unsupported_media_type"])


def test_bodies_over_512_kib_are_refused(relay_app):
    client = relay_app.test_client()
    assert post(client, b"x" * (512 * 1024 + 1), PROTOBUF).status_code == 413
    assert post(client, padded_to(512 * 1024)).status_code == 204


# -- rate limits per client -----------------------------------------------------------------------
def test_rate_limited_per_client(relay_app):
    client = relay_app.test_client()
    responses = [post(client, export_json()) for _ in range(40)]
    assert [r.status_code for r in responses[:20]] == [204] * 20
    limited = [r for r in responses if r.status_code == 429]
    assert limited and all(int(r.headers["Retry-After"]) >= 1 for r in limited)
    assert limited[0].json["errors"] == ["too_many_requests"]
    assert post(client, export_json(), remote_addr="10.9.8.7").status_code == 204  # its own budget


def refill_allowance(started: float) -> int:
    """Tokens a bucket regained (5 a second) since `started`: a loaded machine makes requests slow."""
    return 1 + math.ceil((time.monotonic() - started) * 5)


def test_refused_exports_spend_the_budget_too(relay_app):
    client = relay_app.test_client()
    started = time.monotonic()
    garbage = [post(client, b"\x0a\xff", PROTOBUF).status_code for _ in range(30)]
    assert garbage[:20] == [400] * 20 and 429 in garbage
    assert garbage.count(400) <= 20 + refill_allowance(started)


def test_without_trusted_proxies_x_forwarded_for_is_ignored(relay_app, caplog):
    client = relay_app.test_client()
    started = time.monotonic()
    statuses = [
        post(client, export_json(), remote_addr="192.0.2.1", **{"X-Forwarded-For": f"198.51.100.{i}"}).status_code
        for i in range(30)
    ]
    assert statuses[:20] == [204] * 20 and 429 in statuses
    assert statuses.count(204) <= 20 + refill_allowance(started)
    assert {r.remote_addr for r in caplog.records if r.name == "cruddur.access" and r.path == TRACES} == {"192.0.2.1"}


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget(relay_config, caplog):
    app = create_app(relay_config.replace(trusted_proxies=1))
    client = app.test_client()
    proxy = "10.0.0.2"

    def via_proxy(forwarded_for):
        return post(client, export_json(), remote_addr=proxy, **{"X-Forwarded-For": forwarded_for}).status_code

    started = time.monotonic()
    first = [via_proxy("198.51.100.1") for _ in range(30)]
    assert first[:20] == [204] * 20 and 429 in first
    assert first.count(204) <= 20 + refill_allowance(started)
    # A client cannot mint addresses: with one trusted hop, only the address the proxy appended counts.
    started = time.monotonic()
    spoofed = [via_proxy(f"203.0.113.{i}, 198.51.100.1") for i in range(10)]
    assert spoofed.count(204) <= refill_allowance(started)
    assert [via_proxy(f"198.51.100.{i}") for i in range(2, 12)] == [204] * 10
    logged = {r.remote_addr for r in caplog.records if r.name == "cruddur.access" and r.path == TRACES}
    assert logged == {f"198.51.100.{i}" for i in range(1, 12)}


def padded_to(size: int) -> bytes:
    """A valid frontend export, padded with JSON whitespace to `size` bytes."""
    return export_json() + b" " * (size - len(export_json()))


def test_a_client_sending_huge_exports_is_limited_by_bytes_one_sending_small_ones_at_its_rate_is_not(relay_app):
    client = relay_app.test_client()
    huge = padded_to(MAX_BODY_BYTES)
    started = time.monotonic()
    huge_sender, small_sender = [], []
    for _ in range(8):  # the same request rate, well inside the request burst of 20
        huge_sender.append(post(client, huge, remote_addr="198.51.100.1"))
        small_sender.append(post(client, export_json(), remote_addr="198.51.100.2"))
    assert [r.status_code for r in small_sender] == [204] * 8
    statuses = [r.status_code for r in huge_sender]
    budget = BYTE_BURST // MAX_BODY_BYTES  # 4 of the largest bodies
    assert statuses[:budget] == [204] * budget and 429 in statuses, statuses
    refill = math.ceil((time.monotonic() - started) * BYTES_PER_SECOND / MAX_BODY_BYTES)
    assert statuses.count(204) <= budget + refill, statuses
    limited = next(r for r in huge_sender if r.status_code == 429)
    assert limited.json["errors"] == ["too_many_requests"]
    assert 1 <= int(limited.headers["Retry-After"]) <= math.ceil(MAX_BODY_BYTES / BYTES_PER_SECOND)


def test_a_request_refused_for_its_bytes_spends_a_request_but_no_bytes():
    buckets = ClientBuckets(rate=0.001, burst=10)
    assert buckets.take("a", 6) == 0
    assert buckets.take("a", 6) > 0  # 4 left: refused, and nothing taken
    assert buckets.take("a", 4) == 0
    assert buckets.take("a", 1) > 0


def test_a_cost_over_the_burst_costs_the_whole_burst():
    buckets = ClientBuckets(rate=1, burst=10)
    assert buckets.take("a", 50) == 0  # a full bucket lets it through
    assert 9 < buckets.take("a", 50) <= 10  # then it waits for a full bucket again, not for 50 tokens


def test_the_bucket_table_forgets_the_least_recently_seen_client():
    buckets = ClientBuckets(rate=0.001, burst=2, max_clients=3)
    assert buckets.take("busy") == 0 and buckets.take("busy") == 0
    assert buckets.take("busy") > 0  # its bucket is empty
    for i in range(10):  # a stream of new addresses, with the busy client in between
        assert buckets.take(f"new-{i}") == 0
        assert buckets.take("busy") > 0, "the busy client was reset by a flood of others"
        assert len(buckets) <= 3
    assert "busy" in buckets and "new-0" not in buckets and "new-9" in buckets


def test_a_forgotten_client_starts_with_a_full_bucket():
    buckets = ClientBuckets(rate=0.001, burst=1, max_clients=2)
    assert buckets.take("a") == 0 and buckets.take("a") > 0
    buckets.take("b")
    buckets.take("c")  # evicts a, the least recently seen
    assert "a" not in buckets and buckets.take("a") == 0


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        (None, "unknown"),
        ("not-an-ip", "not-an-ip"),
    ],
)
def test_client_key_counts_an_ipv6_subscriber_once(address, key):
    assert client_key(address) == key


@pytest.mark.parametrize(("value", "expected"), [("", 0), ("0", 0), ("2", 2)])
def test_trusted_proxies_setting(value, expected):
    assert Config.from_env({"CRUDDUR_TRUSTED_PROXIES": value}).trusted_proxies == expected


@pytest.mark.parametrize("value", ["-1", "one", "1.5", "²"])
def test_trusted_proxies_must_be_a_count(value):
    with pytest.raises(ValueError, match="CRUDDUR_TRUSTED_PROXIES"):
        Config.from_env({"CRUDDUR_TRUSTED_PROXIES": value})


# -- delivery -------------------------------------------------------------------------------------
def test_a_slow_vendor_never_blocks_the_request(relay_app, otlp_receiver):
    otlp_receiver.delay = 3
    otlp_receiver.mode = "slow"
    client = relay_app.test_client()
    started = time.monotonic()
    for _ in range(5):
        assert post(client, export_json()).status_code == 204
    assert time.monotonic() - started < 2.5  # the vendor answers after 3 s
    assert relay_status(relay_app)["queued"] >= 4


def test_a_blackholed_vendor_fills_the_bounded_queue_and_counts_drops(relay_app, otlp_receiver):
    otlp_receiver.mode = "blackhole"
    relay = relay_app.extensions["cruddur.relay"]
    relay.sender.max_queue = 3
    for i in range(8):
        assert post(relay_app.test_client(), export_json(), remote_addr=f"10.0.0.{i}").status_code == 204
    status = relay_status(relay_app)
    assert status["queued"] <= 4 and status["dropped"] >= 4


def test_shutdown_delivers_what_is_queued(relay_app, otlp_receiver):
    otlp_receiver.delay = 0.2
    otlp_receiver.mode = "slow"
    client = relay_app.test_client()
    for i in range(4):
        post(client, export_json([json_span(spanId=f"{i + 1:016x}")]))
    relay_app.extensions["cruddur.shutdown"].run()
    assert len([s for s in otlp_receiver.spans() if s["name"] == "HTTP GET"]) == 4


def test_preflight_from_the_frontend(relay_app):
    response = relay_app.test_client().options(
        TRACES,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_checking_a_full_export_is_fast_enough(relay_app):
    """512 spans in OTLP/JSON (the slower decoder); the frontend sends batches of 128."""
    body = export_json([json_span(spanId=f"{i + 1:016x}") for i in range(MAX_SPANS)])
    client = relay_app.test_client()
    timings = []
    for i in range(5):
        started = time.perf_counter()
        assert post(client, body, remote_addr=f"10.1.0.{i}").status_code == 204
        timings.append(time.perf_counter() - started)
    assert sorted(timings)[2] < 1.0, timings


def test_kinds_the_web_sdk_produces_are_accepted(relay_app, otlp_receiver):
    spans = [json_span(kind=KIND_INTERNAL, name="documentLoad"), json_span(kind=KIND_CLIENT, spanId=PARENT_ID)]
    assert post(relay_app.test_client(), export_json(spans)).status_code == 204
    assert {s["kind"] for s in otlp_receiver.wait_for_spans(count=2)} == {"INTERNAL", "CLIENT"}
