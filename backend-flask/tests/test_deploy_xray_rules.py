"""aws/json/xray*.json: valid X-Ray API sampling rules, and the local rules the app samples with."""

from __future__ import annotations

import json
from pathlib import Path

import botocore.session
import pytest
from aws_xray_sdk.core.sampling.local.sampler import LocalSampler
from botocore.validate import ParamValidator

from cruddur.telemetry.xray.rules import (
    DEFAULT_RULE_FILES,
    FALLBACK_DEFAULT,
    api_rule_errors,
    load_local_sampling_rules,
    local_rules_from_api_rules,
    read_api_rule,
)

REPO = Path(__file__).resolve().parents[2]
XRAY_JSON = REPO / "aws" / "json" / "xray.json"
HEALTH_JSON = REPO / "aws" / "json" / "xray-health-check.json"
XRAY_MODEL = botocore.session.get_session().get_service_model("xray")


def model_errors(doc: dict) -> list[str]:
    """Errors of a CreateSamplingRule input per botocore's X-Ray service model.

    botocore's validator checks required members, types and minimums; the maximums (lengths
    and ranges) come from the same model's metadata.
    """
    shape = XRAY_MODEL.operation_model("CreateSamplingRule").input_shape
    report = ParamValidator().validate(doc, shape)
    errors = [report.generate_report()] if report.has_errors() else []
    rule_shape = XRAY_MODEL.shape_for("SamplingRule")
    for name, value in doc.get("SamplingRule", {}).items():
        limit = rule_shape.members[name].metadata.get("max") if name in rule_shape.members else None
        if limit is None or isinstance(value, dict | bool):
            continue
        size = len(value) if isinstance(value, str) else value
        if size > limit:
            errors.append(f"{name} above {limit}")
    return errors


def valid_rule() -> dict:
    """A fresh copy of the main rule."""
    return json.loads(XRAY_JSON.read_text())["SamplingRule"]


@pytest.mark.parametrize("path", [XRAY_JSON, HEALTH_JSON], ids=lambda p: p.name)
def test_rule_files_are_valid_create_sampling_rule_input(path):
    """Each file is exactly what `aws xray create-sampling-rule --cli-input-json` accepts."""
    doc = json.loads(path.read_text())
    assert list(doc) == ["SamplingRule"]
    assert model_errors(doc) == []
    assert api_rule_errors(doc["SamplingRule"]) == []
    assert doc["SamplingRule"]["ServiceName"] == "backend-flask"


def test_rule_names_are_unique():
    """Rules are found and updated by name."""
    names = [read_api_rule(p)["RuleName"] for p in DEFAULT_RULE_FILES]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(
    "change",
    [
        {"FixedRate": 1.5},
        {"FixedRate": "0.1"},
        {"Priority": 0},
        {"Priority": 10000},
        {"ReservoirSize": -1},
        {"Version": 0},
        {"Host": None},
        {"URLPath": None},
        {"RuleName": "x" * 33},
    ],
    ids=repr,
)
def test_api_rule_errors_agrees_with_the_service_model(change):
    """Every defect the X-Ray model rejects, our validator rejects too."""
    rule = {k: v for k, v in {**valid_rule(), **change}.items() if v is not None}
    assert model_errors({"SamplingRule": rule}) != []
    assert api_rule_errors(rule) != []


def test_version_other_than_1_is_rejected():
    """The API documents Version 1 as the only value; the model only says at least 1."""
    assert api_rule_errors({**valid_rule(), "Version": 2}) == ["Version must be 1"]


def test_read_api_rule_names_the_file_and_every_problem(tmp_path):
    """A broken file fails loudly with its path and all its defects."""
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"SamplingRule": {**valid_rule(), "FixedRate": 2, "Priority": True}}))
    with pytest.raises(ValueError) as info:
        read_api_rule(bad)
    message = str(info.value)
    assert str(bad) in message and "FixedRate" in message and "Priority" in message
    bad.write_text(json.dumps({"rules": []}))
    with pytest.raises(ValueError, match="SamplingRule"):
        read_api_rule(bad)


def test_the_app_loads_these_files_by_default():
    """The files the provisioning script creates in AWS are the files the app samples with."""
    assert Path(DEFAULT_RULE_FILES[0]) == XRAY_JSON
    assert set(DEFAULT_RULE_FILES) == {XRAY_JSON, HEALTH_JSON}
    script = (REPO / "aws" / "provision.py").read_text()
    assert 'JSON_DIR / "xray.json", JSON_DIR / "xray-health-check.json"' in script


def test_default_files_become_sdk_local_rules():
    """Health checks are never sampled; every other request uses the Cruddur rule as the default."""
    rules = load_local_sampling_rules(service_name="backend-flask")
    assert rules == {
        "version": 2,
        "rules": [
            {
                "description": "CruddurHealthCheck",
                "host": "*",
                "http_method": "GET",
                "url_path": "/api/health-check",
                "fixed_target": 0,
                "rate": 0.0,
            }
        ],
        "default": {"fixed_target": 1, "rate": 0.1},
    }


def test_the_sdk_sampler_applies_the_converted_rules():
    """The SDK's own LocalSampler accepts the result and decides as the rules say."""
    sampler = LocalSampler(rules=load_local_sampling_rules())
    health = {"host": "localhost:4567", "method": "GET", "path": "/api/health-check"}
    assert not any(sampler.should_trace(health) for _ in range(200))
    home = {"host": "localhost:4567", "method": "GET", "path": "/api/activities/home"}
    decisions = [sampler.should_trace(home) for _ in range(200)]
    # The reservoir takes the first request of the second; 10% of the rest follow.
    assert decisions[0] is True
    assert 1 <= sum(decisions) < 100


def test_rules_for_another_service_do_not_apply():
    """A rule for another ServiceName is left out; X-Ray's default applies."""
    rules = load_local_sampling_rules(service_name="some-other-service")
    assert rules == {"version": 2, "rules": [], "default": FALLBACK_DEFAULT}
    LocalSampler(rules=rules)


def test_priority_order_and_the_first_catch_all_becomes_the_default():
    """X-Ray evaluates rules by ascending priority; nothing after a catch-all can match."""
    base = valid_rule()
    rules = [
        {**base, "RuleName": "late", "Priority": 9500, "URLPath": "/late/*"},
        {**base, "RuleName": "catch-all", "Priority": 5000, "FixedRate": 0.25, "ReservoirSize": 3},
        {**base, "RuleName": "posts", "Priority": 10, "HTTPMethod": "POST", "FixedRate": 1},
        {**base, "RuleName": "wild", "Priority": 20, "ServiceName": "backend-*", "URLPath": "/api/*"},
    ]
    local = local_rules_from_api_rules(rules, service_name="backend-flask")
    assert [r["description"] for r in local["rules"]] == ["posts", "wild"]
    assert local["rules"][0]["rate"] == 1.0 and isinstance(local["rules"][0]["rate"], float)
    assert local["default"] == {"fixed_target": 3, "rate": 0.25}
    LocalSampler(rules=local)
