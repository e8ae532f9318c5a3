"""`python -m bench.profile`: where the worker's CPU goes under load, sampled with py-spy.

    python -m bench.profile                      # all four integrations, GET /api/activities/home
    python -m bench.profile --config all --endpoint post --duration 15
    python -m bench.profile --config zero-code     # a peer agent (bench/peers.py), from .venv-bench

Starts the sinks and one gunicorn worker exactly as the benchmark does, warms up, then samples the
worker (every thread, `--nonblocking` so the target is not paused) while wrk drives the endpoint.
Prints, and writes to bench-output/profile-<config>-<endpoint>.md (raw stacks beside it):
- samples per thread (the request thread vs exporter and sender threads);
- inclusive share of the functions that integrations run, on any thread;
- the hottest leaf functions.
py-spy is not a project dependency: `pip install py-spy` into the venv first.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from tests.support.app_server import AppServer

from .__main__ import DEFAULT_OUT
from .load import LoadGenerator
from .peers import PEERS, ensure_venv
from .probes import Sinks
from .run import CONFIGS, ENDPOINTS, INTEGRATIONS, app_env, request_json, server_command

# Which package a frame belongs to, by its file path (first match wins).
AREAS = (
    ("ddtrace", "ddtrace"),
    ("elasticapm", "Elastic APM agent"),
    ("sentry_sdk", "Sentry SDK"),
    ("cruddur/telemetry/xray", "X-Ray (cruddur glue)"),
    ("aws_xray_sdk", "X-Ray SDK"),
    ("cruddur/telemetry/cloudwatch", "CloudWatch (cruddur handler)"),
    ("watchtower", "CloudWatch (watchtower)"),
    ("botocore", "CloudWatch (botocore)"),
    ("boto3", "CloudWatch (boto3)"),
    ("rollbar", "Rollbar"),
    ("opentelemetry/exporter", "OTLP exporter"),
    ("opentelemetry/proto", "OTLP exporter"),
    ("google/protobuf", "OTLP exporter"),
    ("opentelemetry/sdk/trace/export", "OTel batch processor"),
    ("opentelemetry/sdk/_shared_internal", "OTel batch processor"),
    ("opentelemetry/instrumentation", "OTel instrumentation"),
    ("opentelemetry", "OTel SDK/API"),
    ("cruddur/logs", "logging (cruddur)"),
    ("logging/", "logging (stdlib)"),
    ("json/", "json (stdlib)"),
    ("cruddur/", "app"),
    ("flask", "Flask/Werkzeug"),
    ("werkzeug", "Flask/Werkzeug"),
    ("gunicorn", "gunicorn"),
    ("requests", "HTTP client (requests/urllib3)"),
    ("urllib3", "HTTP client (requests/urllib3)"),
    ("http/client", "HTTP client (requests/urllib3)"),
)
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")


def area(file: str) -> str:
    """The package a source file belongs to."""
    for needle, name in AREAS:
        if needle in file:
            return name
    return "other"


def parse_raw(text: str) -> list[tuple[str, list[tuple[str, str]], int]]:
    """py-spy's raw (collapsed) output: (thread, [(function, file)] outermost first, samples)."""
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        parts = stack.split(";")
        thread = parts[0] if parts[0].startswith(("thread", "process")) else "?"
        frames = []
        for part in parts:
            match = FRAME.match(part)
            if match and not part.startswith(("thread (", "process ")):
                frames.append((match["func"], match["file"]))
        if parts and parts[0].startswith("process"):
            thread = parts[1] if len(parts) > 1 else "?"
        stacks.append((thread, frames, int(count)))
    return stacks


def summarize(stacks, top: int = 25) -> str:
    """Markdown: samples per thread, inclusive share by area and by function, hottest leaves."""
    total = sum(count for _, _, count in stacks) or 1
    threads: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for _thread, frames, count in stacks:
        label = _thread_label(frames)
        threads[label] += count
        for name in {area(file) for _, file in frames}:
            areas[name] += count
        for key in {f"{func} ({_short(file)})" for func, file in frames if area(file) not in ("gunicorn", "other")}:
            functions[key] += count
        if frames:
            func, file = frames[-1]
            leaves[f"{func} ({_short(file)})"] += count
    pct = lambda n: f"{100 * n / total:.1f}%"  # noqa: E731
    lines = [f"{total} samples.", "", "| thread | share |", "| --- | ---: |"]
    lines += [f"| {name} | {pct(n)} |" for name, n in threads.most_common()]
    lines += ["", "Inclusive share by package (a sample counts once for each package on its stack):", ""]
    lines += ["| package | share |", "| --- | ---: |"]
    lines += [f"| {name} | {pct(n)} |" for name, n in areas.most_common()]
    lines += ["", f"Top {top} functions, inclusive:", "", "| function | share |", "| --- | ---: |"]
    lines += [f"| `{name}` | {pct(n)} |" for name, n in functions.most_common(top)]
    lines += ["", f"Top {top} leaf functions (self time):", "", "| function | share |", "| --- | ---: |"]
    lines += [f"| `{name}` | {pct(n)} |" for name, n in leaves.most_common(top)]
    return "\n".join(lines) + "\n"


def _thread_label(frames) -> str:
    """Name a thread by what it runs (py-spy's raw format gives only its id)."""
    files = " ".join(file for _, file in frames[:8])
    funcs = " ".join(func for func, _ in frames)
    if "gunicorn" in files:
        return "request thread (gunicorn worker)"
    if "_send_loop" in funcs or "watchtower" in files:
        return "CloudWatch sender (watchtower)"
    if "opentelemetry" in files:
        return "OTel batch span processor"
    if "aws_xray_sdk" in files:
        return "X-Ray sampling pollers"
    if "delivery" in files:
        return "Rollbar / relay sender"
    return "other threads"


def _short(file: str) -> str:
    for marker in ("site-packages/", "backend-flask/", "lib/python3.11/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def main(argv=None) -> int:
    """Profile one configuration under load."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=CONFIGS, default="all")
    parser.add_argument("--endpoint", choices=tuple(ENDPOINTS), default="home")
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        print("py-spy is not installed: .venv/bin/python -m pip install py-spy", file=sys.stderr)
        return 2
    args.output_dir.mkdir(parents=True, exist_ok=True)
    raw_path = args.output_dir / f"profile-{args.config}-{args.endpoint}.txt"
    method, path, body = ENDPOINTS[args.endpoint]
    load = LoadGenerator()
    if args.config in PEERS:
        ensure_venv()
    sinks = Sinks() if INTEGRATIONS[args.config] or args.config in PEERS else None
    try:
        log_dir = args.output_dir / "logs" / f"profile-{args.config}"
        command = server_command(args.config)
        with AppServer(app_env(args.config, sinks), workers=1, log_dir=log_dir, **command) as server:
            (worker,) = server.wait_for_workers(1)
            for _ in range(120):
                request_json(server.url + ENDPOINTS["post"][1], "POST", ENDPOINTS["post"][2])
            load.run(server.url + path, 2, 4, method, body)
            command = [py_spy, "record", "-p", str(worker), "-d", str(args.duration), "-r", str(args.rate)]
            command += ["-f", "raw", "--threads", "--nonblocking", "--full-filenames", "-o", str(raw_path)]
            spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            loader = threading.Thread(target=load.run, args=(server.url + path, args.duration + 2, 4, method, body))
            loader.start()
            _, err = spy.communicate(timeout=args.duration + 60)
            loader.join()
            if spy.returncode != 0:
                print(f"py-spy failed ({spy.returncode}): {err}", file=sys.stderr)
                return 1
    finally:
        if sinks is not None:
            sinks.stop()
    text = f"### Profile: {args.config}, {method} {path}, {args.duration} s at 4 connections\n\n"
    text += summarize(parse_raw(raw_path.read_text()), args.top)
    (args.output_dir / f"profile-{args.config}-{args.endpoint}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
