"""The agents the benchmark compares Cruddur with, each as a careful user would run it on a server.

Each peer runs the same app with CRUDDUR_TELEMETRY=off under its agent, from its own environment
`.venv-bench` (the app's pins plus bench/requirements-peers.txt, created on first use; never the app's
environment), and sends to its stand-in in the sinks process:

- zero-code: ``opentelemetry-instrument gunicorn ... app:app``, OTLP/HTTP protobuf, the batch span
  processor's defaults, no metrics or logs exporter → the OTLP receiver;
- ddtrace: ``ddtrace-run gunicorn ... app:app``, its default writer → a Datadog agent stand-in;
- elastic: ``ElasticAPM(app)`` (bench/peer_apps.py), no cloud-metadata probe, no central config,
  metrics every 30 s (its default) → an APM Server stand-in;
- sentry, sentry-queue: ``sentry_sdk.init(traces_sample_rate=1.0)`` at the transport queue's
  default size (100) and raised to SENTRY_RAISED_QUEUE → a Sentry envelope stand-in.

    python -m bench.peers      # create or update .venv-bench now (make setup-bench-peers)
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BACKEND_DIR = Path(__file__).resolve().parents[1]
BENCH_VENV = BACKEND_DIR / ".venv-bench"
REQUIREMENTS = Path(__file__).with_name("requirements-peers.txt")
_STAMP = BENCH_VENV / ".installed"
_LOCK = BACKEND_DIR / ".venv-bench.lock"
SENTRY_RAISED_QUEUE = 10_000
ZERO_CODE_SERVICE = "backend-flask-zero-code"
DDTRACE_SERVICE = "backend-flask-ddtrace"
ELASTIC_SERVICE = "backend-flask-elastic"


@dataclass(frozen=True)
class Peer:
    """How to start the app under one agent, and where its stand-in counts what it sent."""

    label: str
    stand_in: str  # the key of sinks' GET /peers: "otlp", "ddtrace", "elastic" or "sentry"
    name: str  # the service (or Sentry project id) its traces are counted under
    app: str = "app:app"
    wrapper: str = ""  # an executable of .venv-bench that runs gunicorn under the agent
    records_sql: bool = True  # whether the agent records sqlite3 statements at all
    may_drop: bool = False  # a bounded queue that drops by design: its loss is a finding, not a failure
    env: dict = field(default_factory=dict)


PEERS = {
    "zero-code": Peer(
        "OpenTelemetry zero-code (opentelemetry-instrument)",
        "otlp",
        ZERO_CODE_SERVICE,
        wrapper="opentelemetry-instrument",
        env={
            "OTEL_SERVICE_NAME": ZERO_CODE_SERVICE,
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
        },
    ),
    "ddtrace": Peer(
        "ddtrace (ddtrace-run)",
        "ddtrace",
        DDTRACE_SERVICE,
        wrapper="ddtrace-run",
        env={"DD_SERVICE": DDTRACE_SERVICE, "DD_ENV": "bench"},
    ),
    "elastic": Peer(
        "Elastic APM (ElasticAPM(app))",
        "elastic",
        ELASTIC_SERVICE,
        app="bench.peer_apps:elastic()",
        env={
            "ELASTIC_APM_SERVICE_NAME": ELASTIC_SERVICE,
            "ELASTIC_APM_ENVIRONMENT": "bench",
            "ELASTIC_APM_CLOUD_PROVIDER": "none",
            "ELASTIC_APM_CENTRAL_CONFIG": "false",
            "ELASTIC_APM_METRICS_INTERVAL": "30s",
        },
    ),
    "sentry": Peer(
        "Sentry (transport queue 100, its default)",
        "sentry",
        "1",
        app="bench.peer_apps:sentry()",
        records_sql=False,
        may_drop=True,
    ),
    "sentry-queue": Peer(
        f"Sentry (transport queue {SENTRY_RAISED_QUEUE:,})",
        "sentry",
        "2",
        app="bench.peer_apps:sentry()",
        records_sql=False,
        env={"BENCH_SENTRY_TRANSPORT_QUEUE_SIZE": str(SENTRY_RAISED_QUEUE)},
    ),
}


def peer_env(config: str, addresses: dict) -> dict:
    """The environment of `config`'s server: the app's telemetry off, the agent pointed at its stand-in."""
    peer = PEERS[config]
    urls = addresses["peers"]
    env = {"CRUDDUR_TELEMETRY": "off", **peer.env}
    if peer.stand_in == "otlp":
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = addresses["env"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    elif peer.stand_in == "ddtrace":
        env["DD_TRACE_AGENT_URL"] = urls["datadog_agent_url"]
    elif peer.stand_in == "elastic":
        env["ELASTIC_APM_SERVER_URL"] = urls["elastic_apm_url"]
    elif peer.stand_in == "sentry":
        host = urls["sentry_url"].split("://", 1)[1]
        env["SENTRY_DSN"] = f"http://{urls['sentry_public_key']}@{host}/{peer.name}"
        env["SENTRY_ENVIRONMENT"] = "bench"
    return env


def gunicorn_command(config: str) -> tuple[Path, tuple[str, ...]]:
    """(the gunicorn of .venv-bench, the agent's wrapper to put before it, if any)."""
    bin_dir = BENCH_VENV / "bin"
    wrapper = PEERS[config].wrapper
    return bin_dir / "gunicorn", ((str(bin_dir / wrapper),) if wrapper else ())


def _digest() -> str:
    text = (BACKEND_DIR / "requirements.txt").read_bytes() + REQUIREMENTS.read_bytes()
    return hashlib.sha256(text).hexdigest()


def ensure_venv(log=print) -> float:
    """Create or update .venv-bench from the pinned files unless it is current; seconds spent installing."""
    digest = _digest()
    with open(_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time (a bench run and a test, say)
        if _STAMP.exists() and _STAMP.read_text() == digest:
            return 0.0
        started = time.monotonic()
        log(f"==> bench: installing the peer agents into {BENCH_VENV.name} ({REQUIREMENTS.name})")
        python = BENCH_VENV / "bin" / "python"
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
            check=True,
        )
        _STAMP.write_text(digest)
        seconds = time.monotonic() - started
        log(f"==> bench: {BENCH_VENV.name} ready ({seconds:.0f} s)")
        return seconds


if __name__ == "__main__":
    ensure_venv()
