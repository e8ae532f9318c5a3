"""Every vendor stand-in in one process, for the benchmark and soak runs.

    python -m tests.support.sinks --otlp-port 0 --xray-port 0 --rollbar-port 0 --moto-port 0 [--mode ok]

prints one JSON line when ready::

    {"otlp_url": ..., "otlp_traces_url": ..., "xray_daemon_address": "127.0.0.1:P",
     "rollbar_endpoint": ".../api/1/", "cloudwatch_endpoint": ..., "moto_url": ..., "control_url": ...,
     "env": {variables that point the app at these sinks}}

and on SIGTERM/SIGINT prints one JSON summary line (see ``summary``) and exits 0.

The stand-ins of the agents the benchmark compares with run too: a Datadog trace agent, a Sentry
envelope endpoint and an Elastic APM Server (``peers`` in the addresses); ``GET /peers`` on the
control URL counts what each received, and what the OTLP receiver received, per trace and path.

The AWS OTLP stand-in (X-Ray and CloudWatch Logs over OTLP, SigV4-checked) runs too; ``aws_env``
holds the variables for the app's OTLP transports (its credentials, region and endpoints), and the
session token ``EXPIRED_SESSION_TOKEN`` is refused as expired.

``--mode`` applies to the HTTP sinks (OTLP, Rollbar, the proxy in front of moto, AWS OTLP); for X-Ray, ``refuse``
closes the UDP port and ``blackhole`` reads and drops datagrams. ``control_url`` accepts
``GET /stats`` (the summary) and ``POST /mode`` with ``{"sink": "otlp"|"rollbar"|"cloudwatch"|"xray"|"all",
"mode": ...}`` to change faults while running (``aws`` for the AWS OTLP stand-in).
"""

import argparse
import json
import signal
import sys
import threading
from collections import Counter

from tests.support.aws_otlp_endpoint import AWSOTLPEndpoint
from tests.support.datadog_agent import DatadogAgent
from tests.support.elastic_apm_intake import ElasticAPMIntake
from tests.support.faulty_http import MODES, BadRequest, FaultyHTTPServer, Response
from tests.support.moto_logs import MotoLogs
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.rollbar_receiver import RollbarReceiver
from tests.support.sentry_envelope import SentryEnvelopeEndpoint
from tests.support.trace_tally import TraceTally
from tests.support.xray_listener import XRayListener

_XRAY_MODE = {"refuse": "refuse", "blackhole": "drop"}
EXPIRED_SESSION_TOKEN = "cruddur-expired-session-token"


class Sinks:
    """The four stand-ins, started and stopped together."""

    def __init__(self, otlp_port=0, xray_port=0, rollbar_port=0, moto_port=0, mode="ok", delay=2.0, retry_after=30):
        """Configure all four (moto behind a fault proxy whose port is ``moto_port``)."""
        http = {"mode": mode, "delay": delay, "retry_after": retry_after}
        self.otlp = OTLPReceiver(port=otlp_port, **http)
        self.rollbar = RollbarReceiver(port=rollbar_port, **http)
        self.xray = XRayListener(port=xray_port, mode=_XRAY_MODE.get(mode, "ok"))
        self.moto = MotoLogs(faults=True, proxy_port=moto_port)
        self.aws = AWSOTLPEndpoint(**http)
        self.aws.expired_tokens.add(EXPIRED_SESSION_TOKEN)
        self.datadog = DatadogAgent()
        self.sentry = SentryEnvelopeEndpoint()
        self.elastic = ElasticAPMIntake()
        self._http_settings = http

    def start(self):
        """Start everything; return self."""
        self.moto.start()
        proxy = self.moto.proxy
        proxy.mode = self._http_settings["mode"]
        proxy.delay = self._http_settings["delay"]
        proxy.retry_after = self._http_settings["retry_after"]
        self.otlp.start()
        self.rollbar.start()
        self.xray.start()
        self.aws.start()
        for peer in (self.datadog, self.sentry, self.elastic):
            peer.start()
        return self

    def stop(self):
        """Stop everything."""
        for sink in (self.otlp, self.rollbar, self.xray, self.moto, self.aws, self.datadog, self.sentry, self.elastic):
            sink.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def set_mode(self, sink, mode):
        """Change one sink's fault mode (``all`` for every sink)."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        targets = ["otlp", "rollbar", "cloudwatch", "xray", "aws"] if sink == "all" else [sink]
        for target in targets:
            if target == "otlp":
                self.otlp.mode = mode
            elif target == "rollbar":
                self.rollbar.mode = mode
            elif target == "cloudwatch":
                self.moto.mode = mode
            elif target == "xray":
                self.xray.mode = _XRAY_MODE.get(mode, "ok")
            elif target == "aws":
                self.aws.mode = mode
            else:
                raise ValueError(f"unknown sink {target!r}")

    def addresses(self):
        """Where each sink listens, plus the app environment that points at them."""
        return {
            "otlp_url": self.otlp.url,
            "otlp_traces_url": self.otlp.traces_url,
            "xray_daemon_address": self.xray.daemon_address,
            "rollbar_endpoint": self.rollbar.endpoint,
            "cloudwatch_endpoint": self.moto.endpoint,
            "moto_url": self.moto.moto_url,
            "env": {
                "OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp.endpoint,
                "AWS_XRAY_DAEMON_ADDRESS": self.xray.daemon_address,
                "ROLLBAR_ENDPOINT": self.rollbar.endpoint,
                **self.moto.env(),
            },
            "aws_env": self.aws.env(),
            "peers": {
                "datadog_agent_url": self.datadog.url,
                "sentry_url": self.sentry.url,
                "sentry_public_key": self.sentry.public_key,
                "elastic_apm_url": self.elastic.url,
            },
        }

    def peers(self):
        """What each agent's stand-in decoded, and the OTLP receiver's spans as traces, per path."""
        return {
            "ddtrace": self.datadog.summary(),
            "sentry": self.sentry.summary(),
            "elastic": self.elastic.summary(),
            "otlp": otlp_tally(self.otlp.spans()).summary(),
        }

    def summary(self):
        """Counts of what arrived: spans, segments, refused X-Ray documents, Rollbar items, log events, requests."""
        spans = self.otlp.spans()
        segments = self.xray.segments()
        groups = {}
        try:
            for group in self.moto.log_groups():
                groups[group] = len(self.moto.events(group))
        except Exception as error:  # moto may be unreachable only if it crashed; report, don't hide counts
            groups = {"error": str(error)}
        return {
            "spans": len(spans),
            "server_spans": sum(1 for s in spans if s["kind"] == "SERVER"),
            "spans_by_service": dict(Counter(s["resource"].get("service.name", "") for s in spans)),
            "server_spans_by_service": dict(
                Counter(s["resource"].get("service.name", "") for s in spans if s["kind"] == "SERVER")
            ),
            "segments": len(segments),
            "segments_by_name": dict(Counter(d.get("name", "") for d in segments)),
            "xray_documents": len(self.xray.documents()),
            "xray_rejected": self.xray.rejected_count,
            "rollbar_items": self.rollbar.item_count,
            "log_events": sum(v for v in groups.values() if isinstance(v, int)),
            "log_events_by_group": groups,
            "requests": {
                "otlp": self.otlp.counts_by_mode(),
                "rollbar": self.rollbar.counts_by_mode(),
                "cloudwatch": self.moto.proxy.counts_by_mode(),
                "xray_datagrams": self.xray.datagram_count,
                "aws": self.aws.counts_by_mode(),
            },
            "peer_traces": {
                "ddtrace": {name: e["traces"] for name, e in self.datadog.summary()["services"].items()},
                "sentry": {name: e["traces"] for name, e in self.sentry.summary().items()},
                "elastic": {name: e["traces"] for name, e in self.elastic.summary()["services"].items()},
            },
            "aws": {
                "spans": len(self.aws.spans()),
                "server_spans": sum(1 for s in self.aws.spans() if s["kind"] == "SERVER"),
                "log_records": len(self.aws.logs()),
                "denied": [d["type"] for d in self.aws.denied()],
                # A sample of the signatures received, to prove none of them was ever logged.
                "signatures": [
                    r.headers["authorization"].rsplit("Signature=", 1)[-1]
                    for r in self.aws.requests()[-50:]
                    if "authorization" in r.headers
                ],
            },
        }


class ControlServer(FaultyHTTPServer):
    """``GET /stats`` and ``POST /mode`` for a running ``Sinks``."""

    name = "sinks-control"

    def __init__(self, sinks, **kwargs):
        """Control ``sinks``."""
        super().__init__(**kwargs)
        self.sinks = sinks

    def handle(self, request):
        """Serve the two control calls."""
        if request.method == "GET" and request.path == "/stats":
            return Response.json(200, self.sinks.summary())
        if request.method == "GET" and request.path == "/peers":
            return Response.json(200, self.sinks.peers())
        if request.method == "POST" and request.path == "/mode":
            try:
                body = request.json()
                self.sinks.set_mode(body.get("sink", "all"), body["mode"])
            except (ValueError, KeyError, AttributeError) as error:
                raise BadRequest(str(error)) from error
            return Response.json(200, {"ok": True})
        return super().handle(request)


def otlp_tally(spans):
    """OTLP spans grouped into traces per service: spans and SQL spans per request, by path."""
    traces = {}
    for span in spans:
        traces.setdefault((span["resource"].get("service.name", ""), span["trace_id"]), []).append(span)
    tally = TraceTally()
    for (service, _), trace in traces.items():
        roots = [s for s in trace if s["kind"] == "SERVER"]
        if not roots:
            tally.add_other(service)
            continue
        root = roots[0]
        sql = [s for s in trace if "db.system" in s["attributes"] or "db.system.name" in s["attributes"]]
        attributes = root["attributes"]
        path = attributes.get("url.path") or attributes.get("http.target") or attributes.get("http.route") or ""
        tally.add(
            service,
            path.split("?")[0],
            spans=len(trace),
            sql_spans=len(sql),
            request_span={"name": root["name"], "attributes": attributes, "scope": root["scope"]},
            sql_span={k: sql[0][k] for k in ("name", "attributes", "scope")} if sql else None,
            span_names=[s["name"] for s in trace],
        )
    return tally


def main(argv=None):
    """Run until SIGTERM/SIGINT; print addresses, then the summary."""
    parser = argparse.ArgumentParser(description="Run every vendor stand-in on loopback.")
    for name in ("otlp", "xray", "rollbar", "moto", "control"):
        parser.add_argument(f"--{name}-port", type=int, default=0)
    parser.add_argument("--mode", choices=MODES, default="ok")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds per answer in slow mode")
    parser.add_argument("--retry-after", type=int, default=30, help="Retry-After seconds in status429 mode")
    args = parser.parse_args(argv)

    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    sinks = Sinks(
        args.otlp_port, args.xray_port, args.rollbar_port, args.moto_port, args.mode, args.delay, args.retry_after
    )
    with sinks, ControlServer(sinks, port=args.control_port) as control:
        print(json.dumps({**sinks.addresses(), "control_url": control.url}), flush=True)
        while not done.wait(0.2):
            pass
        print(json.dumps(sinks.summary()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
