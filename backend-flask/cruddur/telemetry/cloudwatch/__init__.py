"""CloudWatch Logs: the app's JSON log lines, by one of two transports.

`api` (default): watchtower's PutLogEvents. `otlp`: OTLP/HTTP log records, SigV4-signed. On when
CLOUDWATCH_LOG_GROUP is set; each module imports its SDK only when chosen.
"""

from __future__ import annotations

from flask import Flask

NAME = "cloudwatch"


def init_app(app: Flask) -> bool:
    """The transport CRUDDUR_CLOUDWATCH_TRANSPORT names."""
    config = app.extensions["cruddur.config"]
    if config.cloudwatch_transport == "otlp":
        from . import otlp

        return otlp.init_app(app)
    from . import api

    return api.init_app(app)
