"""Fixtures: a fresh app on a temporary SQLite database per test (Flask tutorial style)."""

from __future__ import annotations

import pytest

from cruddur import create_app
from cruddur.config import Config

pytest_plugins = ["tests.support.fixtures"]


@pytest.fixture
def config(tmp_path) -> Config:
    """A test configuration with every integration off."""
    return Config.from_env({}).replace(
        env="test", database_url=f"sqlite:///{tmp_path / 'cruddur.db'}", code_version="test"
    )


@pytest.fixture
def app(config):
    """The app, built from `config`."""
    return create_app(config)


@pytest.fixture
def client(app):
    """A test client for the app."""
    return app.test_client()
