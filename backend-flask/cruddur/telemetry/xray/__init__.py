"""AWS X-Ray: the request's segment with the OpenTelemetry trace id, by one of two transports.

`daemon` (default): the X-Ray SDK's segments to the X-Ray daemon over UDP, on when
AWS_XRAY_DAEMON_ADDRESS is set. `otlp`: the OpenTelemetry spans, SigV4-signed, to X-Ray's OTLP
endpoint. Each module imports its SDK only when chosen. Whichever runs, and also when neither does,
`propagation` continues a caller's `X-Amzn-Trace-Id` (a load balancer sends one) and sends it on.
"""

from __future__ import annotations

import logging

from flask import Flask

NAME = "xray"
log = logging.getLogger(__name__)


def init_app(app: Flask) -> bool:
    """The transport CRUDDUR_XRAY_TRANSPORT names, or off when the daemon transport has no address."""
    config = app.extensions["cruddur.config"]
    from . import propagation

    propagation.init_app(app)
    if config.xray_transport == "otlp":
        from . import otlp

        return otlp.init_app(app)
    if not config.xray_daemon_address:
        from .. import disabled

        return disabled(app, NAME, "AWS_XRAY_DAEMON_ADDRESS is not set", log)
    from . import daemon

    return daemon.init_app(app)
