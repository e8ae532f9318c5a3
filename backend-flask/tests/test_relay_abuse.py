"""The relay against a client that is not a browser: real HTTP to gunicorn, a real OTLP receiver behind.

Such a client can set any header, `Origin` included, so the Origin check stops only browsers.
What must hold: nothing but the frontend's own kind of spans reaches the vendor, the vendor gets
a fresh encoding (never the client's bytes), and each client behind a proxy is limited on its own.
The app prints its own spans to the console (OTEL_TRACES_EXPORTER=console): every export the
receiver gets came through the relay.
"""

from __future__ import annotations

import math
import random
import time

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from cruddur.telemetry.browser.spans import MAX_VALUE_BYTES
from tests.support.browser_exports import (
    FRONTEND_RESOURCE,
    KIND_SERVER,
    export_json,
    export_protobuf,
    json_span,
    proto_span,
)
from tests.support.waiting import wait_for

FORGED_ORIGIN = "http://localhost:3000"  # FRONTEND_URL: a non-browser client just writes it
TRACES = "/api/telemetry/v1/traces"
RELAY_MAX = 512 * 1024
PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def relay_env(receiver, **extra) -> dict:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_EXPORTER_OTLP_HEADERS": "x-honeycomb-team=server-key",
        "OTEL_TRACES_EXPORTER": "console",
        **extra,
    }


def send(server, body: bytes, content_type: str, **headers) -> requests.Response:
    headers = {"Origin": FORGED_ORIGIN, "Content-Type": content_type, "User-Agent": "curl/8.5.0", **headers}
    return requests.post(server.url + TRACES, data=body, headers=headers, timeout=10)


def trace_id(n: int) -> str:
    return f"{n:032x}"


def test_a_forged_origin_gets_nothing_past_the_relay_but_the_frontends_spans(otlp_receiver, app_server_factory):
    server = app_server_factory(relay_env(otlp_receiver))
    rng = random.Random(13)
    minimal = [Span(trace_id=bytes.fromhex(trace_id(8)), span_id=(i + 1).to_bytes(8), kind=1) for i in range(10_000)]
    ten_thousand = export_protobuf(minimal)
    assert len(ten_thousand) < RELAY_MAX  # so it is the decoder that refuses it, not the size limit
    refused = [
        # the backend's name, with server spans, as if the backend had sent them
        (
            export_json(
                [json_span(kind=KIND_SERVER, traceId=trace_id(1), name="GET /api/admin")],
                {"service.name": "backend-flask"},
            ),
            JSON,
            400,
            "otlp_service_not_allowed",
        ),
        (export_json([json_span(kind=KIND_SERVER, traceId=trace_id(2))]), JSON, 400, "otlp_span_kind_not_allowed"),
        (ten_thousand, PROTOBUF, 400, "otlp_too_many_spans"),
        (
            export_json([json_span(traceId=trace_id(3), spanId=f"{i + 1:016x}") for i in range(10_000)]),
            JSON,
            413,
            "request_entity_too_large",
        ),
        (
            export_protobuf([proto_span(trace_id=trace_id(4), attributes={"huge": "x" * 400_000})]),
            PROTOBUF,
            400,
            "otlp_attribute_too_large",
        ),
        (
            export_protobuf([proto_span(trace_id=trace_id(5), attributes={"v": "x" * (MAX_VALUE_BYTES + 1)})]),
            PROTOBUF,
            400,
            "otlp_attribute_too_large",
        ),
        (rng.randbytes(200_000), PROTOBUF, 400, "otlp_malformed"),
        (export_protobuf()[:-7] + rng.randbytes(64), PROTOBUF, 400, "otlp_malformed"),
        (
            export_json([json_span(traceId="AAAAAAAAAAAAAAAAAAAABg==", spanId="7uGbfsPBsXQ=")]),
            JSON,
            400,
            "otlp_invalid_id",
        ),
    ]
    for body, content_type, status, code in refused:
        response = send(server, body, content_type)
        assert (response.status_code, response.json()["errors"]) == (status, [code]), response.text[:300]

    # Accepted, but only as the browser: the resource attributes that name a service or host go.
    impersonating = {**FRONTEND_RESOURCE, "service.namespace": "cruddur", "host.name": "backend-1", "k8s.pod.name": "x"}
    assert send(server, export_json([json_span(traceId=trace_id(6))], impersonating), JSON).status_code == 204
    sentinel = export_protobuf([proto_span(trace_id=trace_id(7), name="sentinel")], scope="last")
    assert send(server, sentinel, PROTOBUF).status_code == 204

    # One sender thread delivers in order: once the sentinel is in, everything queued before it is too.
    otlp_receiver.wait_for_spans(lambda s: s["name"] == "sentinel", timeout=20)
    assert sorted(s["trace_id"] for s in otlp_receiver.spans()) == [trace_id(6), trace_id(7)]
    assert all(s["resource"] == FRONTEND_RESOURCE for s in otlp_receiver.spans())
    exports = otlp_receiver.exports()
    assert len(exports) == 2
    assert all(
        e["headers"]["content-type"] == PROTOBUF and e["headers"]["x-honeycomb-team"] == "server-key" for e in exports
    )
    assert ExportTraceServiceRequest.FromString(exports[1]["body"]).resource_spans[0].scope_spans[0].spans[0] == (
        proto_span(trace_id=trace_id(7), name="sentinel")
    )

    # No trusted proxy: X-Forwarded-For is the client's own claim, so rotating it buys nothing.
    statuses = [
        send(server, export_json(), JSON, **{"X-Forwarded-For": f"198.51.100.{i}"}).status_code for i in range(30)
    ]
    assert 429 in statuses and statuses.count(204) < 25
    relayed = server.wait_for_log(lambda r: r.get("logger") == "cruddur.access" and r.get("path") == TRACES, count=40)
    assert {r["remote_addr"] for r in relayed} == {"127.0.0.1"}


@pytest.mark.parametrize("hops", [1, 2])
def test_clients_behind_trusted_proxies_each_have_their_own_budget(otlp_receiver, app_server_factory, hops):
    server = app_server_factory(relay_env(otlp_receiver, CRUDDUR_TRUSTED_PROXIES=str(hops)))
    body = export_protobuf()
    proxies = [f"10.0.0.{n}" for n in range(1, hops)]  # the hops in front of the last proxy

    def via_proxies(client: str, claimed: str = "") -> int:
        chain = ", ".join([*([claimed] if claimed else []), client, *proxies])
        return send(server, body, PROTOBUF, **{"X-Forwarded-For": chain}).status_code

    def refill_allowance(started: float) -> int:
        """Tokens the bucket regained while the requests ran (5 a second)."""
        return 1 + math.ceil((time.monotonic() - started) * 5)

    clients = [f"198.51.100.{n}" for n in range(1, 5)]
    accepted = 0
    for client in clients:
        started = time.monotonic()
        statuses = [via_proxies(client) for _ in range(30)]
        assert statuses[:20] == [204] * 20, (client, statuses)  # a full burst of its own
        assert 429 in statuses and statuses.count(204) <= 20 + refill_allowance(started), (client, statuses)
        accepted += statuses.count(204)
        # Whatever the client itself writes in front, the trusted hops decide who it is.
        started = time.monotonic()
        spoofed = [via_proxies(client, claimed=f"203.0.113.{n}") for n in range(10)]
        assert spoofed.count(204) <= refill_allowance(started), spoofed
        accepted += spoofed.count(204)
    assert via_proxies("198.51.100.200") == 204  # a new client behind the same proxies
    accepted += 1

    records = server.wait_for_log(lambda r: r.get("logger") == "cruddur.access" and r.get("path") == TRACES, count=161)
    assert {r["remote_addr"] for r in records} == {*clients, "198.51.100.200"}
    # ProxyFix sits outside the tracing middleware: the server span names the client, not the proxy
    # (`client.address` in the stable HTTP conventions the app uses).
    wait_for(lambda: '"client.address": "198.51.100.200"' in server.stdout_text(), timeout=15, message="no server span")
    wait_for(lambda: otlp_receiver.span_count == accepted, timeout=20, message=f"{accepted} exports not delivered")
