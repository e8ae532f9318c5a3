"""The real app under gunicorn, all four integrations on, while the vendors fail in each way.

One module-scoped campaign runs every fault once (own stand-ins process, own app, a few seconds of
steady load at 4 connections, the outage still on at SIGTERM); the tests below each check one
bound for each fault, so a failure names both the fault and the bound.
"""

from __future__ import annotations

import pytest

from . import checks
from .rig import FAULTS, HEALTHY, HTTP_INTEGRATIONS, INTEGRATIONS, MUST_BACK_UP, MUST_FAIL, run_faults

# serial: the latency and startup bounds hold on a machine that is not also running the rest of the suite.
pytestmark = [pytest.mark.slow, pytest.mark.serial]

LOAD_SECONDS = 5.0
RATE = 100.0  # requests/s over the 4 connections: steady load, about a third of what 2 workers serve here
ALL_RUNS = [HEALTHY, *FAULTS]
STATUS_KEYS = {"enabled", "reason", "queued", "sent", "dropped", "failed", "last_error", "last_error_at"}
# Rate-limited warnings: at most one line per kind per minute per worker. A run is shorter than a
# minute, so this bounds the lines by kinds x workers, whatever the request count. (The request
# metrics' final export at SIGTERM adds two kinds when the OTLP endpoint is down.)
MAX_WARNING_LINES = 20


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every fault (and a healthy baseline), each run once, stops overlapping the next fault's start."""
    return run_faults(
        ALL_RUNS,
        tmp_path_factory.mktemp("faults"),
        load_seconds=LOAD_SECONDS,
        health_timeout=25.0,
        overlap_stops=True,
        rate=RATE,
    )


@pytest.fixture(params=ALL_RUNS)
def run(request, runs):
    """One fault's run; fails here if the run itself could not complete."""
    return checks.completed(runs[request.param])


def test_starts_within_10_seconds(run):
    checks.check_started(run)


def test_every_request_is_answered_2xx(run):
    checks.check_every_request_answered(run)


def test_no_request_waits_on_a_vendor_and_p99_stays_under_50_ms(run):
    checks.check_latency(run)


def test_worker_memory_grows_less_than_64_mib(run):
    checks.check_memory(run)


def test_no_traceback_per_request_and_warnings_are_rate_limited(run):
    checks.check_quiet_logs(run, MAX_WARNING_LINES, must_warn=bool(MUST_FAIL.get(run.fault)))


def test_stops_gracefully_within_35_seconds_on_sigterm(run):
    checks.check_graceful_stop(run)


def test_health_check_reports_every_integration(run):
    for body in checks.health_bodies(run):
        assert body["success"] is True
        integrations = body["integrations"]
        assert set(INTEGRATIONS) | {"browser_relay"} <= set(integrations)
        for name, state in integrations.items():
            assert set(state) >= STATUS_KEYS, name
            assert state["enabled"] is True, f"{name}: {state['reason']}"
            # Beyond the common keys: integration-specific counts (rerooted, contained_errors, produced).
            counters = [state[key] for key in ("queued", "sent", "dropped", "failed", *(set(state) - STATUS_KEYS))]
            assert all(isinstance(value, int) and value >= 0 for value in counters), (name, state)


def test_health_check_shows_the_outage(run):
    # Under refuse and status500 nothing gets through: nothing may be counted as sent.
    nothing_sent = HTTP_INTEGRATIONS if run.fault in ("refuse", "status500") else ()
    checks.check_outage_in_health(run, INTEGRATIONS, HEALTHY, MUST_FAIL, MUST_BACK_UP, nothing_sent)


def test_no_secret_in_the_health_check_or_the_logs(run):
    checks.check_no_secret_leaked(run)


def test_the_stand_ins_saw_the_outage(run):
    """The fault really was on: the sinks counted requests in that mode (and nothing stored when refused)."""
    summary = run.sinks_summary
    assert summary is not None
    assert summary["xray_rejected"] == 0, "the app sent documents X-Ray would refuse"
    requests = summary["requests"]
    if run.fault in ("blackhole", "slow", "status500", "status429"):
        for sink in ("otlp", "rollbar", "cloudwatch"):
            assert requests[sink].get(run.fault, 0) > 0, (sink, requests)
    if run.fault in ("refuse", "blackhole", "status500", "status429"):
        assert summary["spans"] == 0 and summary["rollbar_items"] == 0 and summary["log_events"] == 0, summary
    if run.fault in ("refuse", "no_xray"):
        assert summary["segments"] == 0, summary
    if run.fault == HEALTHY:
        assert summary["server_spans"] > 0 and summary["segments"] > 0, summary
        assert summary["rollbar_items"] > 0 and summary["log_events"] > 0, summary
