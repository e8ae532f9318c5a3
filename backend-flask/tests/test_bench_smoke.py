"""`python -m bench --smoke` runs end to end: real gunicorn, real sinks, wrk (or the Python loader), off and stock.

No timing assertions (this machine is noisy): only that every phase ran, produced numbers, and that
the sinks received every span and log event the app produced.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BACKEND_DIR = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_run_measures_both_endpoints_without_loss(tmp_path):
    process = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--output-dir", str(tmp_path)],
        cwd=BACKEND_DIR,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]

    results = json.loads((tmp_path / "results.json").read_text())
    samples = results["samples"]
    assert {(s["config"], s["endpoint"]) for s in samples} == {
        (config, endpoint) for config in ("off", "bare", "all", "stock") for endpoint in ("home", "post")
    }
    for sample in samples:
        assert sample["served"] > 0 and sample["cpu_seconds"] > 0
        assert sample["cpu_ms_per_request"] > 0 and sample["p99_ms"] >= sample["p50_ms"] > 0
        assert sample["rss_mb"] > 10

    by_config = {group["config"]: group["checks"] for group in results["checks"]}
    assert set(by_config) == {"off", "bare", "all", "stock", "sinks"}
    assert all(check["ok"] for checks in by_config.values() for check in checks), by_config
    names = " ".join(check["check"] for check in by_config["all"] + by_config["sinks"])
    assert "OTLP" in names and "CloudWatch" in names and "X-Ray" in names
    stock_names = " ".join(check["check"] for check in by_config["stock"])
    assert "OTLP" in stock_names and "CloudWatch" in stock_names and "X-Ray" in stock_names
    assert results["totals"]["stock_spans_per_request"] >= 1
    assert results["totals"]["spans_per_request"] > 1  # the server span and its children (service, SQL)

    table = results["table"]
    assert table["home"]["bare"]["cpu_ms_per_request_x_bare"] == 1.0
    assert table["home"]["off"]["cpu_ms_per_request_x_off"] == 1.0
    assert table["post"]["all"]["cpu_ms_per_request_x_off"] is not None
    assert set(results["targets"]["home"]) == {
        "bare_cpu_x_off",
        "all_overhead_share_of_stock",
        "all_p99_x_stock",
    }
    markdown = (tmp_path / "results.md").read_text()
    assert "| all four |" in markdown and "| stock wiring (all four) |" in markdown
    assert "GET /api/activities/home" in markdown and "overhead over off ≤ stock's" in markdown
    assert "| off (CRUDDUR_TELEMETRY=off) |" in process.stdout
