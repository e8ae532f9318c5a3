"""X-Ray sampling rules: the API documents in aws/json/ turned into the SDK's local rules.

`aws/json/xray*.json` are `aws xray create-sampling-rule --cli-input-json` inputs: one file both
provisions the centralized rule and drives the local sampler, which matches only host, method and
path (ServiceName picks this service's rules; ServiceType, ResourceARN and Attributes are ignored).
"""

from __future__ import annotations

import json
from pathlib import Path

from aws_xray_sdk.core.utils.search_pattern import wildcard_match

RULES_DIR = Path(__file__).resolve().parents[4] / "aws" / "json"
DEFAULT_RULE_FILES = (RULES_DIR / "xray.json", RULES_DIR / "xray-health-check.json")

# The X-Ray service's own "Default" rule (and the SDK's built-in local default): 1/s, then 5%.
FALLBACK_DEFAULT = {"fixed_target": 1, "rate": 0.05}

_STRINGS = ("ResourceARN", "ServiceName", "ServiceType", "Host", "HTTPMethod", "URLPath")
_NUMBERS = {"Priority": int, "ReservoirSize": int, "Version": int, "FixedRate": (int, float)}
_REQUIRED = {**dict.fromkeys(_STRINGS, str), **_NUMBERS}  # every field the API requires, by type
# Inclusive bounds from the X-Ray API reference (Version 1 is the only version it defines).
_RANGES = {
    "FixedRate": (0, 1, "between 0 and 1"),
    "Priority": (1, 9999, "between 1 and 9999"),
    "ReservoirSize": (0, float("inf"), "at least 0"),
    "Version": (1, 1, "1"),
}


def api_rule_errors(rule: object) -> list[str]:
    """Every way `rule` breaks the X-Ray API's SamplingRule shape (empty when valid)."""
    if not isinstance(rule, dict):
        return ["SamplingRule must be an object"]
    errors = []
    if not (rule.get("RuleName") or rule.get("RuleARN")):
        errors.append("RuleName or RuleARN is required")
    for key, kind in _REQUIRED.items():
        value = rule.get(key)
        if value is None:
            errors.append(f"{key} is required")
        elif isinstance(value, bool) or not isinstance(value, kind):
            errors.append(f"{key} must be {getattr(kind, '__name__', 'a number')}")
        elif key in _RANGES and not _RANGES[key][0] <= value <= _RANGES[key][1]:
            errors.append(f"{key} must be {_RANGES[key][2]}")
    if len(str(rule.get("RuleName", ""))) > 32:
        errors.append("RuleName must be at most 32 characters")
    return errors


def read_api_rule(path: str | Path) -> dict:
    """The SamplingRule object of one `create-sampling-rule` input file; ValueError if invalid."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    rule = doc.get("SamplingRule") if isinstance(doc, dict) else None
    errors = api_rule_errors(rule) if rule is not None else ['missing "SamplingRule"']
    if errors:
        raise ValueError(f"{path}: invalid X-Ray sampling rule: {'; '.join(errors)}")
    return rule


def local_rules_from_api_rules(rules: list[dict], service_name: str | None = None) -> dict:
    """The SDK's local rules (version 2) of the SamplingRules for `service_name`, by X-Ray's priority.

    The first catch-all rule becomes the default; rules after it could never match.
    """
    applicable = [r for r in rules if service_name is None or wildcard_match(r["ServiceName"], service_name)]
    local_rules = []
    default = dict(FALLBACK_DEFAULT)
    for rule in sorted(applicable, key=lambda r: (r["Priority"], r.get("RuleName", ""))):
        target = {"fixed_target": rule["ReservoirSize"], "rate": float(rule["FixedRate"])}
        if rule["Host"] == rule["HTTPMethod"] == rule["URLPath"] == "*":  # matches every request
            default = target
            break
        local_rules.append(
            {
                "description": rule.get("RuleName") or rule["RuleARN"],
                "host": rule["Host"],
                "http_method": rule["HTTPMethod"],
                "url_path": rule["URLPath"],
                **target,
            }
        )
    return {"version": 2, "rules": local_rules, "default": default}


def load_local_sampling_rules(*paths: str | Path, service_name: str | None = None) -> dict:
    """Read API-format rule files (default: DEFAULT_RULE_FILES) as SDK local sampling rules."""
    files = paths or DEFAULT_RULE_FILES
    return local_rules_from_api_rules([read_api_rule(p) for p in files], service_name)
