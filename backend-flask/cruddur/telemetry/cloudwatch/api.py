"""CloudWatch Logs: the same JSON log lines as stdout, shipped by watchtower when CLOUDWATCH_LOG_GROUP is set.

The handler lives in telemetry/cloudwatch_handler.py; it and boto3 are imported only when the
integration is on.
"""

from __future__ import annotations

import logging
import warnings

from flask import Flask

from ...config import Config
from ..core.shutdown import on_shutdown
from ..core.status import IntegrationStatus, announce, register

log = logging.getLogger(__name__)
NAME = "cloudwatch"


def init_app(app: Flask) -> bool:
    """Ship every log line to CLOUDWATCH_LOG_GROUP when it is set. Returns whether it is on."""
    config: Config = app.extensions["cruddur.config"]
    group = config.cloudwatch_log_group
    region = _region(config) if group else None
    if not group:
        status = IntegrationStatus(NAME, False, "CLOUDWATCH_LOG_GROUP is not set")
    elif not region:
        status = IntegrationStatus(NAME, False, "CLOUDWATCH_LOG_GROUP is set but boto3 finds no region")
    else:
        status = IntegrationStatus(NAME, True, f"log group {group} in {region}, one stream per worker")
    register(app, status)
    if not status.enabled:
        return announce(log, status)

    import watchtower

    from .handler import BoundedCloudWatchHandler

    # watchtower reports each failed batch through `warnings`; the status counts them and the
    # handler logs them, rate-limited.
    warnings.filterwarnings("ignore", category=watchtower.WatchtowerWarning)
    handler = BoundedCloudWatchHandler(group, config.service_name, status, region=region)
    logging.getLogger().addHandler(handler)
    app.extensions["cruddur.cloudwatch"] = handler
    # Priority 90: logs go last, so the other integrations' shutdown lines are shipped too.
    on_shutdown(app, priority=90, name=NAME, flush=handler.shutdown)
    return announce(log, status)


def _region(config: Config) -> str | None:
    """boto3's own resolution (AWS_DEFAULT_REGION, config files; no network), then AWS_REGION."""
    import boto3

    return boto3.session.Session().region_name or config.aws_region or None
