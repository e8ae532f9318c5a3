"""Fixtures: a fresh app on a fresh database per test (Flask tutorial style), on SQLite and on
PostgreSQL: every test that uses `config`, `app` or `client` runs once on each."""

from __future__ import annotations

import os

import pytest

from cruddur import create_app
from cruddur.config import Config
from tests.support.fixtures import seeded_config

pytest_plugins = ["tests.support.fixtures"]

# An app built here and thrown away keeps the SDK's periodic metric export running for the rest of the
# process (every 60 s by default), to a receiver whose port is closed by then and may belong to
# another test's server: a traced stray POST /v1/metrics once put a server's counts one off. Tests
# that check metrics flush them; the servers tests start get their own OTEL_* settings.
os.environ.setdefault("OTEL_METRIC_EXPORT_INTERVAL", str(24 * 3600 * 1000))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """A new, empty database: a SQLite file, or a PostgreSQL database made for this test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cruddur.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def config(database_url) -> Config:
    """A test configuration with every integration off and the seed data written."""
    return seeded_config(database_url)


@pytest.fixture
def app(config):
    """The app, built from `config`."""
    return create_app(config)


@pytest.fixture
def client(app):
    """A test client for the app."""
    return app.test_client()
