"""One sampling decision for OpenTelemetry and X-Ray, rerooting for ids X-Ray refuses, and containment.

In process, against the real OTLP receiver and the strict X-Ray listener (whose fixture fails a test
that sent any document X-Ray would refuse). The same rules under gunicorn: tests/test_trace_matrix.py.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, TraceIdRatioBased

from cruddur import create_app
from cruddur.telemetry.core.context import XRAY_MAX_AGE_SECONDS, xray_accepts
from cruddur.telemetry.otel import sampling, tracing
from cruddur.telemetry.otel.spans import span
from cruddur.telemetry.xray import daemon as xray
from cruddur.telemetry.xray.propagation import XRayHeader, parse_xray_header
from tests.support.waiting import wait_for
from tests.support.xray_listener import flatten, otel_trace_id, xray_trace_id

HOME = "/api/activities/home"


def fresh_trace(epoch: float | None = None) -> str:
    """A 32-hex trace id dated `epoch` (default: now)."""
    return f"{int(time.time() if epoch is None else epoch):08x}{uuid.uuid4().hex[:24]}"


def span_id() -> str:
    return uuid.uuid4().hex[:16]


def traceresponse(response) -> tuple[str, str, str]:
    _, trace_id, span, flags = response.headers["traceresponse"].split("-")
    return trace_id, span, flags


def next_second() -> None:
    """Wait for a new second: X-Ray's local rule then samples the next request (its reservoir is 1/s)."""
    time.sleep(1.02 - time.time() % 1)


@pytest.fixture
def make_app(config, otlp_receiver, xray_listener):
    def make(**changes):
        return create_app(
            config.replace(otlp_endpoint=otlp_receiver.url, xray_daemon_address=xray_listener.daemon_address, **changes)
        )

    return make


def exported(app, otlp_receiver, trace_id: str, wait: bool) -> list[dict]:
    """The server spans of `trace_id` the receiver got (waits for one when `wait`)."""
    app.extensions["cruddur.tracer_provider"].force_flush()
    find = lambda: [s for s in otlp_receiver.spans_for_trace(trace_id) if s["kind"] == "SERVER"]  # noqa: E731
    return wait_for(find) if wait else find()


# -- parsing -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, expected",
    [
        ("Root=1-6b09fd17-7c53a535e19af8e1438b6781", XRayHeader(0x6B09FD177C53A535E19AF8E1438B6781, None, "")),
        (
            "Root=1-6b09fd17-7c53a535e19af8e1438b6781;Sampled=?",
            XRayHeader(0x6B09FD177C53A535E19AF8E1438B6781, None, ""),
        ),
        (
            "Root=1-6b09fd17-7c53a535e19af8e1438b6781;Parent=53995c3f42cd8ad8;Sampled=1;Self=1-x-y;Lineage=a:1",
            XRayHeader(0x6B09FD177C53A535E19AF8E1438B6781, 0x53995C3F42CD8AD8, "1"),
        ),
        (
            " Sampled=0 ; Root=1-6b09fd17-7c53a535e19af8e1438b6781 ;",
            XRayHeader(0x6B09FD177C53A535E19AF8E1438B6781, None, "0"),
        ),
        ("Root=1-6b09fd17-7c53a535e19af8e1438b6781;Root=1-6b09fd17-7c53a535e19af8e1438b6782", None),  # duplicate key
        ("Root=1-6b09fd17-7c53a535e19af8e1438b6781;Sampled=2", None),
        ("Root=1-6b09fd17-7c53a535e19af8e1438b6781;Parent=0000000000000000", None),
        ("Root=1-6b09fd17-7c53a535e19af8e1438b6781;Parent=53995c3f42cd8ad", None),
        ("Root=1-00000000-000000000000000000000000", None),
        ("Root=1-6b09fd1-7c53a535e19af8e1438b67811", None),
        ("Root=2-6b09fd17-7c53a535e19af8e1438b6781", None),
        ("Root=1-6b09fd17-7c53a535e19af8e1438b678\u00e9", None),
        ("root=1-6b09fd17-7c53a535e19af8e1438b6781", None),  # keys are case-sensitive, as in the SDKs
        ("Root", None),
        ("Root=1-6b09fd17-7c53a535e19af8e1438b6781;" + "x=1;" * 400, None),  # over 1,024 characters
        ("", None),
    ],
)
def test_xray_header_parsing(value, expected):
    assert parse_xray_header(value) == expected


def test_xray_time_window():
    now = time.time()
    assert xray_accepts(int(fresh_trace(now), 16), now)
    assert xray_accepts(int(fresh_trace(now - XRAY_MAX_AGE_SECONDS + 2 * 3600), 16), now)
    assert not xray_accepts(int(fresh_trace(now - XRAY_MAX_AGE_SECONDS), 16), now)
    assert not xray_accepts(int(fresh_trace(now + 3600), 16), now)
    assert not xray_accepts(0x0AF7651916CD43DD8448EB211C80319C, now)  # a random W3C id (1995)


def test_local_sampler_follows_otel_traces_sampler(caplog):
    assert sampling.local_sampler("", "") is ALWAYS_ON
    assert sampling.local_sampler("parentbased_always_off", "") is ALWAYS_OFF
    ratio = sampling.local_sampler("parentbased_traceidratio", "0.25")
    assert isinstance(ratio, TraceIdRatioBased) and ratio.rate == 0.25
    assert sampling.local_sampler("traceidratio", "2").rate == 1.0
    assert sampling.local_sampler("jaeger_remote", "") is ALWAYS_ON
    assert "jaeger_remote" in caplog.text


# -- the decision table ------------------------------------------------------------------------------
CASES = {
    # name: (headers, OpenTelemetry records, X-Ray records)
    "traceparent-sampled": (lambda t, p: {"traceparent": f"00-{t}-{p}-01"}, True, True),
    "traceparent-not-sampled": (lambda t, p: {"traceparent": f"00-{t}-{p}-00"}, False, False),
    "xray-sampled": (lambda t, p: {"X-Amzn-Trace-Id": f"Root={xray_trace_id(t)};Parent={p};Sampled=1"}, True, True),
    "xray-sampled-no-parent": (lambda t, p: {"X-Amzn-Trace-Id": f"Root={xray_trace_id(t)};Sampled=1"}, True, True),
    "xray-not-sampled": (
        lambda t, p: {"X-Amzn-Trace-Id": f"Root={xray_trace_id(t)};Parent={p};Sampled=0"},
        False,
        False,
    ),
    "xray-no-decision": (lambda t, p: {"X-Amzn-Trace-Id": f"Root={xray_trace_id(t)};Parent={p}"}, True, "local"),
    "xray-decision-requested": (
        lambda t, p: {"X-Amzn-Trace-Id": f"Root={xray_trace_id(t)};Parent={p};Sampled=?"},
        True,
        "local",
    ),
    "alb-root-only": (lambda t, p: {"X-Amzn-Trace-Id": f"Root={xray_trace_id(t)}"}, True, "local"),
    "both-disagreeing": (
        lambda t, p: {
            "traceparent": f"00-{t}-{p}-00",
            "X-Amzn-Trace-Id": f"Root={xray_trace_id(fresh_trace())};Sampled=1",
        },
        False,
        False,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_one_decision_for_both_tracers(case, make_app, otlp_receiver, xray_listener):
    headers, otel_records, xray_records = CASES[case]
    app = make_app()
    caller_trace, caller_span = fresh_trace(), span_id()
    next_second()  # a local X-Ray decision then samples (reservoir 1/s): "local" rows expect a segment
    response = app.test_client().get(HOME, headers=headers(caller_trace, caller_span))
    assert response.status_code == 200
    trace_id, server_span, flags = traceresponse(response)
    assert trace_id == caller_trace, "the caller's trace is continued"
    assert flags == ("01" if otel_records else "00")

    spans = exported(app, otlp_receiver, trace_id, wait=otel_records)
    assert len(spans) == (1 if otel_records else 0)
    if spans:
        # Root-only: the server span is the root of the caller's trace.
        root_only = case in ("alb-root-only", "xray-sampled-no-parent")
        assert spans[0]["parent_span_id"] == (None if root_only else caller_span)

    expect_segment = bool(xray_records)
    if expect_segment:
        (segment,) = xray_listener.wait_for_segments(lambda s: s["trace_id"] == xray_trace_id(trace_id))
        assert segment["id"] == server_span
        continued_span = case not in ("alb-root-only", "xray-sampled-no-parent")
        assert segment.get("parent_id") == (caller_span if continued_span else None)
    else:
        time.sleep(0.3)
        assert xray_listener.documents_for_trace(trace_id) == []
    assert response.headers["X-Amzn-Trace-Id"] == f"Root={xray_trace_id(trace_id)};Sampled={int(expect_segment)}"


def test_xray_samples_only_what_opentelemetry_records(make_app, otlp_receiver, xray_listener):
    """Local decisions: OTEL_TRACES_SAMPLER first, X-Ray's rules only for what it recorded."""
    app = make_app(traces_sampler="traceidratio", traces_sampler_arg="0.5")
    client = app.test_client()
    # TraceIdRatioBased samples by the low 64 bits of the trace id: these two Root-only ids fall either side.
    kept, dropped = fresh_trace()[:16] + "0" * 16, fresh_trace()[:16] + "f" * 16
    for trace_id, recorded in ((kept, True), (dropped, False)):
        next_second()
        response = client.get(HOME, headers={"X-Amzn-Trace-Id": f"Root={xray_trace_id(trace_id)}"})
        assert traceresponse(response)[0] == trace_id and traceresponse(response)[2] == ("01" if recorded else "00")
        assert response.headers["X-Amzn-Trace-Id"].endswith(f";Sampled={int(recorded)}")
    xray_listener.wait_for_segments(lambda s: s["trace_id"] == xray_trace_id(kept))
    assert xray_listener.documents_for_trace(dropped) == []

    off = make_app(traces_sampler="always_off")
    next_second()
    response = off.test_client().get(HOME)
    trace_id, _, flags = traceresponse(response)
    assert flags == "00" and response.headers["X-Amzn-Trace-Id"].endswith(";Sampled=0")
    time.sleep(0.3)
    assert xray_listener.documents_for_trace(trace_id) == []
    # ...while a caller's decision still wins over the local sampler.
    caller = fresh_trace()
    response = off.test_client().get(HOME, headers={"traceparent": f"00-{caller}-{span_id()}-01"})
    assert traceresponse(response)[2] == "01"
    xray_listener.wait_for_segments(lambda s: s["trace_id"] == xray_trace_id(caller))


def test_outgoing_headers_carry_the_decision(make_app):
    from opentelemetry import propagate

    app = make_app()
    seen = {}

    @app.get("/test/outgoing")
    def outgoing():
        propagate.inject(seen)
        return {}

    client = app.test_client()
    for flag in ("01", "00"):
        caller = fresh_trace()
        client.get("/test/outgoing", headers={"traceparent": f"00-{caller}-{span_id()}-{flag}"})
        assert seen["traceparent"].startswith(f"00-{caller}-") and seen["traceparent"].endswith(f"-{flag}")
        assert seen["X-Amzn-Trace-Id"].startswith(f"Root={xray_trace_id(caller)};Parent=")
        assert seen["X-Amzn-Trace-Id"].endswith(f";Sampled={int(flag)}")


# -- rerooting ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("age", ["random-w3c", "31-days-old", "in-the-future"])
def test_an_id_xray_refuses_is_rerooted(age, make_app, otlp_receiver, xray_listener, capsys):
    epoch = {"random-w3c": 0x0AF76519, "31-days-old": time.time() - 31 * 86400, "in-the-future": time.time() + 7200}
    caller = fresh_trace(epoch[age])
    app = make_app()
    client = app.test_client()
    response = client.get(HOME, headers={"traceparent": f"00-{caller}-{span_id()}-01"})
    assert response.status_code == 200 and traceresponse(response)[0] == caller  # OpenTelemetry keeps it

    (segment,) = xray_listener.wait_for_segments()
    rerooted = segment["trace_id"]
    assert rerooted != xray_trace_id(caller) and xray_accepts(int(otel_trace_id(rerooted), 16))
    assert segment["annotations"]["otel_trace_id"] == caller
    assert "parent_id" not in segment  # the caller's span is in a trace X-Ray does not have
    assert all(e["trace_id"] == rerooted for e in flatten(segment))
    assert response.headers["X-Amzn-Trace-Id"] == f"Root={rerooted};Sampled=1"
    assert exported(app, otlp_receiver, caller, wait=True)

    access = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"cruddur.access"' in line]
    assert [(r["trace_id"], r["xray_trace_id"]) for r in access] == [(caller, rerooted)]
    health = client.get("/api/health-check").json["integrations"]["xray"]
    assert health["rerooted"] == 1 and health["contained_errors"] == 0


# -- containment --------------------------------------------------------------------------------------
def no_traceback(capsys) -> str:
    output = capsys.readouterr()
    assert "Traceback" not in output.out + output.err
    return output.out


def test_a_send_that_fails_is_counted_not_a_500(make_app, xray_listener, capsys):
    app = make_app()
    app.extensions["cruddur.xray"].emitter.socket.close()  # every send now fails with OSError
    client = app.test_client()
    for _ in range(3):
        response = client.get(HOME, headers={"traceparent": f"00-{fresh_trace()}-{span_id()}-01"})
        assert response.status_code == 200

    def health():
        state = client.get("/api/health-check").json["integrations"]["xray"]
        return state if state["dropped"] == 3 else None

    state = wait_for(health)
    assert (state["failed"], state["last_error"], state["contained_errors"]) == (3, "OSError", 0)
    out = no_traceback(capsys)
    assert out.count("delivery failed") == 1  # rate-limited
    assert xray_listener.documents() == []


def test_a_segment_closed_before_its_subsegment_ends(make_app, xray_listener, capsys):
    app = make_app()
    recorder = app.extensions["cruddur.xray"]

    @app.get("/test/closed-early")
    def closed_early():
        with span("outlives_the_segment"):
            recorder.end_segment()  # the segment closes while a subsegment is still open
        with span("starts_after_the_segment"):
            pass
        return {"ok": True}

    client = app.test_client()
    response = client.get("/test/closed-early", headers={"traceparent": f"00-{fresh_trace()}-{span_id()}-01"})
    assert response.status_code == 200
    health = client.get("/api/health-check").json["integrations"]["xray"]
    assert health["contained_errors"] >= 1  # the middleware's own end_segment found the segment closed
    no_traceback(capsys)
    assert client.get(HOME).status_code == 200


@pytest.mark.parametrize(
    "value",
    [
        "Root",  # the SDK's TraceHeader parser raises IndexError inside (and logs the whole header)
        "Root=1-6b09fd17-7c53a535e19af8e1438b6781;Parent",
        "Root=1-6b09fd17-zzzz;Parent=<script>;Sampled=9" + "x" * 3000,
        "Root=1-\u00e9\u00e9;Sampled=1",
    ],
)
def test_header_values_the_sdk_parsers_choke_on(value, make_app, xray_listener, capsys):
    app = make_app()
    response = app.test_client().get(HOME, headers={"X-Amzn-Trace-Id": value})
    assert response.status_code == 200
    trace_id, _, flags = traceresponse(response)
    assert flags == "01" and xray_accepts(int(trace_id, 16))  # unreadable: a trace of our own
    out = no_traceback(capsys)
    assert value not in out and "malformed tracing header" not in out


def test_a_failing_header_rewrite_sends_no_segment(make_app, xray_listener, monkeypatch, capsys):
    app = make_app()

    def broken(span, status):
        raise ValueError("rewrite bug")

    monkeypatch.setattr(xray, "follow_opentelemetry", broken)
    client = app.test_client()
    response = client.get(HOME, headers={"traceparent": f"00-{fresh_trace()}-{span_id()}-01"})
    assert response.status_code == 200 and response.json
    # Both requests: the home page and the health check that reads the count.
    assert client.get("/api/health-check").json["integrations"]["xray"]["contained_errors"] == 2
    assert "X-Amzn-Trace-Id" not in response.headers
    time.sleep(0.3)
    assert xray_listener.segments() == []  # X-Ray could not follow OpenTelemetry: it records nothing
    out = no_traceback(capsys)
    assert out.count("was contained") == 1


@pytest.mark.parametrize("processor", ["xray", "opentelemetry"])
def test_a_span_processor_that_raises_is_contained(processor, make_app, monkeypatch, capsys):
    app = make_app()

    def broken(self, *args, **kwargs):
        raise RuntimeError("processor bug")

    target = xray.SubsegmentProcessor if processor == "xray" else tracing.CountingSpanProcessor
    monkeypatch.setattr(target, "on_start", broken)
    monkeypatch.setattr(target, "on_end", broken)
    client = app.test_client()
    for path in (HOME, "/api/activities/search?term=cloud"):
        assert client.get(path, headers={"traceparent": f"00-{fresh_trace()}-{span_id()}-01"}).status_code == 200
    assert client.post("/api/activities", json={"message": "contained", "ttl": "1-day"}).status_code == 200
    assert client.get("/api/health-check").json["integrations"][processor]["contained_errors"] > 0
    no_traceback(capsys)
    assert trace.get_current_span().get_span_context().is_valid is False


@pytest.mark.parametrize("hook", ["begin", "answer", "end"])
def test_every_x_ray_hook_is_contained(hook, config, otlp_receiver, xray_listener, monkeypatch, capsys):
    def broken(self, *args):
        raise RuntimeError(f"{hook} bug")

    monkeypatch.setattr(xray.SegmentHooks, hook, broken)
    app = create_app(config.replace(otlp_endpoint=otlp_receiver.url, xray_daemon_address=xray_listener.daemon_address))
    client = app.test_client()
    for path in (HOME, f"/api/activities/{uuid.uuid4()}"):
        response = client.get(path, headers={"traceparent": f"00-{fresh_trace()}-{span_id()}-01"})
        assert response.status_code == (200 if path == HOME else 404) and response.is_json
    assert client.get("/api/health-check").json["integrations"]["xray"]["contained_errors"] >= 2
    assert no_traceback(capsys).count("was contained") == 1


def test_x_ray_registers_its_hooks_the_public_way(make_app):
    """Flask's hook lists hold X-Ray's contained functions, and no method of the SDK's middleware."""
    app = make_app()
    hooks = [*app.before_request_funcs[None], *app.after_request_funcs[None], *app.teardown_request_funcs[None]]
    assert {"begin", "answer", "end"} <= {getattr(hook, "__name__", "") for hook in hooks}
    assert not [h for h in hooks if "aws_xray_sdk" in getattr(h, "__module__", "")]


def test_span_attributes_x_ray_cannot_take_are_left_out(make_app, xray_listener):
    app = make_app()

    @app.get("/test/odd-attributes")
    def odd_attributes():
        with span("odd?name;(x)<y>" + "n" * 300, **{"app.ratio": float("nan"), "app.ok": 1}) as s:
            s.set_attribute("app.key-with.dash", "v")
            s.set_attribute("values", [1.0, float("inf")])
        return {}

    caller = fresh_trace()
    app.test_client().get("/test/odd-attributes", headers={"traceparent": f"00-{caller}-{span_id()}-01"})
    (segment,) = xray_listener.wait_for_segments()
    (sub,) = [e for e in flatten(segment) if e["name"].startswith("odd")]
    assert len(sub["name"]) == 200 and sub["name"].startswith("odd_name__x__y_")
    assert sub["annotations"] == {"app_ok": 1, "app_key_with_dash": "v"}
    assert "values" not in sub.get("metadata", {}).get("default", {})


def test_a_host_never_names_a_segment_x_ray_refuses(make_app, xray_listener):
    """werkzeug hands over only hosts of valid characters, but those may be long or IPv6 literals."""
    app = make_app(xray_url="*4567*")
    client = app.test_client()
    long_host = "cruddur-4567" + ".h" * 150  # 312 characters
    for host in (long_host, "[::1]:4567"):
        client.get("/api/health-check", headers={"traceparent": f"00-{fresh_trace()}-{span_id()}-01", "Host": host})
    names = sorted(s["name"] for s in xray_listener.wait_for_segments(count=2))
    assert names == sorted([long_host[:200], "_::1_:4567"])


def test_a_document_over_64_kb_is_dropped_and_counted(make_app, xray_listener, capsys):
    app = make_app()

    @app.get("/test/huge")
    def huge():
        with span("huge", payload="x" * 70_000):
            pass
        return {}

    client = app.test_client()
    assert client.get("/test/huge", headers={"traceparent": f"00-{fresh_trace()}-{span_id()}-01"}).status_code == 200
    state = wait_for(lambda: (s := client.get("/api/health-check").json["integrations"]["xray"])["dropped"] and s)
    assert (state["dropped"], state["sent"], state["last_error"]) == (1, 0, "ValueError")
    assert "over X-Ray's 64 kB" in capsys.readouterr().out
    assert xray_listener.datagram_count == 0


def test_x_ray_mirrors_the_spans_of_the_requests_it_samples_only(config, xray_listener):
    """X-Ray's rules (1/s, then 10 %) pick some requests: each of those has one subsegment per
    child span, with the span's id; the others send nothing and leave nothing behind."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    app = create_app(config.replace(xray_daemon_address=xray_listener.daemon_address))
    observed = InMemorySpanExporter()
    app.extensions["cruddur.tracer_provider"].add_span_processor(SimpleSpanProcessor(observed))
    client = app.test_client()
    next_second()
    decisions = {}
    for _ in range(20):  # one second's burst: the reservoir samples the first, the rate about 2 more
        response = client.get(HOME)
        decisions[traceresponse(response)[0]] = response.headers["X-Amzn-Trace-Id"].endswith(";Sampled=1")
    assert True in decisions.values() and False in decisions.values(), decisions
    children: dict[str, set[str]] = {}
    for s in observed.get_finished_spans():
        if s.kind is not trace.SpanKind.SERVER:
            children.setdefault(format(s.context.trace_id, "032x"), set()).add(format(s.context.span_id, "016x"))
    for trace_id, sampled in decisions.items():
        assert len(children[trace_id]) == 3, "the service span and two SQL statements"
        if sampled:
            (segment,) = xray_listener.wait_for_segments(lambda s, t=trace_id: s["trace_id"] == xray_trace_id(t))
            assert {sub["id"] for sub in flatten(segment)[1:]} == children[trace_id]
    time.sleep(0.3)
    assert not [t for t, sampled in decisions.items() if not sampled and xray_listener.documents_for_trace(t)]
    assert app.extensions["cruddur.xray_subsegments"].open == {}, "nothing of a finished request stays behind"


def test_client_ip_follows_the_trusted_proxies(make_app, xray_listener):
    """The segment's client_ip is the peer, or the X-Forwarded-For entry CRUDDUR_TRUSTED_PROXIES trusts."""
    forged = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7"}
    for trusted, client_ip, flagged in ((0, "127.0.0.1", None), (1, "198.51.100.7", True)):
        app = make_app(trusted_proxies=trusted)
        caller = fresh_trace()
        response = app.test_client().get(
            HOME,
            headers={"traceparent": f"00-{caller}-{span_id()}-01", **forged},
            environ_base={"REMOTE_ADDR": "127.0.0.1"},
        )
        assert response.status_code == 200
        (segment,) = xray_listener.wait_for_segments(lambda s, t=caller: s["trace_id"] == xray_trace_id(t))
        assert segment["http"]["request"]["client_ip"] == client_ip
        assert segment["http"]["request"].get("x_forwarded_for") is flagged
