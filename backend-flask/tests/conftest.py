"""Fixtures: a fresh app on a fresh database per test (Flask tutorial style), on SQLite and on
PostgreSQL: every test that uses `config`, `app` or `client` runs once on each."""

from __future__ import annotations

import pytest

from cruddur import create_app
from cruddur.config import Config
from tests.support.fixtures import seeded_config

pytest_plugins = ["tests.support.fixtures"]


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
