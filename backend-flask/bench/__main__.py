"""`python -m bench`: the telemetry overhead benchmark (see docs/performance.md).

python -m bench                  # every configuration, 5 interleaved repeats (make bench)
python -m bench --smoke          # seconds: off, bare, all four and stock, once, tiny load (make bench-smoke)
python -m bench --peers          # off, ours (one vendor; four), stock, ddtrace, Sentry, Elastic, zero-code
python -m bench --peers --smoke  # each agent for a few requests: does it instrument and deliver
python -m bench --configs off,bare,all,stock --repeats 5 --duration 10
python -m bench --configs bare,all --database postgresql   # the store on PostgreSQL
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from .peers import PEERS
from .report import markdown, summarize, targets
from .run import CONFIGS, DATABASES, ENDPOINTS, PEER_RUN, Settings, run

REPO_DIR = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_DIR / "bench-output"


def _names(value: str, allowed) -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}")
    return names


def parse_args(argv=None) -> tuple[Settings, bool]:
    """Settings from the command line."""
    defaults = Settings()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny run that checks everything works")
    parser.add_argument(
        "--peers", action="store_true", help="beside ddtrace, Sentry, Elastic APM and OpenTelemetry zero-code"
    )
    parser.add_argument("--repeats", type=int, default=defaults.repeats)
    parser.add_argument("--duration", type=float, default=defaults.duration, help="seconds of load per endpoint")
    parser.add_argument("--connections", type=int, default=defaults.connections)
    parser.add_argument("--configs", type=lambda v: _names(v, CONFIGS), default=defaults.configs)
    parser.add_argument("--endpoints", type=lambda v: _names(v, tuple(ENDPOINTS)), default=defaults.endpoints)
    parser.add_argument("--load-tool", choices=("wrk", "python"), default="wrk")
    parser.add_argument("--output-dir", type=Path, default=None)
    parser.add_argument(
        "--database", choices=DATABASES, default=defaults.database, help="postgresql: as the tests find it"
    )
    args = parser.parse_args(argv)
    if args.peers and args.configs == defaults.configs:
        args.configs = ("off", "all", *PEERS) if args.smoke else PEER_RUN
    settings = replace(
        defaults,
        repeats=args.repeats,
        duration=args.duration,
        connections=args.connections,
        configs=args.configs,
        endpoints=args.endpoints,
        load_tool=args.load_tool,
        out_dir=args.output_dir or DEFAULT_OUT,
        database=args.database,
    )
    if args.smoke:
        configs = args.configs if args.configs != defaults.configs else ("off", "bare", "all", "stock")
        settings = replace(
            settings,
            repeats=1,
            duration=1,
            warmup_posts=10,
            warmup_gets=5,
            configs=configs,
            out_dir=args.output_dir or DEFAULT_OUT / ("smoke-peers" if args.peers else "smoke"),
        )
    return settings, args.smoke


def main(argv=None) -> int:
    """Run, print the table, write results.md and results.json; exit 1 on loss or errors."""
    settings, smoke = parse_args(argv)
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(settings.out_dir / "logs", ignore_errors=True)  # the app logs of the previous run
    started = time.monotonic()
    print(
        f"==> bench{' (smoke)' if smoke else ''}: {', '.join(settings.configs)} x {', '.join(settings.endpoints)},"
        f" {settings.repeats} repeat(s) of {settings.duration:g} s at {settings.connections} connections",
        flush=True,
    )
    results = run(settings, log=lambda line: print(line, flush=True))
    table = summarize(results)
    results["table"] = table
    results["targets"] = targets(table)
    text = markdown(results, table)
    (settings.out_dir / "results.md").write_text(text)
    (settings.out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print()
    print(text)
    print(f"==> wrote {settings.out_dir / 'results.md'} and results.json ({time.monotonic() - started:.0f} s)")
    # Stock's own loss (watchtower's, say) and Sentry's at its default queue are findings of the
    # comparison, shown in the tables; the exit status is about this app's configurations and about
    # every agent really instrumenting and delivering.
    ok = all(
        check["ok"] or check.get("finding")
        for run_checks in results["checks"]
        if run_checks["config"] != "stock"
        for check in run_checks["checks"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
