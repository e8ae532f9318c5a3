"""`make soak`: each vendor fault for minutes against the real app under gunicorn; a Markdown report.

    python -m tests.faults.soak --minutes 2 --faults all          # from backend-flask/
    python -m tests.faults.soak --minutes 0.5 --faults refuse,slow --rate 0

Writes soak-output/report.md (and report.json, and each fault's app and sink logs) at the top of
the repository, prints the report, and exits 1 when a fault broke one of the bounds of tests/faults/test_faults.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.support.app_server import BACKEND_DIR

from .rig import FAULTS, HEALTHY, FaultRun, run_faults

OUTPUT_DIR = BACKEND_DIR.parent / "soak-output"
BOUNDS = {"startup_s": 10.0, "p99_ms": 50.0, "memory_mib": 64.0, "stop_s": 35.0}


def verdicts(run: FaultRun) -> list[str]:
    """The bounds this run broke (empty when it passed)."""
    row = run.row()
    broken = []
    if run.error:
        broken.append(f"error: {run.error}")
    if row["errors"]:
        broken.append(f"{row['errors']} requests not 2xx")
    for key, bound in BOUNDS.items():
        value = row[key]
        if value is None or value >= bound:
            broken.append(f"{key} {value if value is None else round(value, 1)} >= {bound:g}")
    if run.killed:
        broken.append("needed SIGKILL")
    if row["tracebacks"] > 2 * run.workers:
        broken.append(f"{row['tracebacks']} tracebacks")
    return broken


def _num(value, digits=1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(runs: dict[str, FaultRun], args) -> str:
    """The Markdown report."""
    lines = [
        "# Cruddur soak under vendor faults",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {args.minutes:g} min of load per fault after a short warm-up; "
        f"{args.concurrency} connections, {'as fast as answered' if not args.rate else f'{args.rate:g} requests/s'}; "
        f"{args.workers} gunicorn workers; all four integrations on, pointed at loopback stand-ins.",
        "Memory: the largest growth of one worker's RSS over the loaded outage. Dropped: items the app "
        "counted as dropped (health check, largest per-worker value per integration, summed). "
        "Stop: SIGTERM to exit, still in the outage.",
        "",
        "| fault | requests | errors | p50 ms | p99 ms | max ms | memory MiB | dropped | startup s | stop s "
        "| warnings | tracebacks | result |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for fault, run in runs.items():
        row = run.row()
        load_max = run.load.percentile(100) if run.load else None
        broken = verdicts(run)
        lines.append(
            f"| {fault} | {row['requests']} | {row['errors']} | {_num(row['p50_ms'])} | {_num(row['p99_ms'])} "
            f"| {_num(load_max)} | {_num(row['memory_mib'])} | {row['dropped']} | {_num(row['startup_s'])} "
            f"| {_num(row['stop_s'])} | {row['warnings']} | {row['tracebacks']} "
            f"| {'ok' if not broken else '**' + '; '.join(broken) + '**'} |"
        )
    lines += ["", "Per integration (health check at the end of the outage: sent / dropped / failed / queued):", ""]
    lines += ["| fault | opentelemetry | xray | cloudwatch | rollbar | CPU s (workers / sinks / load) |"]
    lines += ["| --- | --- | --- | --- | --- | --- |"]
    for fault, run in runs.items():
        health = run.health()
        cells = []
        for name in ("opentelemetry", "xray", "cloudwatch", "rollbar"):
            state = health.get(name)
            cells.append(
                "-" if not state else f"{state['sent']} / {state['dropped']} / {state['failed']} / {state['queued']}"
            )
        cpu = run.cpu
        cpu_cell = " / ".join(_num(cpu.get(k)) for k in ("workers", "sinks", "load")) if cpu else "-"
        lines.append(f"| {fault} | {' | '.join(cells)} | {cpu_cell} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    """Run the soak; print and write the report."""
    parser = argparse.ArgumentParser(description="Soak the app under each vendor fault and write a report.")
    parser.add_argument("--minutes", type=float, default=2.0, help="minutes of load per fault (default 2)")
    choices = ", ".join([HEALTHY, *FAULTS])
    parser.add_argument("--faults", default="all", help=f"'all' or a comma list of: {choices}")
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s over all connections; 0: saturate")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--output", type=Path, default=OUTPUT_DIR)
    args = parser.parse_args(argv)

    faults = [HEALTHY, *FAULTS] if args.faults == "all" else [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = [f for f in faults if f != HEALTHY and f not in FAULTS]
    if unknown:
        parser.error(f"unknown faults {unknown}; choose from {choices}")
    args.output.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    def progress(line: str) -> None:
        print(f"[{time.monotonic() - started:7.1f} s] {line}", flush=True)

    progress(f"soak: {', '.join(faults)}; {args.minutes:g} min each; output in {args.output}")
    runs = run_faults(
        faults,
        args.output / "logs",
        load_seconds=args.minutes * 60,
        progress=progress,
        rate=args.rate or None,
        concurrency=args.concurrency,
        workers=args.workers,
    )
    text = report(runs, args)
    (args.output / "report.md").write_text(text)
    (args.output / "report.json").write_text(
        json.dumps({fault: {**run.row(), "health": run.health()} for fault, run in runs.items()}, indent=2)
    )
    print()
    print(text)
    print(f"report: {args.output / 'report.md'}; total {time.monotonic() - started:.0f} s")
    return 1 if any(verdicts(run) for run in runs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
