"""AWS X-Ray, by `daemon` (the X-Ray SDK's segments over UDP, the default) or `otlp` (signed spans).

Each transport imports its SDK only when chosen. Whichever runs, and when neither does,
`propagation` continues a caller's `X-Amzn-Trace-Id` and sends it on.
"""

from __future__ import annotations

import logging

from flask import Flask

from .. import register_off

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
        return register_off(app, NAME, "AWS_XRAY_DAEMON_ADDRESS is not set", log)
    from . import daemon

    return daemon.init_app(app)
