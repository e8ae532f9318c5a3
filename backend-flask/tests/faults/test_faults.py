"""The real app under gunicorn, all four integrations on, while the vendors fail in each way.

One module-scoped campaign runs every fault once (own stand-ins process, own app, a few seconds of
steady load at 4 connections, the outage still on at SIGTERM); the tests below each check one
bound for each fault, so a failure names both the fault and the bound.
"""

from __future__ import annotations

import json

import pytest

from .rig import FAULTS, HEALTHY, HTTP_INTEGRATIONS, INTEGRATIONS, MUST_BACK_UP, MUST_FAIL, run_faults

pytestmark = pytest.mark.slow

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
    run = runs[request.param]
    assert run.error is None, f"{run.fault}: {run.error}\n{run.server.stderr_text()[-3000:] if run.server else ''}"
    return run


def test_starts_within_10_seconds(run):
    assert run.startup_seconds < 10, f"{run.fault}: startup took {run.startup_seconds:.1f} s"


def test_every_request_is_answered_2xx(run):
    assert run.load.count >= 100, run.load.summary()
    failures = run.warmup.failures() + run.load.failures()
    assert not failures, f"{run.fault}: {len(failures)} not 2xx, e.g. {failures[:5]}"


def test_p99_latency_under_50_ms_at_4_connections(run):
    slowest = [(s.call, round(s.latency_ms, 1)) for s in run.load.slowest(8)]
    assert run.load.percentile(99) < 50, f"{run.fault}: {run.load.summary()}; slowest {slowest}; CPU s {run.cpu}"


def test_worker_memory_grows_less_than_64_mib(run):
    assert len(run.rss_baseline) == run.workers
    assert run.memory_growth_mib < 64, f"{run.fault}: {run.rss_baseline} -> {run.rss_peak}"


def test_no_traceback_per_request_and_warnings_are_rate_limited(run):
    assert run.tracebacks() == 0, f"{run.fault}: tracebacks in\n{run.output()[-4000:]}"
    warnings = run.warning_lines()
    assert len(warnings) <= MAX_WARNING_LINES, f"{run.fault}: {len(warnings)} warning lines:\n" + "\n".join(
        line[:300] for line in warnings
    )
    # A run that had something to warn about did so: the outage is in the logs, not silent.
    if MUST_FAIL.get(run.fault):
        assert warnings, f"{run.fault}: no warning at all during the outage"


def test_stops_gracefully_within_35_seconds_on_sigterm(run):
    assert not run.killed, f"{run.fault}: needed SIGKILL"
    assert run.returncode == 0, f"{run.fault}: exit code {run.returncode}\n{run.server.stderr_text()[-3000:]}"
    assert run.stop_seconds < 35, f"{run.fault}: stop took {run.stop_seconds:.1f} s"


def test_health_check_reports_every_integration(run):
    bodies = [json.loads(body) for status, body in run.health_bodies if status == 200]
    assert bodies and len(bodies) == len(run.health_bodies)
    for body in bodies:
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
    health = run.health()
    if run.fault == HEALTHY:
        for name in INTEGRATIONS:
            state = health[name]
            assert state["sent"] > 0 and state["failed"] == 0 and state["dropped"] == 0, (name, state)
            assert state.get("contained_errors", 0) == 0, (name, state)
            assert state["last_error_at"] is None, (name, state)
        return
    for name in MUST_FAIL[run.fault]:
        state = health[name]
        assert state["failed"] > 0 and state["last_error_at"], f"{run.fault}/{name}: {state}"
        assert state["dropped"] + state["queued"] > 0, f"{run.fault}/{name}: {state}"
    for name in MUST_BACK_UP.get(run.fault, ()):
        state = health[name]
        assert state["queued"] + state["dropped"] > 0, f"{run.fault}/{name}: {state}"
    if run.fault in ("refuse", "status500"):
        # Nothing gets through: nothing may be counted as sent.
        for name in HTTP_INTEGRATIONS:
            assert health[name]["sent"] == 0, f"{run.fault}/{name}: {health[name]}"


def test_no_secret_in_the_health_check_or_the_logs(run):
    assert run.health_bodies
    assert run.leaked_secrets() == []


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
