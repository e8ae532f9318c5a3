"""A disabled integration costs no import time: its vendor SDK is imported only when it is on.

Each case builds the app in a fresh interpreter and lists which SDK modules got imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BACKEND_DIR = Path(__file__).resolve().parents[1]
SDKS = ("aws_xray_sdk", "boto3", "watchtower", "rollbar")
SCRIPT = """
import json, sys
from cruddur import create_app
from cruddur.config import Config
settings = dict(env="test", database_url=sys.argv[1], code_version="test", **json.loads(sys.argv[2]))
create_app(Config.from_env({}).replace(**settings))
# To a file: the app's threads may log to stdout meanwhile, between the words of a print.
with open(sys.argv[4], "w") as result:
    json.dump([name for name in json.loads(sys.argv[3]) if name in sys.modules], result)
"""


def imported_sdks(tmp_path, **settings) -> list[str]:
    """The SDK modules imported by building an app with `settings`, in a fresh interpreter."""
    env = {"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "none")}
    subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            f"sqlite:///{tmp_path / 'imports.db'}",
            json.dumps(settings),
            json.dumps(SDKS),
            str(tmp_path / "imported.json"),
        ],
        cwd=BACKEND_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads((tmp_path / "imported.json").read_text())


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, []),
        ({"rollbar_access_token": "token", "rollbar_endpoint": "http://127.0.0.1:9/api/1/"}, ["rollbar"]),
        ({"cloudwatch_log_group": "imports-test"}, ["boto3", "watchtower"]),
        ({"xray_daemon_address": "127.0.0.1:2000"}, ["aws_xray_sdk"]),
    ],
    ids=["all-off", "rollbar-on", "cloudwatch-on", "xray-on"],
)
def test_vendor_sdks_are_imported_only_by_the_integration_that_is_on(tmp_path, settings, expected):
    assert imported_sdks(tmp_path, **settings) == expected
