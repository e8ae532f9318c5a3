"""The fault suite for the OTLP transports: X-Ray and CloudWatch Logs over SigV4-signed OTLP/HTTP.

Same campaign as test_faults.py (the real app under gunicorn, every vendor failing one way, steady
load, SIGTERM during the outage), with CRUDDUR_XRAY_TRANSPORT=otlp and CRUDDUR_CLOUDWATCH_TRANSPORT=otlp
against the SigV4-checking AWS stand-in, plus the two ways AWS refuses a request: a bad signature
(wrong secret key) and expired credentials (a session token the stand-in reports as expired).
"""

from __future__ import annotations

import pytest

from tests.support.sinks import EXPIRED_SESSION_TOKEN

from . import checks
from .rig import HEALTHY, run_faults

# serial: the latency and startup bounds hold on a machine that is not also running the rest of the suite.
pytestmark = [pytest.mark.slow, pytest.mark.serial]

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
    return checks.completed(runs[request.param])


def test_starts_and_answers_every_request(run):
    checks.check_started(run)
    checks.check_every_request_answered(run)


def test_no_request_waits_on_a_vendor_and_p99_stays_under_50_ms(run):
    checks.check_latency(run)


def test_worker_memory_grows_less_than_64_mib(run):
    checks.check_memory(run)


def test_no_traceback_and_warnings_are_rate_limited(run):
    checks.check_quiet_logs(run, MAX_WARNING_LINES, must_warn=bool(MUST_FAIL.get(run.fault)))


def test_stops_gracefully_within_35_seconds_on_sigterm(run):
    checks.check_graceful_stop(run)


def test_health_check_shows_the_outage_on_the_otlp_transports(run):
    for body in checks.health_bodies(run):
        for name in INTEGRATIONS:
            assert body["integrations"][name]["enabled"] is True, (name, body["integrations"][name]["reason"])
        assert "OTLP" in body["integrations"]["xray"]["reason"]
        assert "OTLP" in body["integrations"]["cloudwatch"]["reason"]
    # Under refuse, status500 and refused credentials nothing reaches AWS: nothing may count as sent.
    nothing_sent = AWS if run.fault in ("refuse", "status500", *AUTH_FAULTS) else ()
    checks.check_outage_in_health(run, INTEGRATIONS, HEALTHY, MUST_FAIL, MUST_BACK_UP, nothing_sent)


def test_no_credential_or_signature_in_the_health_check_or_the_logs(run):
    checks.check_no_secret_leaked(run)
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
