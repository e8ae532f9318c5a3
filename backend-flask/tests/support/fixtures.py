"""pytest plugin (``pytest_plugins = ["tests.support.fixtures"]``): the stand-ins as fixtures.

- ``otlp_receiver``, ``xray_listener``, ``rollbar_receiver``: fresh per test, in ``ok`` mode.
- ``moto_logs``: one moto server for the session (starting moto is the slow part); isolate tests
  with ``log_group`` (a unique name per test).
- ``app_server_factory``: ``app_server_factory(env, workers=1, **kwargs)`` starts an ``AppServer``
  logging under the test's tmp_path; every server it started is stopped at teardown.
- ``postgres_server``: the PostgreSQL server of the session (see tests/support/postgres.py);
  ``postgres_url``: a new database on it for one test, dropped afterwards;
  ``postgres_cluster``: a private cluster on a random port that a test may stop and start.
"""

import pytest

from tests.support.app_server import AppServer
from tests.support.moto_logs import MotoLogs, unique_log_group
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.postgres import PostgresCluster, create_database, drop_database, find_server
from tests.support.rollbar_receiver import RollbarReceiver
from tests.support.xray_listener import XRayListener


@pytest.fixture
def otlp_receiver():
    """An OTLP/HTTP receiver on a fresh loopback port."""
    with OTLPReceiver() as receiver:
        yield receiver


@pytest.fixture
def xray_listener():
    """An X-Ray daemon stand-in (UDP) on a fresh loopback port."""
    with XRayListener() as listener:
        yield listener


@pytest.fixture
def rollbar_receiver():
    """A Rollbar API stand-in on a fresh loopback port."""
    with RollbarReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def moto_logs():
    """moto as the CloudWatch Logs endpoint, shared by the session."""
    with MotoLogs() as logs:
        yield logs


@pytest.fixture
def log_group():
    """A CloudWatch log group name unique to this test."""
    return unique_log_group()


@pytest.fixture
def app_server_factory(tmp_path):
    """Start the real app under gunicorn; all servers started here are stopped after the test."""
    servers = []

    def start(env=None, workers=1, **kwargs):
        index = len(servers)
        kwargs.setdefault("log_dir", tmp_path / f"app-server-{index}")
        server = AppServer(env, workers=workers, **kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server():
    """Admin URL of the session's PostgreSQL server (a throwaway cluster if none is running)."""
    url, cluster = find_server()
    yield url
    if cluster is not None:
        cluster.destroy()


@pytest.fixture
def postgres_url(postgres_server):
    """A new PostgreSQL database for this test; dropped at teardown."""
    url = create_database(postgres_server)
    yield url
    drop_database(postgres_server, url)


@pytest.fixture(scope="module")
def postgres_cluster():
    """A private PostgreSQL cluster (random port) that tests may stop and restart."""
    with PostgresCluster() as cluster:
        yield cluster
