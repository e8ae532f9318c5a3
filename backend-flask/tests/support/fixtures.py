"""pytest plugin (``pytest_plugins = ["tests.support.fixtures"]``): the stand-ins as fixtures.

- ``otlp_receiver``, ``xray_listener``, ``rollbar_receiver``: fresh per test, in ``ok`` mode. A test
  using ``xray_listener`` fails if the listener got a document X-Ray would refuse.
- ``moto_logs``: one moto server for the session (starting moto is the slow part); isolate tests
  with ``log_group`` (a unique name per test).
- ``cognito_pool``: the local Cognito pool (local_cognito.py) on the session's moto, with the seed users.
- ``stand_ins``: all four stand-ins for a module's app server, with ``env`` pointing an app at them.
- ``app_server_factory``: ``app_server_factory(env, workers=1, **kwargs)`` starts an ``AppServer``
  logging under the test's tmp_path; every server it started is stopped at teardown.
- ``postgres_server``: the PostgreSQL server of the session, shared by the workers of a parallel
  run (see tests/support/postgres.py);
  ``postgres_url``: a new database on it for one test, dropped afterwards;
  ``postgres_cluster``: a private cluster on a random port that a test may stop and start.
"""

import os
from types import SimpleNamespace

import pytest

from cruddur.config import Config
from tests.support.app_server import AppServer
from tests.support.moto_logs import MotoLogs, unique_log_group
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.postgres import PostgresCluster, create_database, drop_database, find_server, shared_server
from tests.support.rollbar_receiver import RollbarReceiver
from tests.support.xray_listener import XRayListener


@pytest.fixture
def otlp_receiver():
    """An OTLP/HTTP receiver on a fresh loopback port."""
    with OTLPReceiver() as receiver:
        yield receiver


@pytest.fixture
def xray_listener():
    """An X-Ray daemon stand-in (UDP) on a fresh loopback port; no document it gets may be one X-Ray refuses."""
    with XRayListener() as listener:
        yield listener
        assert listener.rejected() == [], "documents X-Ray would refuse"


@pytest.fixture
def rollbar_receiver():
    """A Rollbar API stand-in on a fresh loopback port."""
    with RollbarReceiver() as receiver:
        yield receiver


def seeded_config(database_url: str) -> Config:
    """The tests' configuration: every integration off, the seed data written to `database_url`."""
    return Config.from_env({}).replace(env="test", database_url=database_url, code_version="test", seed_data=True)


@pytest.fixture(scope="session")
def moto_logs():
    """moto as the CloudWatch Logs endpoint, shared by the session."""
    with MotoLogs() as logs:
        yield logs


@pytest.fixture(scope="session")
def cognito_pool(moto_logs):
    """The local user pool, app client and seed users (bin/local-cognito's), on the session's moto."""
    from local_cognito import bootstrap

    return bootstrap(moto_logs.moto_url)


@pytest.fixture(scope="module")
def stand_ins(moto_logs):
    """OTLP, X-Ray, Rollbar and CloudWatch Logs stand-ins shared by a module, and the app's ``env`` for them
    (add ``ROLLBAR_ACCESS_TOKEN`` to turn Rollbar on)."""
    with OTLPReceiver() as otlp, XRayListener() as xray, RollbarReceiver() as rollbar:
        group = unique_log_group()
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
            "AWS_XRAY_DAEMON_ADDRESS": xray.daemon_address,
            "ROLLBAR_ENDPOINT": rollbar.endpoint,
            "CLOUDWATCH_LOG_GROUP": group,
            **moto_logs.env(),
        }
        yield SimpleNamespace(otlp=otlp, xray=xray, rollbar=rollbar, moto=moto_logs, log_group=group, env=env)


@pytest.fixture
def log_group():
    """A CloudWatch log group name unique to this test."""
    return unique_log_group()


@pytest.fixture
def app_server_factory(tmp_path):
    """Start the real app under gunicorn; all servers started here are stopped after the test.

    A test asks for it after the stand-ins its servers send to: fixtures end in reverse order, so the
    servers stop (and flush) while the stand-ins still answer, not into closed ports for seconds.
    """
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
def postgres_server(tmp_path_factory):
    """Admin URL of the session's PostgreSQL server (a throwaway cluster if none is running).

    The workers of a pytest-xdist run share one: their temporary directories have one parent.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        with shared_server(tmp_path_factory.getbasetemp().parent / "postgres-server") as url:
            yield url
        return
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
