"""One benchmark run: every configuration, interleaved across repeats, each on its own gunicorn."""

from __future__ import annotations

import json
import platform
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.app_server import AppServer

from .load import LoadGenerator
from .probes import AppLog, Sinks, cpu_seconds, rss_mb, wait_until

CONFIGS = ("bare", "otlp", "xray", "cloudwatch", "rollbar", "all")
INTEGRATIONS = {
    "bare": (),
    "otlp": ("otlp",),
    "xray": ("xray",),
    "cloudwatch": ("cloudwatch",),
    "rollbar": ("rollbar",),
    "all": ("otlp", "xray", "cloudwatch", "rollbar"),
}
NEW_CRUD = json.dumps({"message": "Benchmarking the cost of telemetry, one crud at a time.", "ttl": "7-days"})
# name: (method, path, body)
ENDPOINTS = {
    "home": ("GET", "/api/activities/home", ""),
    "post": ("POST", "/api/activities", NEW_CRUD),
}
LOG_GROUP = "cruddur-bench"
ROLLBAR_TOKEN = "bench0000000000000000000000000000"
# The batch span processor exports every 5 s and watchtower sends every 5 s: a phase's last
# records reach the sinks within that, plus the time to send them.
DRAIN_TIMEOUT = 20.0


@dataclass
class Settings:
    """How long and how often."""

    repeats: int = 3
    duration: float = 6.0
    connections: int = 4
    warmup_posts: int = 120
    warmup_gets: int = 40
    configs: tuple[str, ...] = CONFIGS
    endpoints: tuple[str, ...] = tuple(ENDPOINTS)
    out_dir: Path = Path("bench-output")
    load_tool: str = "wrk"


@dataclass
class Sample:
    """One configuration, one endpoint, one repeat."""

    config: str
    endpoint: str
    repeat: int
    cpu_ms_per_request: float
    rps: float
    p50_ms: float
    p99_ms: float
    rss_mb: float
    sent: int
    served: int
    completed: int
    errors: int
    cpu_seconds: float
    load: dict = field(default_factory=dict)


def app_env(config: str, sinks: Sinks | None) -> dict:
    """The environment that turns on exactly the integrations of `config`, pointed at the sinks."""
    on = INTEGRATIONS[config]
    env = {}
    if not on:
        return env
    sink_env = sinks.env
    if "otlp" in on:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink_env["OTEL_EXPORTER_OTLP_ENDPOINT"]
    if "xray" in on:
        env["AWS_XRAY_DAEMON_ADDRESS"] = sink_env["AWS_XRAY_DAEMON_ADDRESS"]
    if "cloudwatch" in on:
        env["CLOUDWATCH_LOG_GROUP"] = LOG_GROUP
        env.update({k: v for k, v in sink_env.items() if k.startswith("AWS_") and k != "AWS_XRAY_DAEMON_ADDRESS"})
    if "rollbar" in on:
        env["ROLLBAR_ACCESS_TOKEN"] = ROLLBAR_TOKEN
        env["ROLLBAR_ENDPOINT"] = sink_env["ROLLBAR_ENDPOINT"]
    return env


def _request(url: str, method: str = "GET", body: str = "") -> dict | list:
    data = body.encode() if body else None
    headers = {"Content-Type": "application/json"} if body else {}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as response:
        return json.loads(response.read())


class ConfigRun:
    """One gunicorn (one worker) with one configuration, and the sinks it reports to."""

    def __init__(self, config: str, repeat: int, settings: Settings, load: LoadGenerator):
        self.config = config
        self.repeat = repeat
        self.settings = settings
        self.load = load
        self.on = INTEGRATIONS[config]
        self.checks: list[dict] = []

    def run(self) -> tuple[list[Sample], dict]:
        """Warm up, then each endpoint in turn; returns the samples and the loss checks."""
        sinks = Sinks() if self.on else None
        log_dir = self.settings.out_dir / "logs" / f"{self.repeat}-{self.config}"
        try:
            with AppServer(app_env(self.config, sinks), workers=1, log_dir=log_dir) as server:
                return self._measure(server, sinks)
        finally:
            if sinks is not None:
                sinks.stop()

    def _measure(self, server: AppServer, sinks: Sinks | None) -> tuple[list[Sample], dict]:
        (worker,) = server.wait_for_workers(1)
        applog = AppLog(server.stdout_path)
        cloudwatch = sinks.cloudwatch(LOG_GROUP) if "cloudwatch" in self.on else None
        # A fixed warm-up: imports, caches and the database (its feed reaches the 100-item limit).
        for _ in range(self.settings.warmup_posts):
            _request(server.url + ENDPOINTS["post"][1], "POST", ENDPOINTS["post"][2])
        for _ in range(self.settings.warmup_gets):
            _request(server.url + ENDPOINTS["home"][1])
        self._drain(applog, sinks, cloudwatch)

        samples = []
        for endpoint in self.settings.endpoints:
            method, path, body = ENDPOINTS[endpoint]
            served_before = applog.read()[path]
            cpu_before = cpu_seconds(worker)
            result = self.load.run(server.url + path, self.settings.duration, self.settings.connections, method, body)
            # Export and shipping work for these requests happens after them, on other threads.
            self._drain(applog, sinks, cloudwatch)
            cpu = cpu_seconds(worker) - cpu_before
            served = applog.read()[path] - served_before
            samples.append(
                Sample(
                    config=self.config,
                    endpoint=endpoint,
                    repeat=self.repeat,
                    cpu_ms_per_request=1000 * cpu / served if served else 0.0,
                    rps=result.rps,
                    p50_ms=result.p50_ms,
                    p99_ms=result.p99_ms,
                    rss_mb=rss_mb(worker),
                    sent=result.sent,
                    served=served,
                    completed=result.completed,
                    errors=result.errors,
                    cpu_seconds=cpu,
                    load=result.to_dict(),
                )
            )
            # wrk may abandon the requests in flight when time is up (at most one per connection).
            in_flight = result.sent - served
            self._check(
                f"{endpoint}: requests sent but not served",
                f"0..{self.settings.connections}",
                in_flight,
                0 <= in_flight <= self.settings.connections,
            )
            self._check(f"{endpoint}: no errors", 0, result.errors)
        health = _request(server.url + "/api/health-check")["integrations"]
        self._drain(applog, sinks, cloudwatch)
        return samples, self._final_checks(applog, sinks, cloudwatch, health)

    def _drain(self, applog: AppLog, sinks: Sinks | None, cloudwatch) -> bool:
        """Wait until the sinks hold everything the app has answered so far (or the timeout)."""
        time.sleep(0.05)  # the last responses' log lines
        served = dict(applog.read())
        total = sum(served.values())

        def arrived() -> bool:
            if "otlp" in self.on and sinks.stats()["server_spans"] < total:
                return False
            return cloudwatch is None or all(cloudwatch.read()[p] >= n for p, n in served.items())

        return sinks is None or wait_until(arrived, DRAIN_TIMEOUT)

    def _check(self, what: str, expected, actual, ok: bool | None = None) -> None:
        ok = expected == actual if ok is None else ok
        self.checks.append({"check": what, "expected": expected, "actual": actual, "ok": ok})

    def _final_checks(self, applog: AppLog, sinks: Sinks | None, cloudwatch, health: dict) -> dict:
        served = dict(applog.read())
        total = sum(served.values())
        stats = sinks.stats() if sinks else {}
        counts = {"requests_served": total}
        if "otlp" in self.on:
            self._check("OTLP: one server span per request served", total, stats["server_spans"])
            counts.update(spans=stats["spans"], server_spans=stats["server_spans"])
            counts["spans_per_request"] = round(stats["spans"] / total, 2) if total else None
        if "cloudwatch" in self.on:
            self._check("CloudWatch: one access-log event per request served", served, dict(cloudwatch.access_by_path))
            counts["cloudwatch_events"] = cloudwatch.events
        if "xray" in self.on:
            self._check(
                "X-Ray: documents received == documents the app sent", health["xray"]["sent"], stats["xray_documents"]
            )
            counts.update(xray_segments=stats["segments"], xray_sampled=round(stats["segments"] / total, 3))
        for name, status in health.items():
            if status.get("enabled"):
                self._check(f"{name}: nothing dropped (app counter)", 0, status["dropped"])
        if "rollbar" in self.on:
            counts["rollbar_items"] = stats["rollbar_items"]
        return {"config": self.config, "repeat": self.repeat, "counts": counts, "checks": self.checks}


def run(settings: Settings, log=print) -> dict:
    """Every configuration `repeats` times (rotated, so machine noise spreads); raw results."""
    load = LoadGenerator(settings.load_tool)
    started = time.monotonic()
    samples, checks = [], []
    for repeat in range(settings.repeats):
        shift = repeat % len(settings.configs)
        order = settings.configs[shift:] + settings.configs[:shift]
        for config in order:
            t0 = time.monotonic()
            got, checked = ConfigRun(config, repeat, settings, load).run()
            samples.extend(got)
            checks.append(checked)
            failed = [c for c in checked["checks"] if not c["ok"]]
            summary = ", ".join(f"{s.endpoint} {s.cpu_ms_per_request:.3f} ms/req {s.rps:.0f} req/s" for s in got)
            log(
                f"  repeat {repeat + 1}/{settings.repeats} {config:<10} {summary}"
                f" ({time.monotonic() - t0:.0f} s){' LOSS: ' + str(failed) if failed else ''}"
            )
    return {
        "meta": {
            "commit": _git_commit(),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": _cpu_count(),
            "load_tool": load.tool,
            "repeats": settings.repeats,
            "duration_s": settings.duration,
            "connections": settings.connections,
            "gunicorn_workers": 1,
            "elapsed_s": round(time.monotonic() - started, 1),
        },
        "samples": [vars(s) for s in samples],
        "checks": checks,
    }


def _git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=False)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "cruddur"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0))
