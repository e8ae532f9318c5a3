"""gunicorn settings for Cruddur (read from the environment so compose and tests can set them)."""

import os
import shutil
import tempfile
from pathlib import Path

bind = os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{os.environ.get('PORT', '4567')}"
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
# The app logs every request itself as a JSON line with its trace id; gunicorn's own access log
# would be a second, untraced copy.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# No preload: each worker builds the app after fork, so exporter threads, sockets and queues
# belong to the process that uses them.
preload_app = False
# A worker gets this long after SIGTERM to finish requests and flush telemetry; the app reads the
# same variable and keeps its telemetry flushes inside it (Config.shutdown_budget).
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT") or "30")
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# gunicorn 27 opens a control socket at one shared path per user; several servers on one
# machine (tests, benchmarks) would fight over it, and Cruddur does not use it.
control_socket_disable = True


def post_worker_init(worker):
    """Freeze what the worker built at startup out of the garbage collector's full passes.

    The app, the SDKs and botocore's service models are hundreds of thousands of objects that live
    as long as the worker; left in the tracked generations, every full collection walks them all
    and stalls whichever request triggered it for ~100 ms (measured: p99 of 60-140 ms with all four
    integrations on). Frozen, a full pass only walks what was allocated since.
    """
    import gc

    gc.freeze()


# Set when this master made the metrics folder itself (and so removes it on exit).
_OWN_METRICS_DIR = "CRUDDUR_OWN_METRICS_DIR"


def on_starting(server):
    """Give the workers one folder for their counters, empty, before any of them starts.

    prometheus_client's multiprocess mode: each worker writes its counters to files in
    PROMETHEUS_MULTIPROC_DIR, and whichever worker answers /api/health-check or /metrics adds up
    all of them. The folder must be empty at start, or the last run's counts would be added in.
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        for stale in Path(directory).glob("*.db"):
            stale.unlink()
    else:
        directory = tempfile.mkdtemp(prefix="cruddur-metrics-")
        os.environ[_OWN_METRICS_DIR] = directory
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory


def child_exit(server, worker):
    """Forget a dead worker's queue lengths (its counters stay: they are the instance's history)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the metrics folder this master made."""
    directory = os.environ.get(_OWN_METRICS_DIR)
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
