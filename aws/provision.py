#!/usr/bin/env python3
"""Provision Cruddur's AWS observability resources, idempotently.

Creates (or finds, and converges when they differ):
  - the X-Ray group `Cruddur`, filtering the service's traces that had a fault or an error;
  - the X-Ray sampling rules in aws/json/xray*.json (the same files the app samples with locally);
  - the CloudWatch Logs group `cruddur` with a retention period (default 7 days, so logs do not
    grow into a bill);
  - with --transaction-search, what the OTLP transports need (CRUDDUR_XRAY_TRANSPORT=otlp): a
    CloudWatch Logs resource policy that lets X-Ray write spans to the `aws/spans` and
    `/aws/application-signals/data` log groups, and X-Ray's trace segment destination set to
    CloudWatch Logs (Transaction Search). Account-wide, and billed as CloudWatch Logs ingestion:
    opt in.

Region, credentials and endpoints come from boto3's standard resolution (AWS_PROFILE,
AWS_DEFAULT_REGION, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_XRAY, AWS_ENDPOINT_URL_CLOUDWATCH_LOGS, ...).

    python aws/provision.py --dry-run     # print what would change, change nothing
    python aws/provision.py               # create or update
    python aws/provision.py --transaction-search   # also enable Transaction Search for OTLP spans
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

JSON_DIR = Path(__file__).resolve().parent / "json"
DEFAULT_RULE_FILES = (JSON_DIR / "xray.json", JSON_DIR / "xray-health-check.json")

# The values CloudWatch Logs accepts for retentionInDays.
RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                  2192, 2557, 2922, 3288, 3653)  # fmt: skip

# SamplingRule fields that UpdateSamplingRule can change (Version and RuleARN cannot be).
UPDATABLE_RULE_FIELDS = ("ResourceARN", "Priority", "FixedRate", "ReservoirSize", "Host",
                         "ServiceName", "ServiceType", "HTTPMethod", "URLPath", "Attributes")  # fmt: skip


def group_filter_expression(service_name: str) -> str:
    """The X-Ray filter expression for the service's requests that had a fault (5xx) or error (4xx)."""
    return f'service("{service_name}") {{ fault OR error }}'


def ensure_xray_group(xray, name: str, filter_expression: str, dry_run: bool) -> str:
    """Create the X-Ray group or bring its filter expression up to date; say what happened."""
    existing = None
    for page in xray.get_paginator("get_groups").paginate():
        for group in page.get("Groups", []):
            if group.get("GroupName") == name:
                existing = group
    if existing is None:
        if not dry_run:
            xray.create_group(GroupName=name, FilterExpression=filter_expression)
        return f"xray group {name}: {'would create' if dry_run else 'created'} ({filter_expression})"
    if existing.get("FilterExpression") == filter_expression:
        return f"xray group {name}: found, unchanged ({filter_expression})"
    if not dry_run:
        xray.update_group(GroupName=name, FilterExpression=filter_expression)
    verb = "would update" if dry_run else "updated"
    was = existing.get("FilterExpression")
    return f"xray group {name}: found, {verb} filter {was!r} -> {filter_expression!r}"


def ensure_sampling_rule(xray, rule: dict, dry_run: bool) -> str:
    """Create the sampling rule or update the fields that differ; say what happened."""
    name = rule["RuleName"]
    existing = None
    for page in xray.get_paginator("get_sampling_rules").paginate():
        for record in page.get("SamplingRuleRecords", []):
            if record["SamplingRule"].get("RuleName") == name:
                existing = record["SamplingRule"]
    if existing is None:
        if not dry_run:
            xray.create_sampling_rule(SamplingRule=rule)
        return f"xray sampling rule {name}: {'would create' if dry_run else 'created'}"
    # An absent Attributes map and an empty one are the same rule.
    changes = {
        key: rule[key]
        for key in UPDATABLE_RULE_FIELDS
        if key in rule and (existing.get(key) or None) != (rule[key] or None)
    }
    if not changes:
        return f"xray sampling rule {name}: found, unchanged"
    if not dry_run:
        xray.update_sampling_rule(SamplingRuleUpdate={"RuleName": name, **changes})
    verb = "would update" if dry_run else "updated"
    return f"xray sampling rule {name}: found, {verb} {', '.join(sorted(changes))}"


def ensure_log_group(logs, name: str, retention_days: int, dry_run: bool) -> list[str]:
    """Create the log group and set its retention when it differs; say what happened."""
    existing = None
    for page in logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=name):
        for group in page.get("logGroups", []):
            if group["logGroupName"] == name:
                existing = group
    lines = []
    if existing is None:
        if not dry_run:
            logs.create_log_group(logGroupName=name)
        lines.append(f"logs group {name}: {'would create' if dry_run else 'created'}")
        current = None
    else:
        lines.append(f"logs group {name}: found")
        current = existing.get("retentionInDays")
    if current == retention_days:
        lines.append(f"logs group {name} retention: found, {retention_days} days")
    else:
        if not dry_run:
            logs.put_retention_policy(logGroupName=name, retentionInDays=retention_days)
        verb = "would set" if dry_run else "set"
        was = f"{current} days" if current else "never expire"
        lines.append(f"logs group {name} retention: {verb} {retention_days} days (was {was})")
    return lines


TRANSACTION_SEARCH_POLICY = "TransactionSearchXRayAccess"
SPANS_LOG_GROUPS = ("aws/spans", "/aws/application-signals/data")


def transaction_search_policy(partition: str, region: str, account: str) -> dict:
    """The resource policy that lets X-Ray write spans into CloudWatch Logs, for this account only."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": TRANSACTION_SEARCH_POLICY,
                "Effect": "Allow",
                "Principal": {"Service": "xray.amazonaws.com"},
                "Action": "logs:PutLogEvents",
                "Resource": [
                    f"arn:{partition}:logs:{region}:{account}:log-group:{group}:*" for group in SPANS_LOG_GROUPS
                ],
                "Condition": {
                    "ArnLike": {"aws:SourceArn": f"arn:{partition}:xray:{region}:{account}:*"},
                    "StringEquals": {"aws:SourceAccount": account},
                },
            }
        ],
    }


def ensure_transaction_search(xray, logs, sts, region: str, dry_run: bool) -> list[str]:
    """Let X-Ray write to CloudWatch Logs, then send trace segments there; say what happened."""
    arn = sts.get_caller_identity()["Arn"]  # arn:<partition>:...:<account>:...
    partition, account = arn.split(":")[1], arn.split(":")[4]
    wanted = transaction_search_policy(partition, region, account)
    existing = None
    for policy in logs.describe_resource_policies().get("resourcePolicies", []):
        if policy.get("policyName") == TRANSACTION_SEARCH_POLICY:
            existing = json.loads(policy.get("policyDocument") or "{}")
    lines = []
    name = f"logs resource policy {TRANSACTION_SEARCH_POLICY}"
    if existing == wanted:
        lines.append(f"{name}: found, unchanged")
    else:
        if not dry_run:
            logs.put_resource_policy(policyName=TRANSACTION_SEARCH_POLICY, policyDocument=json.dumps(wanted))
        verb = (
            ("would create" if dry_run else "created")
            if existing is None
            else ("would update" if dry_run else "updated")
        )
        lines.append(f"{name}: {verb}")
    current = xray.get_trace_segment_destination()
    if current.get("Destination") == "CloudWatchLogs":
        lines.append(f"xray trace segment destination: found, CloudWatchLogs ({current.get('Status')})")
    else:
        if not dry_run:
            xray.update_trace_segment_destination(Destination="CloudWatchLogs")
        verb = "would set" if dry_run else "set"
        lines.append(f"xray trace segment destination: {verb} CloudWatchLogs (was {current.get('Destination')})")
    return lines


def read_sampling_rule(path: Path) -> dict:
    """The SamplingRule object of a `create-sampling-rule --cli-input-json` file."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("SamplingRule"), dict):
        raise ValueError(f'{path}: expected {{"SamplingRule": {{...}}}}')
    return doc["SamplingRule"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="print what would change; change nothing")
    p.add_argument("--service", default="backend-flask", help="service name in the group filter")
    p.add_argument("--group", default="Cruddur", help="X-Ray group name")
    p.add_argument("--log-group", default="cruddur", help="CloudWatch Logs group name")
    p.add_argument("--retention-days", type=int, default=7, choices=RETENTION_DAYS, metavar="DAYS",
                   help="log retention in days (one of CloudWatch's allowed values; default 7)")  # fmt: skip
    p.add_argument("--sampling-rule", dest="rule_files", action="append", type=Path,
                   help="a sampling-rule JSON file (repeatable; default aws/json/xray*.json)")  # fmt: skip
    p.add_argument("--transaction-search", action="store_true",
                   help="also enable X-Ray Transaction Search (needed by CRUDDUR_XRAY_TRANSPORT=otlp)")  # fmt: skip
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Provision everything; exit 0 on success, 1 on an AWS or input error."""
    args = parse_args(argv)
    try:
        rules = [read_sampling_rule(p) for p in (args.rule_files or DEFAULT_RULE_FILES)]
        session = boto3.session.Session()
        xray = session.client("xray")
        logs = session.client("logs")
        print(f"region {session.region_name}{' (dry run: nothing will change)' if args.dry_run else ''}")
        print(ensure_xray_group(xray, args.group, group_filter_expression(args.service), args.dry_run))
        for rule in rules:
            print(ensure_sampling_rule(xray, rule, args.dry_run))
        for line in ensure_log_group(logs, args.log_group, args.retention_days, args.dry_run):
            print(line)
        if args.transaction_search:
            sts = session.client("sts")
            for line in ensure_transaction_search(xray, logs, sts, session.region_name, args.dry_run):
                print(line)
    except (ClientError, BotoCoreError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
