"""Load generators: `wrk` (Debian's package) when present, otherwise a small Python one.

Both hold `connections` concurrent connections against one URL for `duration` seconds and return
the same `LoadResult`: requests written (`sent`), answered (`completed`), errors, and latency
percentiles measured by the client.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import statistics
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

WRK_SCRIPT = Path(__file__).with_name("wrk_report.lua")
MARKER = "BENCH_JSON "


@dataclass
class LoadResult:
    """What one load phase did, as the client saw it."""

    tool: str
    sent: int
    completed: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        """Completed requests per second of wall time."""
        return self.completed / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {**asdict(self), "rps": round(self.rps, 1)}


def ensure_wrk() -> str | None:
    """The path of `wrk`, installing Debian's package when missing and allowed; None to fall back."""
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        return None
    sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if sudo is None:
        return None
    print("==> bench: installing Debian's wrk (apt-get install wrk)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        [*sudo, apt, "update", "-qq"],
        [*sudo, apt, "install", "-y", "-qq", "--no-install-recommends", "wrk"],
    ):
        if subprocess.run(command, env=env, capture_output=True, timeout=600, check=False).returncode != 0:
            print("==> bench: could not install wrk; using the Python load generator", flush=True)
            return None
    return shutil.which("wrk")


def run_wrk(wrk: str, url: str, duration: float, connections: int, method: str = "GET", body: str = "") -> LoadResult:
    """Drive `url` with wrk (one thread: the app under test has the other core)."""
    env = {**os.environ, "BENCH_METHOD": method, "BENCH_BODY": body}
    command = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s"]
    command += ["-s", str(WRK_SCRIPT), url]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=duration + 60, check=False)
    out = done.stdout
    line = next((line for line in out.splitlines() if line.startswith(MARKER)), None)
    if line is None:
        raise RuntimeError(f"wrk exited with {done.returncode} and no result:\n{out}\n{done.stderr}")
    data = json.loads(line[len(MARKER) :])
    errors = sum(data[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return LoadResult(
        tool="wrk",
        sent=data["sent"],
        completed=data["completed"],
        errors=errors,
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )


def run_python(url: str, duration: float, connections: int, method: str = "GET", body: str = "") -> LoadResult:
    """The fallback: one thread per connection, each sending requests back to back."""
    parts = urlsplit(url)
    headers = {"Content-Type": "application/json"} if body else {}
    latencies: list[list[float]] = [[] for _ in range(connections)]
    counts = {"sent": 0, "errors": 0}
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def worker(samples: list[float]) -> None:
        conn = None
        while time.monotonic() < stop_at:
            if conn is None:
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            started = time.perf_counter()
            try:
                with lock:
                    counts["sent"] += 1
                conn.request(method, parts.path or "/", body=body or None, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status < 400
                if response.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                ok = False
                conn = None
            if ok:
                samples.append(time.perf_counter() - started)
            else:
                with lock:
                    counts["errors"] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(samples,)) for samples in latencies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    merged = sorted(sample for samples in latencies for sample in samples)
    p50, p99 = _percentile(merged, 50), _percentile(merged, 99)
    return LoadResult("python", counts["sent"], len(merged), counts["errors"], seconds, p50 * 1000, p99 * 1000)


def _percentile(sorted_values: list[float], percent: float) -> float:
    if not sorted_values:
        return 0.0
    if len(sorted_values) == 1:
        return sorted_values[0]
    return statistics.quantiles(sorted_values, n=100, method="inclusive")[int(percent) - 1]


class LoadGenerator:
    """wrk when available (installed on demand), else the Python generator."""

    def __init__(self, prefer: str = "wrk"):
        self.wrk = ensure_wrk() if prefer == "wrk" else None
        self.tool = "wrk" if self.wrk else "python"

    def run(self, url: str, duration: float, connections: int, method: str = "GET", body: str = "") -> LoadResult:
        """One load phase."""
        if self.wrk:
            return run_wrk(self.wrk, url, duration, connections, method, body)
        return run_python(url, duration, connections, method, body)
