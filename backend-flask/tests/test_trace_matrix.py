"""The trace-path matrix: every way a request can arrive, under gunicorn (2 workers, all four integrations on).

Six requests per row to `/rollbar/test/exception` (so each one has a span, maybe a segment, access-log
lines on stdout and in CloudWatch, and a Rollbar item). For every request every column is asserted:
the OpenTelemetry server span and its parent, the X-Ray segment (valid by X-Ray's rules, its trace id
and parent), the access-log line's ids, the Rollbar item's ids and the response headers. The counts
are written to test-output/trace-matrix.md. The browser-started row runs in the frontend's e2e test.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import pytest

# Plain http.client: `requests` is instrumented in this process once any test built an app, and its
# instrumentation would replace the trace headers each row sends.
from tests.faults.load import get_json
from tests.support.app_server import BACKEND_DIR, AppServer
from tests.support.xray_listener import otel_trace_id, xray_trace_id

pytestmark = pytest.mark.slow

PER_ROW = 6
PATH = "/rollbar/test/exception"
THIRTY_ONE_DAYS = 31 * 86400
REPORT = BACKEND_DIR.parent / "test-output" / "trace-matrix.md"


def fresh_trace(epoch: float | None = None) -> str:
    return f"{int(time.time() if epoch is None else epoch):08x}{uuid.uuid4().hex[:24]}"


@dataclass
class Row:
    """One way in: the headers sent, and what each tool must do with it."""

    name: str
    headers: object  # (caller trace, caller span) -> headers
    otel: bool  # OpenTelemetry records
    xray: object  # True, False, or "local" (X-Ray's own rules, for requests OpenTelemetry records)
    continued: bool = True  # the response's trace id is the caller's
    parent: bool = True  # the server span's parent is the caller's span
    old: bool = False  # the caller's id is one X-Ray refuses: rerooted


def _xray(trace, tail):
    return {"X-Amzn-Trace-Id": f"Root={xray_trace_id(trace)}{tail}"}


ROWS = [
    Row("traceparent sampled (-01)", lambda t, p: {"traceparent": f"00-{t}-{p}-01"}, True, True),
    Row("traceparent not sampled (-00)", lambda t, p: {"traceparent": f"00-{t}-{p}-00"}, False, False),
    Row("X-Ray Root;Parent;Sampled=1", lambda t, p: _xray(t, f";Parent={p};Sampled=1"), True, True),
    Row("X-Ray Root;Parent;Sampled=0", lambda t, p: _xray(t, f";Parent={p};Sampled=0"), False, False),
    Row("X-Ray Root;Parent (no decision)", lambda t, p: _xray(t, f";Parent={p}"), True, "local"),
    Row("X-Ray Root;Parent;Sampled=?", lambda t, p: _xray(t, f";Parent={p};Sampled=?"), True, "local"),
    Row("ALB-style Root only", lambda t, p: _xray(t, ""), True, "local", parent=False),
    Row("no tracing header", lambda t, p: {}, True, "local", continued=False, parent=False),
    Row(
        "both, disagreeing (traceparent -00, X-Ray Sampled=1)",
        lambda t, p: {"traceparent": f"00-{t}-{p}-00", **_xray(fresh_trace(), ";Sampled=1")},
        False,
        False,
    ),
    Row("W3C id 31 days old (-01)", lambda t, p: {"traceparent": f"00-{t}-{p}-01"}, True, True, old=True),
]


@dataclass
class Sent:
    """One request of a row and what came back."""

    row: Row
    caller_trace: str
    caller_span: str
    status: int
    trace_id: str
    span_id: str
    flags: str
    xray_root: str
    xray_sampled: str


@pytest.fixture(scope="module")
def matrix(tmp_path_factory, stand_ins):
    """Start the app, send every row, stop it (everything flushed); the requests and the sinks."""
    env = {**stand_ins.env, "ROLLBAR_ACCESS_TOKEN": f"token-{uuid.uuid4().hex}"}
    server = AppServer(env, workers=2, log_dir=tmp_path_factory.mktemp("matrix"))
    server.start()
    server.wait_for_workers()
    sent: list[Sent] = []
    try:
        for row in ROWS:
            # X-Ray's local rule takes the first request of each second in each worker (1/s, then 10%).
            time.sleep(1.02 - time.time() % 1)
            for _ in range(PER_ROW):
                caller_trace = fresh_trace(time.time() - THIRTY_ONE_DAYS if row.old else None)
                caller_span = uuid.uuid4().hex[:16]
                status, headers, _ = get_json(server.url, PATH, row.headers(caller_trace, caller_span), timeout=20)
                _, trace_id, span_id, flags = headers["traceresponse"].split("-")
                xray_header = dict(part.split("=", 1) for part in headers["x-amzn-trace-id"].split(";"))
                sent.append(
                    Sent(
                        row, caller_trace, caller_span, status, trace_id, span_id, flags,
                        xray_header["Root"], xray_header.get("Sampled"),
                    )
                )  # fmt: skip
    finally:
        _, returncode = server.stop()
    assert returncode == 0, server.stderr_text()[-3000:]
    return {
        "sent": sent,
        "spans": [s for s in stand_ins.otlp.spans() if s["kind"] == "SERVER"],
        "segments": stand_ins.xray.segments(),
        "rejected": stand_ins.xray.rejected(),
        "access": [r for r in server.log_records() if r.get("logger") == "cruddur.access" and r.get("path") == PATH],
        "cloudwatch": [
            r
            for r in stand_ins.moto.records(stand_ins.log_group)
            if r.get("logger") == "cruddur.access" and r.get("path") == PATH
        ],
        "rollbar": [i for i in stand_ins.rollbar.items() if i["level"] == "error"],
        "stderr": server.stderr_text(),  # stdout has the route's own error, logged with its traceback by design
    }


def cells(matrix, row: Row) -> dict:
    """Every column of one row, per request, asserted; returns the row's counts."""
    sent = [s for s in matrix["sent"] if s.row is row]
    counts = {"spans": 0, "segments": 0, "access": 0, "cloudwatch": 0, "rollbar": 0, "responses": 0}
    for request in sent:
        where = f"{row.name} / {request.caller_trace}"
        # The response headers.
        assert request.status == 500, where  # /rollbar/test/exception raises, by design
        if row.continued:
            assert request.trace_id == request.caller_trace, where
        assert request.flags == ("01" if row.otel else "00"), where
        if row.old:
            assert request.xray_root != xray_trace_id(request.trace_id), where
            assert abs(int(request.xray_root.split("-")[1], 16) - time.time()) < 600, where
        else:
            assert request.xray_root == xray_trace_id(request.trace_id), where
        counts["responses"] += 1

        # OpenTelemetry: the server span and its parent.
        spans = [s for s in matrix["spans"] if s["trace_id"] == request.trace_id]
        assert len(spans) == (1 if row.otel else 0), where
        if spans:
            assert spans[0]["span_id"] == request.span_id, where
            assert spans[0]["parent_span_id"] == (request.caller_span if row.parent else None), where
        counts["spans"] += len(spans)

        # X-Ray: the segment (valid: nothing was rejected), its trace id and parent.
        segments = [s for s in matrix["segments"] if s["trace_id"] == request.xray_root]
        assert len(segments) == (1 if request.xray_sampled == "1" else 0), where
        if row.xray is True:
            assert segments, where
        if row.xray is False or not row.otel:
            assert not segments, where
        for segment in segments:
            assert segment["id"] == request.span_id, where
            continued_parent = row.parent and not row.old
            assert segment.get("parent_id") == (request.caller_span if continued_parent else None), where
            if row.old:
                assert segment["annotations"]["otel_trace_id"] == request.trace_id, where
            else:
                assert "otel_trace_id" not in segment.get("annotations", {}), where
            assert segment["http"]["response"]["status"] == 500 and segment.get("fault") is True, where
        counts["segments"] += len(segments)

        # The access-log line (stdout and CloudWatch) and the Rollbar item: both ids.
        for sink in ("access", "cloudwatch"):
            lines = [r for r in matrix[sink] if r["trace_id"] == request.trace_id]
            assert [(r["status"], r["xray_trace_id"]) for r in lines] == [(500, request.xray_root)], (sink, where)
            counts[sink] += len(lines)
        items = [i for i in matrix["rollbar"] if i["custom"]["trace_id"] == request.trace_id]
        assert [i["custom"]["xray_trace_id"] for i in items] == [request.xray_root], where
        counts["rollbar"] += len(items)
    if row.xray == "local":
        # X-Ray's rules sample the first request of the second in a worker, then 10%: some, not all.
        assert 1 <= counts["segments"] <= PER_ROW, (row.name, counts)
    return counts


def test_every_cell_of_the_matrix(matrix):
    assert len(matrix["sent"]) == PER_ROW * len(ROWS)
    assert matrix["rejected"] == [], "documents X-Ray would refuse"
    assert "Traceback" not in matrix["stderr"]
    lines = [
        f"| row ({PER_ROW} requests each) | OTel server spans | X-Ray segments (valid) "
        "| access lines stdout / CloudWatch (both ids) | Rollbar items (both ids) | responses (headers) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in ROWS:
        c = cells(matrix, row)
        lines.append(
            f"| {row.name} | {c['spans']}/{PER_ROW} | {c['segments']}/{PER_ROW} | {c['access']}/{c['cloudwatch']} "
            f"| {c['rollbar']}/{PER_ROW} | {c['responses']}/{PER_ROW} |"
        )
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def test_the_old_rows_xray_ids_are_new_traces(matrix):
    old = [s for s in matrix["sent"] if s.row.old]
    assert len({s.xray_root for s in old}) == PER_ROW  # a fresh X-Ray trace per request
    assert all(otel_trace_id(s.xray_root) != s.trace_id for s in old)
