"""`python -m bench --peers --smoke`: each agent runs the app for a few requests and its stand-in decodes what it sent.

`make test` creates .venv-bench from bench/requirements-peers.txt beforehand (`make setup-bench-peers`,
about 40 s); run on its own, the bench creates it on first use. No timing
assertions: only that each agent really instruments (request spans for both endpoints, SQL spans
where it records them) and delivers one trace per request, and that the peer table is printed.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.peers import PEERS

BACKEND_DIR = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_each_peer_instruments_and_delivers(tmp_path):
    process = subprocess.run(
        [sys.executable, "-m", "bench", "--peers", "--smoke", "--output-dir", str(tmp_path)],
        cwd=BACKEND_DIR,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]

    results = json.loads((tmp_path / "results.json").read_text())
    assert {s["config"] for s in results["samples"]} == {"off", "all", *PEERS}
    by_config = {group["config"]: group["checks"] for group in results["checks"]}
    records = results["totals"]["traces"]
    for name, peer in PEERS.items():
        checks = {check["check"]: check for check in by_config[name]}
        for path in ("/api/activities/home", "/api/activities"):
            assert checks[f"instruments: a request span for {path}"]["ok"], checks
            assert (f"instruments: SQL spans for {path}" in checks) == peer.records_sql
            if peer.records_sql:
                assert checks[f"instruments: SQL spans for {path}"]["ok"], checks
            row = records[name]["by_path"][path]
            assert row["traces"] > 0 and row["spans"] >= row["traces"]
            assert (row["sql_spans"] > 0) == peer.records_sql
        delivered = checks["delivered: one trace per request served"]
        assert delivered["expected"] > 0
        if not peer.may_drop:
            assert delivered["ok"], delivered
        assert 0 < records[name]["delivered"] <= records[name]["served"]
    # ddtrace records Flask's own steps as spans; Sentry one transaction a request.
    assert (
        records["ddtrace"]["by_path"]["/api/activities/home"]["spans"]
        > records["ddtrace"]["by_path"]["/api/activities/home"]["traces"] * 5
    )
    home = results["table"]["home"]
    assert home["all"]["overhead_x_ddtrace"] is not None and home["all"]["p99_ms_x_elastic"] is not None
    assert "all_overhead_x_zero-code" in results["targets"]["post"]

    markdown = (tmp_path / "results.md").read_text()
    assert "#### Beside the agents: GET /api/activities/home" in markdown
    for peer in PEERS.values():
        assert f"| {peer.label} |" in markdown
    assert "≤ 1.25x zero-code's" in markdown
