"""AppServer runs a WSGI app under the project's gunicorn.conf.py, finds its workers and stops it with a signal.

It runs ``tests/support/demo_wsgi.py`` so the runner is proven independently of the real app's state;
the real app is exercised through the same runner by the integration tests.
"""

import signal

import pytest
import requests

from tests.support.app_server import AppServer, rss_bytes

DEMO = "tests.support.demo_wsgi:app"


def test_runs_workers_on_loopback_and_stops_on_sigterm(app_server_factory):
    server = app_server_factory({"DEMO_MARKER": "1"}, workers=2, app=DEMO)
    assert server.url.startswith("http://127.0.0.1:")
    assert server.startup_seconds < 20
    workers = server.wait_for_workers()
    assert len(workers) == 2 and server.pid not in workers
    assert all(rss > 0 for rss in server.worker_rss().values())

    answering = {requests.get(server.url + "/echo", timeout=5).json()["pid"] for _ in range(20)}
    assert answering <= set(workers)
    records = server.wait_for_log(lambda r: r.get("path") == "/echo", count=20)
    assert all(r["status"] == 200 for r in records)
    assert any("Booting worker" in line for line in server.stderr_text().splitlines())

    env = server.build_env()
    assert env["GUNICORN_BIND"] == f"127.0.0.1:{server.port}"
    assert env["GUNICORN_WORKERS"] == "2" and env["DEMO_MARKER"] == "1"

    duration, returncode = server.stop()
    assert returncode == 0
    assert duration < 35
    assert server.stop() == (duration, returncode)
    assert all(rss_bytes(pid) is None for pid in workers)
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/echo", timeout=2)


def test_vendor_variables_from_the_shell_do_not_leak(monkeypatch, tmp_path):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://api.honeycomb.io")
    monkeypatch.setenv("ROLLBAR_ACCESS_TOKEN", "real-token")
    monkeypatch.setenv("DATABASE_URL", "sqlite:////somewhere/else.db")
    server = AppServer({"ROLLBAR_ENDPOINT": "http://127.0.0.1:9/api/1/"}, log_dir=tmp_path)
    server.port = 12345
    env = server.build_env()
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env and "ROLLBAR_ACCESS_TOKEN" not in env
    assert env["DATABASE_URL"] == f"sqlite:///{tmp_path / 'cruddur.db'}"
    assert env["ROLLBAR_ENDPOINT"] == "http://127.0.0.1:9/api/1/"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_a_server_that_cannot_boot_fails_fast_with_its_stderr(tmp_path):
    server = AppServer({}, app="tests.support.no_such_module:app", log_dir=tmp_path, startup_timeout=20)
    with pytest.raises(RuntimeError, match="no_such_module"):
        server.start()
    assert server.process.poll() is not None


def test_sigkill_after_the_timeout_when_sigterm_is_ignored(app_server_factory):
    server = app_server_factory({}, workers=1, app=DEMO)
    # SIGWINCH is ignored by a non-daemon gunicorn master: the stop has to fall back to SIGKILL.
    duration, returncode = server.stop(sig=signal.SIGWINCH, timeout=0.5)
    assert server.killed
    assert returncode == -signal.SIGKILL
    assert duration < 15
