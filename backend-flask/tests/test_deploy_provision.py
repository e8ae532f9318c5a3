"""aws/provision.py against real AWS wire protocols on loopback.

CloudWatch Logs is moto in server mode. moto 5.2.5 implements no X-Ray control-plane API
(its X-Ray backend routes only PutTraceSegments, PutTelemetryRecords, GetTraceSummaries,
BatchGetTraces, GetServiceGraph and GetTraceGraph), so X-Ray groups and sampling rules are served
by `XRayControlPlane` below: a small REST-JSON server implementing GetGroups, CreateGroup,
UpdateGroup, GetSamplingRules, CreateSamplingRule and UpdateSamplingRule. botocore validates every
request against the X-Ray service model before sending it and parses every response with it.
The script runs as its own process; it finds both endpoints through boto3's standard
AWS_ENDPOINT_URL_<SERVICE> variables, exactly as it would find real AWS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest

from tests.support.moto_logs import moto_process
from tests.support.xray_listener import sampling_rule

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "aws" / "provision.py"
RULE_FILES = sorted((REPO / "aws" / "json").glob("xray*.json"))
REGION = "us-east-1"
ACCOUNT = "123456789012"
FILTER = 'service("backend-flask") { fault OR error }'
# The rule X-Ray has in every account; it must be found among others and left alone.
AWS_DEFAULT_RULE = sampling_rule("Default", 10000, 0.05, 1, arn_region=REGION)
READ_PATHS = {"/Groups", "/GetSamplingRules"}


class XRayControlPlane(ThreadingHTTPServer):
    """X-Ray's group and sampling-rule API over HTTP, paginating one item per page."""

    daemon_threads = True

    def __init__(self):
        """Listen on an ephemeral loopback port with AWS's default group and rule in place."""
        super().__init__(("127.0.0.1", 0), _XRayHandler)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, dict]] = []
        self.groups = {"Default": {"GroupName": "Default", "GroupARN": self.group_arn("Default")}}
        self.rules = {"Default": {"SamplingRule": dict(AWS_DEFAULT_RULE), "CreatedAt": 0.0, "ModifiedAt": 0.0}}
        self.segment_destination = "XRay"  # X-Ray's default until Transaction Search is enabled

    @property
    def url(self) -> str:
        """The endpoint URL for boto3."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def writes(self) -> list[str]:
        """Paths of every state-changing request received so far."""
        return [path for path, _ in self.requests if path not in READ_PATHS | {"/GetTraceSegmentDestination"}]

    @staticmethod
    def group_arn(name: str) -> str:
        """A group ARN in the form X-Ray uses."""
        return f"arn:aws:xray:{REGION}:{ACCOUNT}:group/{name}/0123456789abcdef"

    def handle_call(self, path: str, body: dict) -> tuple[int, dict]:
        """Apply one API call to the state; return (status, response body)."""
        with self.lock:
            self.requests.append((path, body))
            if path == "/Groups":
                return 200, self._page(list(self.groups.values()), body, "Groups")
            if path == "/CreateGroup":
                name = body["GroupName"]
                if name in self.groups:
                    return 400, _error("InvalidRequestException", f"Group {name} already exists")
                self.groups[name] = {
                    "GroupName": name,
                    "GroupARN": self.group_arn(name),
                    "FilterExpression": body.get("FilterExpression", ""),
                }
                return 200, {"Group": self.groups[name]}
            if path == "/UpdateGroup":
                group = self.groups.get(body.get("GroupName"))
                if group is None:
                    return 400, _error("InvalidRequestException", "Group not found")
                group["FilterExpression"] = body["FilterExpression"]
                return 200, {"Group": group}
            if path == "/GetSamplingRules":
                return 200, self._page(list(self.rules.values()), body, "SamplingRuleRecords")
            if path == "/CreateSamplingRule":
                rule = dict(body["SamplingRule"])
                if rule["RuleName"] in self.rules:
                    return 400, _error("InvalidRequestException", "Sampling rule already exists")
                rule["RuleARN"] = f"arn:aws:xray:{REGION}:{ACCOUNT}:sampling-rule/{rule['RuleName']}"
                rule.setdefault("Attributes", {})
                record = {"SamplingRule": rule, "CreatedAt": time.time(), "ModifiedAt": time.time()}
                self.rules[rule["RuleName"]] = record
                return 200, {"SamplingRuleRecord": record}
            if path == "/UpdateSamplingRule":
                update = dict(body["SamplingRuleUpdate"])
                record = self.rules.get(update.pop("RuleName", None))
                if record is None:
                    return 400, _error("InvalidRequestException", "Sampling rule does not exist")
                record["SamplingRule"].update(update)
                record["ModifiedAt"] = time.time()
                return 200, {"SamplingRuleRecord": record}
            if path == "/GetTraceSegmentDestination":
                return 200, {"Destination": self.segment_destination, "Status": "ACTIVE"}
            if path == "/UpdateTraceSegmentDestination":
                if body.get("Destination") not in ("XRay", "CloudWatchLogs"):
                    return 400, _error("InvalidRequestException", "Destination must be XRay or CloudWatchLogs")
                self.segment_destination = body["Destination"]
                return 200, {"Destination": self.segment_destination, "Status": "PENDING"}
            return 404, _error("UnknownOperationException", path)

    @staticmethod
    def _page(items: list, body: dict, key: str) -> dict:
        """One item per page, so callers must follow NextToken."""
        start = int(body.get("NextToken") or 0)
        page = {key: items[start : start + 1]}
        if start + 1 < len(items):
            page["NextToken"] = str(start + 1)
        return page


def _error(code: str, message: str) -> dict:
    """A REST-JSON error body."""
    return {"__type": code, "message": message}


class _XRayHandler(BaseHTTPRequestHandler):
    """Decode one JSON request, answer with JSON."""

    def do_POST(self):
        """Dispatch on the request path."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        assert self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256 ")
        status, payload = self.server.handle_call(self.path, json.loads(raw or b"{}"))
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if status != 200:
            self.send_header("x-amzn-ErrorType", payload["__type"])
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        """Quiet."""


@pytest.fixture(scope="module")
def moto_server():
    """One moto server for the module, in a process of its own: the reset before each test leaves
    the session's moto (log groups, the Cognito pool) alone."""
    with moto_process() as url:
        yield url


@pytest.fixture
def aws(moto_server, tmp_path):
    """Fresh AWS state: (environment for the script, logs client, X-Ray control plane)."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"), timeout=10)
    xray = XRayControlPlane()
    thread = threading.Thread(target=xray.serve_forever, daemon=True)
    thread.start()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "BOTO", "OTEL_", "HONEYCOMB_", "ROLLBAR_", "CLOUDWATCH_"))
    }
    env.update(
        AWS_DEFAULT_REGION=REGION,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_ENDPOINT_URL_CLOUDWATCH_LOGS=moto_server,
        AWS_ENDPOINT_URL_XRAY=xray.url,
        AWS_ENDPOINT_URL_STS=moto_server,
        AWS_EC2_METADATA_DISABLED="true",
    )
    logs = boto3.client(
        "logs",
        region_name=REGION,
        endpoint_url=moto_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    yield env, logs, xray
    xray.shutdown()
    xray.server_close()
    thread.join(timeout=5)


def run(env: dict, *args: str) -> subprocess.CompletedProcess:
    """Run the provisioning script in its own process."""
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def expected_rules() -> dict[str, dict]:
    """The sampling rules in aws/json, by name."""
    rules = [json.loads(p.read_text())["SamplingRule"] for p in RULE_FILES]
    return {r["RuleName"]: r for r in rules}


def log_groups(logs) -> dict[str, dict]:
    """Every log group moto holds, by name."""
    return {g["logGroupName"]: g for g in logs.describe_log_groups()["logGroups"]}


def test_rule_files_exist():
    """The main rule and the health-check rule are what the script provisions by default."""
    assert [p.name for p in RULE_FILES] == ["xray-health-check.json", "xray.json"]


def test_first_run_creates_everything_and_second_run_changes_nothing(aws):
    """Idempotency: the second run finds every resource as the first run left it."""
    env, logs, xray = aws

    first = run(env)
    assert first.returncode == 0, first.stderr
    out = first.stdout
    assert f"xray group Cruddur: created ({FILTER})" in out
    for name in expected_rules():
        assert f"xray sampling rule {name}: created" in out
    assert "logs group cruddur: created" in out
    assert "logs group cruddur retention: set 7 days (was never expire)" in out

    assert xray.groups["Cruddur"]["FilterExpression"] == FILTER
    for name, rule in expected_rules().items():
        stored = xray.rules[name]["SamplingRule"]
        assert {k: stored[k] for k in rule} == rule
    assert xray.rules["Default"]["SamplingRule"] == AWS_DEFAULT_RULE
    groups = log_groups(logs)
    assert list(groups) == ["cruddur"]
    assert groups["cruddur"]["retentionInDays"] == 7
    writes_after_first = len(xray.writes())
    assert writes_after_first == 1 + len(expected_rules())

    second = run(env)
    assert second.returncode == 0, second.stderr
    assert "created" not in second.stdout and "updated" not in second.stdout
    assert f"xray group Cruddur: found, unchanged ({FILTER})" in second.stdout
    for name in expected_rules():
        assert f"xray sampling rule {name}: found, unchanged" in second.stdout
    assert "logs group cruddur: found" in second.stdout
    assert "logs group cruddur retention: found, 7 days" in second.stdout
    assert len(xray.writes()) == writes_after_first
    assert log_groups(logs) == groups


def test_dry_run_reports_and_changes_nothing(aws):
    """--dry-run reads current state, prints what it would do, and sends no write."""
    env, logs, xray = aws

    result = run(env, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "dry run" in result.stdout
    assert f"xray group Cruddur: would create ({FILTER})" in result.stdout
    for name in expected_rules():
        assert f"xray sampling rule {name}: would create" in result.stdout
    assert "logs group cruddur: would create" in result.stdout
    assert "logs group cruddur retention: would set 7 days" in result.stdout
    assert xray.writes() == []
    assert {p for p, _ in xray.requests} == READ_PATHS
    assert set(xray.groups) == {"Default"} and set(xray.rules) == {"Default"}
    assert log_groups(logs) == {}


def test_drifted_resources_are_converged(aws):
    """Existing resources that differ from the files are updated in place, not duplicated."""
    env, logs, xray = aws
    logs.create_log_group(logGroupName="cruddur")
    logs.put_retention_policy(logGroupName="cruddur", retentionInDays=30)
    logs.create_log_group(logGroupName="cruddur-other")
    xray.handle_call("/CreateGroup", {"GroupName": "Cruddur", "FilterExpression": 'service("old")'})
    drifted = dict(expected_rules()["Cruddur"], FixedRate=0.5, ReservoirSize=9)
    xray.handle_call("/CreateSamplingRule", {"SamplingRule": drifted})
    xray.requests.clear()

    dry = run(env, "--dry-run", "--retention-days", "14")
    assert dry.returncode == 0, dry.stderr
    assert "xray sampling rule Cruddur: found, would update FixedRate, ReservoirSize" in dry.stdout
    assert xray.writes() == []

    result = run(env, "--retention-days", "14")
    assert result.returncode == 0, result.stderr
    assert f"xray group Cruddur: found, updated filter 'service(\"old\")' -> {FILTER!r}" in result.stdout
    assert "xray sampling rule Cruddur: found, updated FixedRate, ReservoirSize" in result.stdout
    assert "logs group cruddur: found" in result.stdout
    assert "logs group cruddur retention: set 14 days (was 30 days)" in result.stdout
    assert xray.groups["Cruddur"]["FilterExpression"] == FILTER
    rule = xray.rules["Cruddur"]["SamplingRule"]
    assert (rule["FixedRate"], rule["ReservoirSize"]) == (0.1, 1)
    groups = log_groups(logs)
    assert groups["cruddur"]["retentionInDays"] == 14
    assert "retentionInDays" not in groups["cruddur-other"]
    # The health-check rule did not exist yet, so it is the one creation.
    assert sorted(xray.writes()) == ["/CreateSamplingRule", "/UpdateGroup", "/UpdateSamplingRule"]


def test_retention_must_be_a_value_cloudwatch_accepts(aws):
    """A retention CloudWatch would reject is refused before any AWS call."""
    env, _, xray = aws
    result = run(env, "--retention-days", "8")
    assert result.returncode == 2
    assert "--retention-days" in result.stderr
    assert xray.requests == []


def test_aws_errors_are_reported_without_a_traceback(aws):
    """An AWS error (here: no region) exits 1 with one message, not a stack trace."""
    env, _, _ = aws
    env = {k: v for k, v in env.items() if k not in ("AWS_DEFAULT_REGION", "AWS_REGION")}
    result = run(env)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


def resource_policies(logs) -> dict[str, dict]:
    """CloudWatch Logs resource policies moto holds, by name, documents parsed."""
    return {
        p["policyName"]: json.loads(p["policyDocument"]) for p in logs.describe_resource_policies()["resourcePolicies"]
    }


def test_transaction_search_is_enabled_only_when_asked_and_idempotently(aws):
    """--transaction-search: the logs resource policy for X-Ray, then segments to CloudWatch Logs."""
    env, logs, xray = aws
    plain = run(env)
    assert plain.returncode == 0, plain.stderr
    assert "Transaction" not in plain.stdout and "TransactionSearch" not in plain.stdout
    assert xray.segment_destination == "XRay" and resource_policies(logs) == {}

    dry = run(env, "--transaction-search", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "logs resource policy TransactionSearchXRayAccess: would create" in dry.stdout
    assert "xray trace segment destination: would set CloudWatchLogs (was XRay)" in dry.stdout
    assert xray.segment_destination == "XRay" and resource_policies(logs) == {}

    first = run(env, "--transaction-search")
    assert first.returncode == 0, first.stderr
    assert "logs resource policy TransactionSearchXRayAccess: created" in first.stdout
    assert "xray trace segment destination: set CloudWatchLogs (was XRay)" in first.stdout
    assert xray.segment_destination == "CloudWatchLogs"
    (statement,) = resource_policies(logs)["TransactionSearchXRayAccess"]["Statement"]
    assert statement["Principal"] == {"Service": "xray.amazonaws.com"}
    assert statement["Action"] == "logs:PutLogEvents"
    assert statement["Resource"] == [
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:aws/spans:*",
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/application-signals/data:*",
    ]
    assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}

    second = run(env, "--transaction-search")
    assert second.returncode == 0, second.stderr
    assert "logs resource policy TransactionSearchXRayAccess: found, unchanged" in second.stdout
    assert "xray trace segment destination: found, CloudWatchLogs (ACTIVE)" in second.stdout
    assert xray.writes().count("/UpdateTraceSegmentDestination") == 1
