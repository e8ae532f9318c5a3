"""Run the real app under gunicorn in a subprocess, on a free loopback port.

    with AppServer({"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint}, workers=2) as server:
        requests.get(server.url + "/api/activities/home")
    duration, returncode = server.stop()   # SIGTERM, bounded; safe after the with-block too

The child gets a scrubbed copy of this process's environment (no vendor, database or gunicorn
variables leak in from the shell) plus ``env``; stdout and stderr go to files under ``log_dir``.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.faulty_http import LOOPBACK
from tests.support.waiting import wait_for

BACKEND_DIR = Path(__file__).resolve().parents[2]
GUNICORN = BACKEND_DIR / ".venv" / "bin" / "gunicorn"
HEALTH_PATH = "/api/health-check"
_SCRUBBED_PREFIXES = ("OTEL_", "AWS_", "ROLLBAR_", "HONEYCOMB_", "CLOUDWATCH_", "CRUDDUR_", "GUNICORN_")
_SCRUBBED_NAMES = {"DATABASE_URL", "PORT", "FRONTEND_URL", "BACKEND_URL", "FLASK_APP", "FLASK_DEBUG"}


def free_port(host=LOOPBACK):
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def child_pids(pid):
    """Direct children of ``pid``, from /proc."""
    children = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            children.extend(int(c) for c in (task / "children").read_text().split())
        return sorted(set(children))
    except OSError:
        pass
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The command name (field 2) may contain spaces; ppid is the 2nd field after its ')'.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
    return sorted(children)


def rss_bytes(pid):
    """Resident memory of ``pid`` in bytes (None if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class AppServer:
    """``gunicorn -c gunicorn.conf.py app:app`` from ``backend-flask/``, bound to 127.0.0.1:<free port>."""

    def __init__(
        self,
        env=None,
        workers=1,
        db_path=None,
        log_dir=None,
        startup_timeout=20.0,
        app="app:app",
        config="gunicorn.conf.py",
        cwd=BACKEND_DIR,
        extra_args=(),
        gunicorn=GUNICORN,
        launcher=(),
    ):
        """Configure; ``start`` (or ``with``) launches it.

        ``gunicorn`` is the executable to run (another environment's, say) and ``launcher`` an argv
        put before it (an agent's wrapper such as ``ddtrace-run``, which execs gunicorn in place).
        """
        self.workers = workers
        self.startup_timeout = startup_timeout
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="cruddur-app-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = Path(db_path) if db_path else self.log_dir / "cruddur.db"
        self.stdout_path = self.log_dir / "stdout.log"
        self.stderr_path = self.log_dir / "stderr.log"
        self.port = None
        self.process = None
        self.startup_seconds = None
        self.killed = False
        self._user_env = dict(env or {})
        self._command = [*launcher, str(gunicorn), "-c", config, *extra_args, app]
        self._cwd = Path(cwd)
        self._stop_result = None
        self._runtime_dir = tempfile.mkdtemp(prefix="gunicorn-")

    # -- lifecycle ---------------------------------------------------------------------------

    def build_env(self):
        """The child's environment (scrubbed parent env + defaults + the caller's ``env``)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES) and k not in _SCRUBBED_NAMES}
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "CRUDDUR_ENV": "development",  # a new database gets the seed data
                "DATABASE_URL": f"sqlite:///{self.db_path}",
                "GUNICORN_WORKERS": str(self.workers),
                # gunicorn >= 25 puts its control socket under XDG_RUNTIME_DIR (else ~/.gunicorn): one
                # short private directory per server keeps parallel servers from sharing one socket.
                "XDG_RUNTIME_DIR": self._runtime_dir,
            }
        )
        env.update({k: str(v) for k, v in self._user_env.items()})
        env["GUNICORN_BIND"] = f"{LOOPBACK}:{self.port}"
        return env

    def start(self):
        """Launch gunicorn and wait (bounded) until the health check answers 200; return self."""
        if self.process is not None:
            return self
        started = time.monotonic()
        for _attempt in range(3):
            self._launch()
            try:
                self._wait_healthy(started)
                break
            except RuntimeError:
                # Another process took the free port between our probe and gunicorn's bind: retry.
                if "Address already in use" not in self.stderr_text():
                    self._kill_group()
                    raise
                self._kill_group()
                self.stderr_path.write_bytes(b"")
            except BaseException:
                self._kill_group()
                raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _launch(self):
        self.port = free_port()
        with open(self.stdout_path, "ab") as stdout, open(self.stderr_path, "ab") as stderr:
            self.process = subprocess.Popen(
                self._command,
                cwd=self._cwd,
                env=self.build_env(),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )

    def _wait_healthy(self, started):
        deadline = started + self.startup_timeout
        last_error = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"gunicorn exited with {self.process.returncode} before answering {HEALTH_PATH}\n"
                    f"--- stderr (tail) ---\n{self.stderr_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(self.url + HEALTH_PATH, timeout=2) as response:
                    if response.status == 200:
                        return
                    last_error = f"status {response.status}"
            except (urllib.error.URLError, OSError) as error:
                last_error = error
            time.sleep(0.1)
        raise TimeoutError(
            f"{HEALTH_PATH} did not answer 200 within {self.startup_timeout:g} s ({last_error})\n"
            f"--- stderr (tail) ---\n{self.stderr_text()[-3000:]}"
        )

    def stop(self, sig=signal.SIGTERM, timeout=40.0):
        """Send ``sig`` to the master, wait up to ``timeout`` (then SIGKILL the group); return (seconds, returncode).

        Calling it again returns the first result.
        """
        if self._stop_result is not None:
            return self._stop_result
        if self.process is None:
            return (0.0, None)
        started = time.monotonic()
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.killed = True
            self._kill_group()
        self._stop_result = (time.monotonic() - started, self.process.returncode)
        # Workers that outlived the master would hold ports and files: clean up the whole session.
        self._kill_group()
        shutil.rmtree(self._runtime_dir, ignore_errors=True)
        return self._stop_result

    def _kill_group(self):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    # -- inspection ----------------------------------------------------------------------------

    @property
    def url(self):
        """Base URL, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self):
        """The gunicorn master's pid."""
        return self.process.pid if self.process else None

    def worker_pids(self):
        """Current worker pids (children of the master)."""
        return child_pids(self.pid) if self.process and self.process.poll() is None else []

    def wait_for_workers(self, count=None, timeout=20.0):
        """Wait until ``count`` (default: ``workers``) workers run; return their pids."""
        count = self.workers if count is None else count
        return wait_for(
            lambda: (pids := self.worker_pids()) and len(pids) >= count and pids,
            timeout,
            message=f"fewer than {count} gunicorn workers",
        )

    def worker_rss(self):
        """``{worker pid: resident bytes}``."""
        return {pid: rss for pid in self.worker_pids() if (rss := rss_bytes(pid)) is not None}

    def stdout_text(self):
        """Everything the app wrote to stdout so far."""
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr_text(self):
        """Everything written to stderr so far (gunicorn's own log, tracebacks)."""
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def stdout_lines(self):
        """stdout as lines."""
        return self.stdout_text().splitlines()

    def log_records(self):
        """The app's JSON log lines (one object per line) from stdout; other lines skipped."""
        records = []
        for line in self.stdout_lines():
            if line.startswith("{"):
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    records.append(record)
        return records

    def wait_for_log(self, predicate, count=1, timeout=10.0):
        """Wait until ``count`` log records match ``predicate``; return them."""

        def matching():
            found = [r for r in self.log_records() if predicate(r)]
            return found if len(found) >= count else None

        return wait_for(matching, timeout, message=f"fewer than {count} matching log records")
