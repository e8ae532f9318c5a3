"""One trace id across every sink with both AWS transports on OTLP, under gunicorn (2 workers).

Honeycomb's stream (OTLP receiver), X-Ray's OTLP stream and CloudWatch Logs' OTLP records (the
SigV4-checking AWS stand-in), Rollbar (its receiver) and the response header all name the same trace.
"""

from __future__ import annotations

import time
import uuid

from tests.faults.load import get_json
from tests.support.aws_otlp_endpoint import AWSOTLPEndpoint

HEALTH = "/api/health-check"


def _is_server_span_of(trace_id):
    return lambda s: s["trace_id"] == trace_id and s["kind"] == "SERVER"


def test_one_trace_id_in_honeycomb_xray_logs_rollbar_and_the_response(
    app_server_factory, otlp_receiver, rollbar_receiver, tmp_path
):
    with AWSOTLPEndpoint() as aws:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
            "ROLLBAR_ENDPOINT": rollbar_receiver.endpoint,
            "ROLLBAR_ACCESS_TOKEN": f"token-{uuid.uuid4().hex}",
            "CRUDDUR_XRAY_TRANSPORT": "otlp",
            "CRUDDUR_CLOUDWATCH_TRANSPORT": "otlp",
            "CLOUDWATCH_LOG_GROUP": "cruddur",
            "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
            **aws.env(),
        }
        server = app_server_factory(env, workers=2)
        server.wait_for_workers()

        # A request the app starts, one that continues a sampled W3C trace, one that continues an
        # unsampled one, and the error Rollbar must report.
        started_at = time.time()
        status, headers, _ = get_json(server.url, "/api/activities/home")
        assert status == 200
        fresh = headers["traceresponse"].split("-")[1]
        caller = f"{int(time.time()):08x}{uuid.uuid4().hex[:24]}"
        status, headers, _ = get_json(
            server.url, "/api/activities/home", headers={"traceparent": f"00-{caller}-{'3' * 16}-01"}
        )
        assert status == 200 and headers["traceresponse"].split("-")[1] == caller
        unsampled = uuid.uuid4().hex
        status, _, _ = get_json(
            server.url, "/api/activities/home", headers={"traceparent": f"00-{unsampled}-{'4' * 16}-00"}
        )
        assert status == 200
        # The X-Ray header rows of the decision table: Sampled=0 is followed; a Root without a
        # decision (what a load balancer sends) gets the local decision (record).
        xray_unsampled = f"{int(time.time()):08x}{uuid.uuid4().hex[:24]}"
        xray_root_only = f"{int(time.time()):08x}{uuid.uuid4().hex[:24]}"
        for trace_id, suffix in ((xray_unsampled, ";Sampled=0"), (xray_root_only, "")):
            header = f"Root=1-{trace_id[:8]}-{trace_id[8:]}{suffix}"
            status, headers, _ = get_json(server.url, "/api/activities/home", headers={"X-Amzn-Trace-Id": header})
            assert status == 200 and headers["traceresponse"].split("-")[1] == trace_id
        status, headers, _ = get_json(server.url, "/rollbar/test/exception")
        assert status == 500
        error_trace = headers["traceresponse"].split("-")[1]

        seconds, returncode = server.stop()  # SIGTERM: every sender flushes
        assert returncode == 0 and seconds < 35

        for trace_id in (fresh, caller, xray_root_only, error_trace):
            honeycomb = [s for s in otlp_receiver.spans() if _is_server_span_of(trace_id)(s)]
            xray = [s for s in aws.spans() if _is_server_span_of(trace_id)(s)]
            assert len(honeycomb) == 1 and len(xray) == 1, trace_id
            assert honeycomb[0]["span_id"] == xray[0]["span_id"]
            logs = [r for r in aws.logs() if r["trace_id"] == trace_id]
            assert any(r["attributes"].get("logger") == "cruddur.access" for r in logs), trace_id
            assert all(r["span_id"] and r["attributes"]["trace_id"] == trace_id for r in logs)
        assert honeycomb[0]["parent_span_id"] is None
        # Ids the app starts are valid for X-Ray: the first 8 hex digits are the epoch seconds.
        for trace_id in (fresh, error_trace):
            assert abs(int(trace_id[:8], 16) - started_at) < 60, trace_id
        # X-Ray's stream is Honeycomb's: the unsampled requests are in neither.
        for trace_id in (unsampled, xray_unsampled):
            assert not [s for s in otlp_receiver.spans() if s["trace_id"] == trace_id]
            assert not [s for s in aws.spans() if s["trace_id"] == trace_id]
        honeycomb_traces = {s["trace_id"] for s in otlp_receiver.spans() if s["kind"] == "SERVER"}
        xray_traces = {s["trace_id"] for s in aws.spans() if s["kind"] == "SERVER"}
        assert honeycomb_traces == xray_traces
        # The logs still have the unsampled request, under the caller's id.
        assert [r for r in aws.logs() if r["trace_id"] == unsampled]

        (error_item,) = [item for item in rollbar_receiver.items() if item["level"] == "error"]
        assert error_item["custom"]["trace_id"] == error_trace
        (error_log,) = [
            r for r in aws.logs() if r["trace_id"] == error_trace and r["attributes"].get("logger") == "cruddur.access"
        ]
        assert error_log["severity"] == "ERROR" and error_log["attributes"]["status"] == 500
        assert aws.denied() == [] and aws.rejected_log_records == 0
        # One stream per worker that logged, all in the one group.
        assert {r["log_group"] for r in aws.logs()} == {"cruddur"}
        assert {r["log_stream"].split("/")[0] for r in aws.logs()} == {"backend-flask"}
