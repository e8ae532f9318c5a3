"""Removing X-Ray, CloudWatch or Rollbar is deleting its package and its registry line.

In a copy of `cruddur/`, one integration at a time is removed; the copy then builds and serves
(home, a post, the health check) with every other integration on against the loopback stand-ins.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BACKEND_DIR = Path(__file__).resolve().parents[1]
SCRIPT = """
import json, sys
from cruddur import create_app
app = create_app()
client = app.test_client()
answers = [
    client.get("/api/activities/home").status_code,
    client.post("/api/activities", json={"message": "still serving", "ttl": "1-day"}).status_code,
]
health = client.get("/api/health-check")
answers.append(health.status_code)
enabled = sorted(name for name, s in health.get_json()["integrations"].items() if s["enabled"])
app.extensions["cruddur.shutdown"].run()
with open(sys.argv[1], "w") as out:
    json.dump({"answers": answers, "enabled": enabled}, out)
"""


def remove(tree: Path, package: str) -> None:
    """Delete `package` and its one line in the registry."""
    shutil.rmtree(tree / "cruddur" / "telemetry" / package)
    registry = tree / "cruddur" / "telemetry" / "__init__.py"
    lines = registry.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.strip().startswith(f'"{package}",')]
    assert len(kept) == len(lines) - 1, f"{package} has not exactly one registry line"
    registry.write_text("".join(kept))


@pytest.mark.parametrize("package", ["xray", "cloudwatch", "rollbar"])
def test_an_integration_removed_leaves_an_app_that_serves(
    package, tmp_path, otlp_receiver, xray_listener, rollbar_receiver, moto_logs
):
    tree = tmp_path / "tree"
    shutil.copytree(BACKEND_DIR / "cruddur", tree / "cruddur", ignore=shutil.ignore_patterns("__pycache__"))
    remove(tree, package)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CRUDDUR_ENV": "test",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'removal.db'}",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.url,
        "AWS_XRAY_DAEMON_ADDRESS": xray_listener.daemon_address,
        "ROLLBAR_ACCESS_TOKEN": "removal-test-token",
        "ROLLBAR_ENDPOINT": rollbar_receiver.endpoint,
        "CLOUDWATCH_LOG_GROUP": "cruddur-removal-test",
        **moto_logs.env(),
    }
    result = tmp_path / "result.json"
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(result)], cwd=tree, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(result.read_text())
    assert found["answers"] == [200, 200, 200]
    assert package not in found["enabled"]
    assert {"opentelemetry", "xray", "cloudwatch", "rollbar"} - {package} <= set(found["enabled"])
