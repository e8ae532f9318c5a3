"""The fault suite for the OTLP transports: X-Ray and CloudWatch Logs over SigV4-signed OTLP/HTTP.

Same campaign as test_faults.py (the real app under gunicorn, every vendor failing one way, steady
load, SIGTERM during the outage), with CRUDDUR_XRAY_TRANSPORT=otlp and CRUDDUR_CLOUDWATCH_TRANSPORT=otlp
against the SigV4-checking AWS stand-in, plus the two ways AWS refuses a request: a bad signature
(wrong secret key) and expired credentials (a session token the stand-in reports as expired).
"""

from __future__ import annotations

import json

import pytest

from tests.support.sinks import EXPIRED_SESSION_TOKEN

from .rig import HEALTHY, run_faults

pytestmark = pytest.mark.slow

LOAD_SECONDS = 5.0
RATE = 100.0
HTTP_FAULTS = ("refuse", "blackhole", "slow", "status500", "status429")
AUTH_FAULTS = ("bad_signature", "expired_token")
ALL_RUNS = [HEALTHY, *HTTP_FAULTS, *AUTH_FAULTS]
INTEGRATIONS = ("opentelemetry", "xray", "cloudwatch", "rollbar")
AWS = ("xray", "cloudwatch")
# Every one of these goes over HTTP now, X-Ray included: its outages show in the health check.
MUST_FAIL = {
    "refuse": INTEGRATIONS,
    "blackhole": INTEGRATIONS,
    "status500": INTEGRATIONS,
    "status429": INTEGRATIONS,
    "bad_signature": AWS,
    "expired_token": AWS,
    "slow": (),
}
MUST_BACK_UP = {"slow": ("opentelemetry", "xray", "rollbar")}
DENIED_AS = {"bad_signature": "SignatureDoesNotMatch", "expired_token": "ExpiredTokenException"}
# One line per kind per minute per worker: the campaign of test_faults.py plus the kinds of the
# OTLP transports' exporters (X-Ray's shares the span exporter's logger and messages).
MAX_WARNING_LINES = 20


def otlp_env(fault: str, sinks) -> dict[str, str]:
    """Both AWS transports on OTLP, pointed at the stand-in; the auth faults break the credentials."""
    env = {**sinks.addresses["aws_env"], "CRUDDUR_XRAY_TRANSPORT": "otlp", "CRUDDUR_CLOUDWATCH_TRANSPORT": "otlp"}
    if fault == "bad_signature":
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-" + env["AWS_SECRET_ACCESS_KEY"]
    if fault == "expired_token":
        env["AWS_SESSION_TOKEN"] = EXPIRED_SESSION_TOKEN
    return env


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every fault once (and a healthy baseline); stops overlap the next fault's start."""
    return run_faults(
        ALL_RUNS,
        tmp_path_factory.mktemp("faults-otlp"),
        load_seconds=LOAD_SECONDS,
        health_timeout=25.0,
        overlap_stops=True,
        rate=RATE,
        extra_env=otlp_env,
        must_fail=MUST_FAIL,
        must_back_up=MUST_BACK_UP,
    )


@pytest.fixture(params=ALL_RUNS)
def run(request, runs):
    """One fault's run; fails here if the run itself could not complete."""
    run = runs[request.param]
    assert run.error is None, f"{run.fault}: {run.error}\n{run.server.stderr_text()[-3000:] if run.server else ''}"
    return run


def merged_health(run) -> dict[str, dict]:
    """Largest counters seen per integration (as FaultRun.health), checked against this campaign's table."""
    return run.health()


def test_requests_are_served_fast_and_memory_stays_bounded(run):
    assert run.startup_seconds < 10, f"{run.fault}: startup took {run.startup_seconds:.1f} s"
    assert run.load.count >= 100, run.load.summary()
    failures = run.warmup.failures() + run.load.failures()
    assert not failures, f"{run.fault}: {len(failures)} not 2xx, e.g. {failures[:5]}"
    assert run.load.percentile(99) < 50, f"{run.fault}: {run.load.summary()}; CPU s {run.cpu}"
    assert run.memory_growth_mib < 64, f"{run.fault}: {run.rss_baseline} -> {run.rss_peak}"


def test_no_traceback_and_warnings_are_rate_limited(run):
    assert run.tracebacks() == 0, f"{run.fault}: tracebacks in\n{run.output()[-4000:]}"
    warnings = run.warning_lines()
    assert len(warnings) <= MAX_WARNING_LINES, "\n".join(line[:300] for line in warnings)
    if MUST_FAIL.get(run.fault):
        assert warnings, f"{run.fault}: no warning at all during the outage"


def test_stops_gracefully_within_35_seconds_on_sigterm(run):
    assert not run.killed, f"{run.fault}: needed SIGKILL"
    assert run.returncode == 0, f"{run.fault}: exit code {run.returncode}\n{run.server.stderr_text()[-3000:]}"
    assert run.stop_seconds < 35, f"{run.fault}: stop took {run.stop_seconds:.1f} s"


def test_health_check_shows_the_outage_on_the_otlp_transports(run):
    bodies = [json.loads(body) for status, body in run.health_bodies if status == 200]
    assert bodies and len(bodies) == len(run.health_bodies)
    for body in bodies:
        for name in INTEGRATIONS:
            assert body["integrations"][name]["enabled"] is True, (name, body["integrations"][name]["reason"])
        assert "OTLP" in body["integrations"]["xray"]["reason"]
        assert "OTLP" in body["integrations"]["cloudwatch"]["reason"]
    health = merged_health(run)
    if run.fault == HEALTHY:
        for name in INTEGRATIONS:
            state = health[name]
            assert state["sent"] > 0 and state["failed"] == 0 and state["dropped"] == 0, (name, state)
        return
    for name in MUST_FAIL[run.fault]:
        state = health[name]
        assert state["failed"] > 0 and state["last_error_at"], f"{run.fault}/{name}: {state}"
        assert state["dropped"] + state["queued"] > 0, f"{run.fault}/{name}: {state}"
    for name in MUST_BACK_UP.get(run.fault, ()):
        state = health[name]
        assert state["queued"] + state["dropped"] > 0, f"{run.fault}/{name}: {state}"
    if run.fault in ("refuse", "status500", *AUTH_FAULTS):
        for name in AWS:
            assert health[name]["sent"] == 0, f"{run.fault}/{name}: {health[name]}"


def test_no_credential_or_signature_in_the_health_check_or_the_logs(run):
    assert run.leaked_secrets() == []
    signatures = run.sinks_summary["aws"]["signatures"]
    if run.fault not in ("refuse",):
        assert signatures, f"{run.fault}: the stand-in kept no signature"
    texts = [body.decode(errors="replace") for _status, body in run.health_bodies] + [run.output()]
    assert not [s for s in signatures if any(s in text for text in texts)]


def test_the_aws_stand_in_saw_the_outage(run):
    summary = run.sinks_summary
    aws, requests = summary["aws"], summary["requests"]["aws"]
    if run.fault in ("blackhole", "slow", "status500", "status429"):
        assert requests.get(run.fault, 0) > 0, requests
    if run.fault in ("refuse", "blackhole", "status500", "status429", *AUTH_FAULTS):
        assert aws["spans"] == 0 and aws["log_records"] == 0, aws
    if run.fault in AUTH_FAULTS:
        assert aws["denied"] and set(aws["denied"]) == {DENIED_AS[run.fault]}, aws["denied"]
        # Honeycomb and Rollbar are unaffected by AWS refusing our credentials.
        assert summary["server_spans"] > 0 and summary["rollbar_items"] > 0, summary
    else:
        assert aws["denied"] == [], aws["denied"]
    if run.fault == HEALTHY:
        assert aws["server_spans"] > 0 and aws["log_records"] > 0, aws
        assert summary["segments"] == 0 and summary["log_events"] == 0, "the daemon/API transports stayed off"
