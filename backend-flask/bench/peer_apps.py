"""WSGI entries for the peer agents that are set up in code: Sentry and Elastic APM, as their Flask docs show.

    gunicorn -c gunicorn.conf.py 'bench.peer_apps:sentry()'    (from .venv-bench, started by `python -m bench`)
    gunicorn -c gunicorn.conf.py 'bench.peer_apps:elastic()'

Both build the same Cruddur app with CRUDDUR_TELEMETRY=off (no integration of its own), then:
- Sentry: ``sentry_sdk.init(traces_sample_rate=1.0)`` before the app is built (the DSN and the
  environment from SENTRY_DSN and SENTRY_ENVIRONMENT; the Flask integration turns itself on);
  ``transport_queue_size`` from BENCH_SENTRY_TRANSPORT_QUEUE_SIZE when set (the SDK's default, 100,
  otherwise);
- Elastic APM: ``ElasticAPM(app)``, configured by the ELASTIC_APM_* variables.

ddtrace and OpenTelemetry's zero-code agent need no code: they wrap ``gunicorn ... app:app``.
"""

from __future__ import annotations

import os

from cruddur import create_app
from cruddur.config import Config

SENTRY_QUEUE_ENV = "BENCH_SENTRY_TRANSPORT_QUEUE_SIZE"


def _config() -> Config:
    config = Config.from_env()
    if config.telemetry_on:
        raise RuntimeError("bench.peer_apps needs CRUDDUR_TELEMETRY=off: the agent replaces the app's own telemetry")
    return config


def sentry():
    """The app under sentry-sdk, every request a transaction."""
    import sentry_sdk

    options = {"traces_sample_rate": 1.0}
    if os.environ.get(SENTRY_QUEUE_ENV):
        options["transport_queue_size"] = int(os.environ[SENTRY_QUEUE_ENV])
    sentry_sdk.init(**options)
    return create_app(_config())


def elastic():
    """The app under the Elastic APM agent."""
    from elasticapm.contrib.flask import ElasticAPM

    app = create_app(_config())
    ElasticAPM(app)
    return app
