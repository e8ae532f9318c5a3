"""One fault, end to end: vendor stand-ins failing one way, the real app under gunicorn, load, measurements.

    with SinksProcess() as sinks:
        run = FaultRun("blackhole", sinks, log_dir).run(load_seconds=5)
    run.load.percentile(99), run.memory_growth, run.stop_seconds, run.health, run.warning_lines()

The stand-ins run in their own process (``python -m tests.support.sinks``) so that moto, the OTLP
decoder and the load generator do not share one GIL and skew the measured latency; the fault is
switched through the sinks' control URL before the app starts, so startup happens in the outage too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.app_server import BACKEND_DIR, AppServer
from tests.support.waiting import wait_for

from .load import LoadResult, get_json, run_load

# name -> (mode of the HTTP stand-ins, mode of the X-Ray listener); see tests/support/sinks.py.
FAULTS: dict[str, tuple[str, str]] = {
    "refuse": ("refuse", "refuse"),  # nothing listens anywhere (X-Ray: ICMP port unreachable)
    "blackhole": ("blackhole", "blackhole"),  # connections accepted, never answered (X-Ray: datagrams dropped)
    "slow": ("slow", "ok"),  # every HTTP answer takes SLOW_SECONDS
    "status500": ("status500", "ok"),
    "status429": ("status429", "ok"),  # with Retry-After: RETRY_AFTER_SECONDS
    "no_xray": ("ok", "refuse"),  # every vendor fine, no X-Ray daemon
}
HEALTHY = "healthy"
SLOW_SECONDS = 2.0
RETRY_AFTER_SECONDS = 30
INTEGRATIONS = ("opentelemetry", "xray", "cloudwatch", "rollbar")
HTTP_INTEGRATIONS = ("opentelemetry", "cloudwatch", "rollbar")
ACCESS_LOGGER = "cruddur.access"

# Where an outage must show in the health check as a failure (failed > 0 and last_error_at set),
# given time for the SDKs' own timeouts and retries (OTLP retries within 10 s, botocore 2 x 5 s).
# Under `slow` the vendors answer, late: Rollbar's queue backs up and OpenTelemetry's fills and
# drops, which must show as queued/dropped rather than failed.
# X-Ray is fire-and-forget UDP: a datagram to a port where nothing listens is "sent" as far as the
# sending process can know (Linux reports ICMP port-unreachable only on connected sockets), so no
# X-Ray outage can show in the health check; the X-Ray faults prove the app is unaffected instead.
MUST_FAIL: dict[str, tuple[str, ...]] = {
    "refuse": HTTP_INTEGRATIONS,
    "blackhole": HTTP_INTEGRATIONS,
    "status500": HTTP_INTEGRATIONS,
    "status429": HTTP_INTEGRATIONS,
    "no_xray": (),
    "slow": (),
}
MUST_BACK_UP: dict[str, tuple[str, ...]] = {"slow": ("opentelemetry", "rollbar")}


def secrets() -> dict[str, str]:
    """Credentials unique to one run, so finding one anywhere is proof of a leak."""
    tag = uuid.uuid4().hex
    return {
        "ROLLBAR_ACCESS_TOKEN": f"rollbar-token-{tag}",
        "OTEL_EXPORTER_OTLP_HEADERS": f"x-honeycomb-team=honeycomb-key-{tag}",
        "AWS_SECRET_ACCESS_KEY": f"aws-secret-{tag}",
        "AWS_SESSION_TOKEN": f"aws-session-{tag}",
    }


def secret_values(env: dict[str, str]) -> list[str]:
    """The secret parts of the variables from ``secrets()``."""
    return [
        env["ROLLBAR_ACCESS_TOKEN"],
        env["OTEL_EXPORTER_OTLP_HEADERS"].split("=", 1)[1],
        env["AWS_SECRET_ACCESS_KEY"],
        env["AWS_SESSION_TOKEN"],
    ]


class SinksProcess:
    """``python -m tests.support.sinks`` in a subprocess, with its control URL."""

    def __init__(self, delay: float = SLOW_SECONDS, retry_after: int = RETRY_AFTER_SECONDS, log_path=None):
        self.delay = delay
        self.retry_after = retry_after
        self.log_path = Path(log_path) if log_path else None
        self.process: subprocess.Popen | None = None
        self.addresses: dict = {}
        self.final_summary: dict | None = None

    def start(self) -> SinksProcess:
        """Start and wait (bounded) for the address line."""
        stderr = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        command = [sys.executable, "-m", "tests.support.sinks", "--delay", str(self.delay)]
        command += ["--retry-after", str(self.retry_after)]
        self.process = subprocess.Popen(
            command, cwd=BACKEND_DIR, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True
        )
        if self.log_path:
            stderr.close()
        line = _readline(self.process, timeout=60)
        if not line:
            self.stop()
            raise RuntimeError(f"the sinks process printed nothing (exit {self.process.returncode})")
        self.addresses = json.loads(line)
        return self

    def stop(self) -> dict | None:
        """SIGTERM; return the final summary it prints (None if it had none)."""
        if self.process is None or self.process.poll() is not None:
            return self.final_summary
        self.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            out, _ = self.process.communicate(timeout=20)
            lines = [x for x in out.splitlines() if x.startswith("{")]
            self.final_summary = json.loads(lines[-1]) if lines else None
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        return self.final_summary

    def __enter__(self) -> SinksProcess:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def env(self) -> dict[str, str]:
        """Variables that point the app at these sinks."""
        return dict(self.addresses["env"])

    def set_mode(self, sink: str, mode: str) -> None:
        """Switch a sink (or ``all``) to a fault mode."""
        body = json.dumps({"sink": sink, "mode": mode}).encode()
        request = urllib.request.Request(self.addresses["control_url"] + "/mode", data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def set_fault(self, fault: str) -> None:
        """Put every sink in the modes of ``fault`` (or ``healthy``)."""
        http_mode, xray_mode = FAULTS.get(fault, ("ok", "ok"))
        self.set_mode("all", http_mode)
        self.set_mode("xray", xray_mode)

    def stats(self) -> dict:
        """What arrived so far (see ``Sinks.summary``)."""
        with urllib.request.urlopen(self.addresses["control_url"] + "/stats", timeout=30) as response:
            return json.loads(response.read())


def _readline(process: subprocess.Popen, timeout: float) -> str:
    """First stdout line of ``process`` within ``timeout`` seconds ('' if none)."""
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0].strip() if box else ""


@dataclass
class FaultRun:
    """Runs the app through one fault and keeps every measurement; see ``run``."""

    fault: str
    sinks: SinksProcess
    log_dir: Path
    workers: int = 2
    concurrency: int = 4
    rate: float | None = 100.0  # requests per second over all connections; None: as fast as answered
    progress: object = None  # callable(str) for progress lines (the soak prints them)
    extra_env: object = None  # callable(fault, sinks) -> variables added to the app's environment
    must_fail: dict | None = None  # this campaign's MUST_FAIL table (default: the module's)
    must_back_up: dict | None = None  # this campaign's MUST_BACK_UP table (default: the module's)

    env: dict = field(default_factory=dict)
    server: AppServer | None = None
    startup_seconds: float | None = None
    warmup: LoadResult | None = None
    load: LoadResult | None = None
    rss_baseline: dict = field(default_factory=dict)
    rss_peak: dict = field(default_factory=dict)
    health_bodies: list = field(default_factory=list)
    outage_seen_after: float | None = None  # seconds after the load until MUST_FAIL showed
    stop_seconds: float | None = None
    returncode: int | None = None
    killed: bool = False
    sinks_summary: dict | None = None
    cpu: dict = field(default_factory=dict)  # seconds of CPU during the measured load, by process
    error: str | None = None

    # -- phases ----------------------------------------------------------------------------------

    def start(self, extra_env: dict | None = None) -> FaultRun:
        """Put the sinks in the fault, then start the app (timed) pointed at them."""
        self.sinks.set_fault(self.fault)
        if extra_env is None and self.extra_env is not None:
            extra_env = self.extra_env(self.fault, self.sinks)
        self.env = {
            **self.sinks.env,
            **secrets(),
            "CLOUDWATCH_LOG_GROUP": f"cruddur-faults-{self.fault}-{uuid.uuid4().hex[:8]}",
            "CRUDDUR_CODE_VERSION": "faults",
            **(extra_env or {}),
        }
        self.server = AppServer(self.env, workers=self.workers, log_dir=self.log_dir, startup_timeout=30)
        self.server.start()
        self.startup_seconds = self.server.startup_seconds
        self.server.wait_for_workers()
        return self

    def drive(self, seconds: float, warmup_seconds: float = 1.5, progress_every: float = 10.0) -> FaultRun:
        """Warm up (every worker imports and starts its threads), then load for ``seconds`` while sampling memory."""
        url = self.server.url
        self.warmup = run_load(url, self.concurrency, duration=warmup_seconds, rate=self.rate)
        self.rss_baseline = self.server.worker_rss()
        self.rss_peak = dict(self.rss_baseline)
        stop = threading.Event()

        def sample_memory() -> None:
            while not stop.wait(0.5):
                for pid, rss in self.server.worker_rss().items():
                    self.rss_peak[pid] = max(self.rss_peak.get(pid, 0), rss)

        def sample_health() -> None:
            while not stop.wait(1.0):
                with contextlib.suppress(OSError):
                    self.sample_health(2)

        sampler = threading.Thread(target=sample_memory, daemon=True)
        sampler.start()
        health_poller = threading.Thread(target=sample_health, daemon=True)
        health_poller.start()
        processes = {"workers": self.server.worker_pids(), "sinks": [self.sinks.process.pid], "load": [os.getpid()]}
        cpu_before = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in processes.items()}

        def report(partial: LoadResult) -> None:
            if self.progress:
                self.progress(f"  {self.fault}: {partial.summary()}; memory +{self.memory_growth_mib:.1f} MiB")

        try:
            self.load = run_load(
                url, self.concurrency, duration=seconds, rate=self.rate, progress=report, progress_every=progress_every
            )
        finally:
            stop.set()
            sampler.join()
            health_poller.join()
        self.cpu = {name: sum(cpu_seconds(pid) for pid in pids) - cpu_before[name] for name, pids in processes.items()}
        for pid, rss in self.server.worker_rss().items():
            self.rss_peak[pid] = max(self.rss_peak.get(pid, 0), rss)
        return self

    def watch_health(self, timeout: float = 25.0) -> FaultRun:
        """Poll the health check until the outage shows as expected (or ``timeout``); keep every body."""
        started = time.monotonic()

        def seen() -> bool:
            if not self.outage_visible():
                self.sample_health(4)
            return self.outage_visible()

        try:
            wait_for(seen, timeout, interval=0.5)
            self.outage_seen_after = time.monotonic() - started
        except AssertionError:
            pass
        return self

    def sample_health(self, count: int = 8) -> None:
        """GET the health check ``count`` times (workers answer in turn); keep the raw bodies."""
        for _ in range(count):
            status, _headers, body = get_json(self.server.url, "/api/health-check")
            self.health_bodies.append((status, body))

    def stop(self) -> FaultRun:
        """SIGTERM the master (timed), still in the outage; then stop the sinks and keep their summary."""
        if self.server is not None:
            self.stop_seconds, self.returncode = self.server.stop(timeout=60)
            self.killed = self.server.killed
        self.sinks_summary = self.sinks.stop()
        return self

    def run(self, load_seconds: float, health_timeout: float = 25.0) -> FaultRun:
        """start, drive, watch_health, stop; an exception is kept in ``error`` and the run still stopped."""
        try:
            self.start()
            self.drive(load_seconds)
            self.watch_health(health_timeout)
        except Exception as error:
            self.error = f"{type(error).__name__}: {error}"
        finally:
            self.stop()
        return self

    # -- results ---------------------------------------------------------------------------------

    @property
    def requests(self) -> int:
        """Requests sent (warm-up included)."""
        return sum(r.count for r in (self.warmup, self.load) if r)

    @property
    def errors(self) -> int:
        """Requests not answered 2xx (warm-up included)."""
        return sum(r.errors for r in (self.warmup, self.load) if r)

    @property
    def memory_growth(self) -> int:
        """Largest growth of one worker's resident memory over the loaded outage, in bytes."""
        growth = [self.rss_peak.get(pid, rss) - rss for pid, rss in self.rss_baseline.items()]
        return max(growth, default=0)

    @property
    def memory_growth_mib(self) -> float:
        """``memory_growth`` in MiB."""
        return self.memory_growth / (1 << 20)

    def health(self) -> dict[str, dict]:
        """Per integration, the largest value seen of each counter across workers and samples."""
        merged: dict[str, dict] = {}
        for status, body in self.health_bodies:
            if status != 200:
                continue
            for name, state in json.loads(body).get("integrations", {}).items():
                into = merged.setdefault(name, {"enabled": state["enabled"], "last_error_at": None})
                for key in ("queued", "sent", "dropped", "failed", "contained_errors"):
                    into[key] = max(into.get(key, 0), state.get(key) or 0)
                into["last_error_at"] = into["last_error_at"] or state.get("last_error_at")
                if state.get("last_error"):
                    into["last_error"] = state["last_error"]
        return merged

    def outage_visible(self) -> bool:
        """Whether the health check shows what MUST_FAIL / MUST_BACK_UP expect for this fault."""
        health = self.health()
        must_fail = MUST_FAIL if self.must_fail is None else self.must_fail
        must_back_up = MUST_BACK_UP if self.must_back_up is None else self.must_back_up
        for name in must_fail.get(self.fault, ()):
            state = health.get(name, {})
            if not (state.get("failed") and state.get("last_error_at")):
                return False
        for name in must_back_up.get(self.fault, ()):
            state = health.get(name, {})
            if not (state.get("queued") or state.get("dropped")):
                return False
        return True

    @property
    def dropped(self) -> int:
        """Items dropped across integrations (largest per-worker count seen in the health check)."""
        return sum(state.get("dropped", 0) for state in self.health().values())

    def records(self) -> list[dict]:
        """The app's JSON log records."""
        return self.server.log_records() if self.server else []

    def warning_lines(self) -> list[str]:
        """Warnings and errors the app and gunicorn wrote, except access-log lines of requests."""
        lines = [
            json.dumps(r)
            for r in self.records()
            if r.get("level") in ("WARNING", "ERROR", "CRITICAL") and r.get("logger") != ACCESS_LOGGER
        ]
        for line in self.server.stderr_text().splitlines() if self.server else []:
            if not re.match(r"^\[[^]]+\] \[\d+\] \[INFO\]", line):
                lines.append(line)
        return lines

    def output(self) -> str:
        """Everything the app wrote (stdout and stderr)."""
        return self.server.stdout_text() + self.server.stderr_text() if self.server else ""

    def tracebacks(self) -> int:
        """Tracebacks in the app's output (as text, or inside JSON log lines)."""
        return self.output().count("Traceback (most recent call last)")

    def leaked_secrets(self) -> list[str]:
        """Secrets of this run that appear in a health-check body or in the app's output."""
        texts = [body.decode(errors="replace") for _status, body in self.health_bodies] + [self.output()]
        return [secret for secret in secret_values(self.env) if any(secret in text for text in texts)]

    def row(self) -> dict:
        """One line of the soak report."""
        load = self.load or LoadResult()
        return {
            "fault": self.fault,
            "requests": self.requests,
            "errors": self.errors,
            "p50_ms": load.percentile(50),
            "p99_ms": load.percentile(99),
            "rate": load.rate,
            "memory_mib": self.memory_growth_mib,
            "dropped": self.dropped,
            "startup_s": self.startup_seconds,
            "stop_s": self.stop_seconds,
            "warnings": len(self.warning_lines()) if self.server else 0,
            "cpu": self.cpu,
            "tracebacks": self.tracebacks(),
            "error": self.error,
        }


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time a process used so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_faults(
    faults,
    log_root: Path,
    load_seconds: float,
    health_timeout: float = 25.0,
    overlap_stops: bool = False,
    progress=None,
    **run_options,
) -> dict[str, FaultRun]:
    """Run each fault with its own sinks process, one after another; return the runs by fault.

    With ``overlap_stops`` a run's graceful stop (mostly waiting on a dead vendor) proceeds in the
    background while the next fault starts: each fault has its own stand-ins, so the stopping app
    still sees its own outage.
    """
    runs: dict[str, FaultRun] = {}
    stopping: list[threading.Thread] = []
    say = progress or (lambda _line: None)
    for fault in faults:
        log_dir = Path(log_root) / fault
        log_dir.mkdir(parents=True, exist_ok=True)
        sinks = SinksProcess(log_path=log_dir / "sinks.log")
        run = runs[fault] = FaultRun(fault, sinks, log_dir, progress=progress, **run_options)
        say(f"{fault}: starting stand-ins and the app")
        try:
            sinks.start()
            run.start()
            say(f"{fault}: app up in {run.startup_seconds:.1f} s; load for {load_seconds:g} s")
            run.drive(load_seconds)
            say(f"{fault}: {run.load.summary()}")
            run.watch_health(0.0 if fault == HEALTHY else health_timeout)
            seen = "not seen" if run.outage_seen_after is None else f"seen {run.outage_seen_after:.1f} s after the load"
            say(f"{fault}: outage in the health check: {seen}")
        except Exception as error:
            run.error = f"{type(error).__name__}: {error}"
            say(f"{fault}: FAILED {run.error}")
        say(f"{fault}: SIGTERM")
        if overlap_stops:
            thread = threading.Thread(target=run.stop, name=f"stop-{fault}", daemon=True)
            thread.start()
            stopping.append(thread)
        else:
            run.stop()
            say(f"{fault}: stopped in {run.stop_seconds:.1f} s")
    for thread in stopping:
        thread.join(120)
    return runs
