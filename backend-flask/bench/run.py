"""One benchmark run: a gunicorn per configuration, all up at once, load phases interleaved.

Every configuration gets its own server (one sync worker) for the whole run, all reporting to one
sinks process. The schedule visits the servers round-robin, one short load phase at a time, in a
rotated order each repeat, so machine noise (other processes, CPU frequency) lands on every
configuration alike. A phase's CPU is the worker's CPU from the start of that phase to the start of
its next one: export and shipping for a phase's requests (batched every 5 s, on other threads)
finish in the gap, which is kept longer than the batching interval.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.support.app_server import AppServer
from tests.support.postgres import create_database, drop_database, find_server

from .load import LoadGenerator, LoadResult
from .peers import PEERS, ensure_venv, gunicorn_command, peer_env
from .probes import AppLog, Sinks, cpu_seconds, rss_mb, wait_until
from .stock_app import STATS_PATH as STOCK_STATS_PATH

CONFIGS = (
    "off",
    "bare",
    "otlp",
    "metrics",
    "xray",
    "xray-otlp",
    "cloudwatch",
    "cloudwatch-otlp",
    "rollbar",
    "all",
    "stock",
    *PEERS,
)
# `python -m bench --peers`: the app without telemetry, ours with one vendor and with four, stock, the agents.
PEER_RUN = ("off", "otlp", "all", "stock", *PEERS)
ALL_FOUR = ("otlp", "xray", "cloudwatch", "rollbar")
INTEGRATIONS = {
    "off": (),
    "bare": (),
    "otlp": ("otlp",),
    "metrics": ("otlp", "metrics"),  # traces plus request metrics: its cost is metrics / otlp
    "xray": ("xray",),
    "xray-otlp": ("xray-otlp",),  # CRUDDUR_XRAY_TRANSPORT=otlp, to the SigV4-checking stand-in
    "cloudwatch": ("cloudwatch",),
    "cloudwatch-otlp": ("cloudwatch-otlp",),  # CRUDDUR_CLOUDWATCH_TRANSPORT=otlp
    "rollbar": ("rollbar",),
    "all": ALL_FOUR,
    "stock": ALL_FOUR,
    **{peer: () for peer in PEERS},  # the app's own telemetry off; the agent's stand-in in the sinks
}
# `stock` is the same app built with CRUDDUR_TELEMETRY=off and wired as the course does (stock_app.py).
STOCK = "stock"
STOCK_SERVICE = "backend-flask-stock"
OUR_SERVICE = "backend-flask"
DATABASES = ("sqlite", "postgresql")
# The SDK's default export interval: the per-request cost is recording; one export a minute amortizes.
METRICS_EXPORT_INTERVAL_MS = "60000"
NEW_CRUD = json.dumps({"message": "Benchmarking the cost of telemetry, one crud at a time.", "ttl": "7-days"})
# name: (method, path, body)
ENDPOINTS = {
    "home": ("GET", "/api/activities/home", ""),
    "post": ("POST", "/api/activities", NEW_CRUD),
}
ROLLBAR_TOKEN = "bench0000000000000000000000000000"
# The batch span processor exports every 5 s and watchtower sends every 5 s: a phase's last
# records leave the worker within that. Consecutive phases of one server are at least GAP apart.
BATCH_INTERVAL = 5.0
GAP = BATCH_INTERVAL + 1.5
DRAIN_TIMEOUT = 30.0


@dataclass
class Settings:
    """How long and how often."""

    repeats: int = 5
    duration: float = 4.0
    connections: int = 4
    warmup_posts: int = 120
    warmup_gets: int = 40
    configs: tuple[str, ...] = CONFIGS
    endpoints: tuple[str, ...] = tuple(ENDPOINTS)
    out_dir: Path = Path("bench-output")
    load_tool: str = "wrk"
    database: str = "sqlite"  # or "postgresql": a new database per server, on the tests' server


@dataclass
class Sample:
    """One configuration, one endpoint, one repeat."""

    config: str
    endpoint: str
    repeat: int
    cpu_ms_per_request: float
    rps: float
    p50_ms: float
    p99_ms: float
    rss_mb: float
    sent: int
    served: int
    completed: int
    errors: int
    cpu_seconds: float
    load: dict = field(default_factory=dict)


def app_env(config: str, sinks: Sinks | None) -> dict:
    """The environment that turns on exactly the integrations of `config`, pointed at the sinks."""
    if config in PEERS:
        return peer_env(config, sinks.addresses)
    on = INTEGRATIONS[config]
    env = {"CRUDDUR_TELEMETRY": "off"} if config in ("off", STOCK) else {}
    if config == STOCK:
        env["OTEL_SERVICE_NAME"] = STOCK_SERVICE
    if not on:
        return env
    sink_env = sinks.env
    if "otlp" in on:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink_env["OTEL_EXPORTER_OTLP_ENDPOINT"]
        env["OTEL_METRICS_EXPORTER"] = "otlp" if "metrics" in on else "none"
        env["OTEL_METRIC_EXPORT_INTERVAL"] = METRICS_EXPORT_INTERVAL_MS
    if "xray-otlp" in on or "cloudwatch-otlp" in on:
        env.update(sinks.addresses["aws_env"])
    if "xray-otlp" in on:
        env["CRUDDUR_XRAY_TRANSPORT"] = "otlp"
    if "cloudwatch-otlp" in on:
        env["CRUDDUR_CLOUDWATCH_TRANSPORT"] = "otlp"
        env["CLOUDWATCH_LOG_GROUP"] = log_group(config)
    if "xray" in on:
        env["AWS_XRAY_DAEMON_ADDRESS"] = sink_env["AWS_XRAY_DAEMON_ADDRESS"]
    if "cloudwatch" in on:
        env["CLOUDWATCH_LOG_GROUP"] = log_group(config)
        env.update({k: v for k, v in sink_env.items() if k.startswith("AWS_") and k != "AWS_XRAY_DAEMON_ADDRESS"})
    if "rollbar" in on:
        env["ROLLBAR_ACCESS_TOKEN"] = ROLLBAR_TOKEN
        env["ROLLBAR_ENDPOINT"] = sink_env["ROLLBAR_ENDPOINT"]
    return env


def server_command(config: str) -> dict:
    """AppServer's arguments for `config`: its WSGI app; for a peer, .venv-bench's gunicorn under the agent."""
    if config in PEERS:
        gunicorn, launcher = gunicorn_command(config)
        return {"app": PEERS[config].app, "gunicorn": gunicorn, "launcher": launcher}
    return {"app": "bench.stock_app:build()" if config == STOCK else "app:app"}


def log_group(config: str) -> str:
    """One CloudWatch log group per configuration, so each can be counted on its own."""
    return f"cruddur-bench-{config}"


def request_json(url: str, method: str = "GET", body: str = "") -> dict | list:
    """One request with the standard library; the decoded JSON answer."""
    data = body.encode() if body else None
    headers = {"Content-Type": "application/json"} if body else {}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as response:
        return json.loads(response.read())


class Server:
    """One configuration's gunicorn (one worker), its log, and what the benchmark measured on it."""

    def __init__(self, config: str, sinks: Sinks | None, settings: Settings, database_url: str = ""):
        self.config = config
        self.on = INTEGRATIONS[config]
        self.settings = settings
        env = app_env(config, sinks) | ({"DATABASE_URL": database_url} if database_url else {})
        self.app = AppServer(env, workers=1, log_dir=settings.out_dir / "logs" / config, **server_command(config))
        self.cloudwatch = sinks.cloudwatch(log_group(config)) if "cloudwatch" in self.on else None
        self.worker = None
        self.log = None
        self.last_phase_end = 0.0
        self.pending = None  # (endpoint, repeat, cpu at start, served before, LoadResult) until the next phase
        self.samples: list[Sample] = []
        self.checks: list[dict] = []
        self.health: dict = {}

    def start(self) -> None:
        """Start gunicorn and warm up: imports, caches, and a feed at its 100-item limit."""
        self.app.start()
        (self.worker,) = self.app.wait_for_workers(1)
        self.log = AppLog(self.app.stdout_path)
        post, home = ENDPOINTS["post"], ENDPOINTS["home"]
        for _ in range(self.settings.warmup_posts):
            request_json(self.app.url + post[1], "POST", post[2])
        for _ in range(self.settings.warmup_gets):
            request_json(self.app.url + home[1])
        self.last_phase_end = time.monotonic()

    def stop(self) -> None:
        """Stop gunicorn (its workers flush on the way out)."""
        self.app.stop()

    def phase(self, endpoint: str, repeat: int, load: LoadGenerator) -> None:
        """Close the previous phase's books, then drive `endpoint` for the configured time."""
        wait = self.last_phase_end + GAP - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.settle()
        method, path, body = ENDPOINTS[endpoint]
        served_before = self.log.read()[path]
        cpu_before = cpu_seconds(self.worker)
        result = load.run(self.app.url + path, self.settings.duration, self.settings.connections, method, body)
        self.last_phase_end = time.monotonic()
        self.pending = (endpoint, repeat, cpu_before, served_before, result)

    def settle(self) -> None:
        """Record the pending phase: CPU from its start until now (its export tail included)."""
        if self.pending is None:
            return
        endpoint, repeat, cpu_before, served_before, result = self.pending
        self.pending = None
        cpu = cpu_seconds(self.worker) - cpu_before
        served = self.log.read()[ENDPOINTS[endpoint][1]] - served_before
        self.samples.append(_sample(self.config, endpoint, repeat, cpu, served, result, rss_mb(self.worker)))
        # wrk may abandon the requests in flight when time is up (at most one per connection).
        in_flight = result.sent - served
        ok = 0 <= in_flight <= self.settings.connections
        self._check(f"{endpoint} #{repeat + 1}: sent but not served", f"0..{self.settings.connections}", in_flight, ok)
        self._check(f"{endpoint} #{repeat + 1}: client errors", 0, result.errors)

    def _check(self, what: str, expected, actual, ok: bool | None = None) -> None:
        ok = expected == actual if ok is None else ok
        self.checks.append({"check": what, "expected": expected, "actual": actual, "ok": ok})


def _sample(config, endpoint, repeat, cpu: float, served: int, result: LoadResult, rss: float) -> Sample:
    return Sample(
        config=config,
        endpoint=endpoint,
        repeat=repeat,
        cpu_ms_per_request=1000 * cpu / served if served else 0.0,
        rps=result.rps,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        rss_mb=rss,
        sent=result.sent,
        served=served,
        completed=result.completed,
        errors=result.errors,
        cpu_seconds=cpu,
        load=result.to_dict(),
    )


def _service(server: Server) -> str:
    return STOCK_SERVICE if server.config == STOCK else OUR_SERVICE


def drain(servers: list[Server], sinks: Sinks | None) -> bool:
    """Wait until the sinks hold every span and log line the servers have produced so far.

    Stock's CloudWatch handler sends every 60 s (watchtower's default): its events are checked
    after its server has stopped (see `stock_checks`).
    """
    if sinks is None:
        return True
    time.sleep(0.05)
    served = {s.config: dict(s.log.read()) for s in servers}
    spans_expected: Counter[str] = Counter()
    for server in servers:
        if "otlp" in server.on:
            spans_expected[_service(server)] += sum(served[server.config].values())
    aws_spans_expected = sum(sum(served[s.config].values()) for s in servers if "xray-otlp" in s.on)
    # One trace per request from every agent whose queue is not bounded to drop.
    peers_expected = {
        (PEERS[s.config].stand_in, PEERS[s.config].name): sum(served[s.config].values())
        for s in servers
        if s.config in PEERS and not PEERS[s.config].may_drop
    }

    def arrived() -> bool:
        stats = sinks.stats()
        by_service = stats["server_spans_by_service"] if spans_expected or peers_expected else {}
        if any(by_service.get(name, 0) < n for name, n in spans_expected.items()):
            return False
        for (stand_in, name), n in peers_expected.items():
            got = by_service.get(name, 0) if stand_in == "otlp" else stats["peer_traces"][stand_in].get(name, 0)
            if got < n:
                return False
        if aws_spans_expected and stats["aws"]["server_spans"] < aws_spans_expected:
            return False
        return all(
            s.cloudwatch.read()[path] >= n
            for s in servers
            if s.cloudwatch and s.config != STOCK
            for path, n in served[s.config].items()
        )

    return wait_until(arrived, DRAIN_TIMEOUT, interval=0.5)


def loss_checks(servers: list[Server], sinks: Sinks | None) -> dict:
    """Compare what each server answered with what reached the sinks; the app's own drop counters."""
    for server in servers:
        server.health = request_json(server.app.url + "/api/health-check")["integrations"]
    stock = next((s for s in servers if s.config == STOCK), None)
    stock_xray_sent = request_json(stock.app.url + STOCK_STATS_PATH)["xray_sent"] if stock else 0
    drain(servers, sinks)  # the health checks' own spans and log lines
    stats = sinks.stats() if sinks else {}
    totals = {"sinks": {k: v for k, v in stats.items() if k != "log_events_by_group"}}
    checks = totals["checks"] = []
    ours = [s for s in servers if s.config != STOCK]
    otlp = [s for s in ours if "otlp" in s.on]
    if otlp:
        served = sum(s.log.access_total for s in otlp)
        actual = stats["server_spans_by_service"].get(OUR_SERVICE, 0)
        checks.append(_check("OTLP: one server span per request served", served, actual))
        spans = stats["spans_by_service"].get(OUR_SERVICE, 0)
        totals["spans_per_request"] = round(spans / served, 2) if served else None
    aws = [s for s in ours if "xray-otlp" in s.on]
    if aws:
        served = sum(s.log.access_total for s in aws)
        checks.append(
            _check("X-Ray over OTLP: one server span per request served", served, stats["aws"]["server_spans"])
        )
    aws = [s for s in ours if "cloudwatch-otlp" in s.on]
    if aws:
        # Every line the worker logged: access lines and startup lines; at least one per request.
        served = sum(s.log.access_total for s in aws)
        records = stats["aws"]["log_records"]
        check = _check("CloudWatch over OTLP: at least one log record per request served", served, records)
        check["ok"] = records >= served
        checks.append(check)
    xray = [s for s in ours if "xray" in s.on]
    stock_segments = stats.get("segments_by_name", {}).get(STOCK_SERVICE, 0)
    if xray:
        sent = sum(s.health["xray"]["sent"] for s in xray)
        actual = stats["xray_documents"] - stock_segments
        checks.append(_check("X-Ray: documents received == documents the apps sent", sent, actual))
        checks.append(_check("X-Ray: documents the stand-in refused (X-Ray's rules)", 0, stats["xray_rejected"]))
        served = sum(s.log.access_total for s in xray)
        segments = stats["segments_by_name"].get(OUR_SERVICE, 0)
        totals["xray_sampled_share"] = round(segments / served, 3) if served else None
    for server in ours:
        if server.cloudwatch:
            expected = dict(server.log.access_by_path)
            server.cloudwatch.read()  # drain stops reading at the first stand-in that is short
            server._check("CloudWatch: access-log events by path", expected, dict(server.cloudwatch.access_by_path))
        for name, status in server.health.items():
            if status.get("enabled"):
                server._check(f"{name}: dropped (app counter)", 0, status["dropped"])
    if stock is not None:
        stock_checks(stock, stats, stock_xray_sent, totals)
    if sinks is not None:
        totals["traces"] = trace_records(servers, sinks)
    return totals


def _service_traces(peers: dict, stand_in: str, name: str) -> dict:
    found = peers[stand_in]
    found = found.get("services", found) if stand_in in ("ddtrace", "elastic") else found
    return found.get(name) or {"traces": 0, "spans": 0, "sql_spans": 0, "by_path": {}}


def sentry_reports(servers: list[Server], sinks: Sinks | None, totals: dict) -> None:
    """What each Sentry SDK reported discarding, and why: it sends its client reports when it shuts down.

    After the deliveries are counted; its servers stop first (the SDK flushes its queue for up to
    2 s), so `delivered_by_exit` adds what was still queued when the others had delivered everything.
    """
    sentries = [s for s in servers if s.config in PEERS and PEERS[s.config].stand_in == "sentry"]
    if sinks is None or not sentries:
        return
    for server in sentries:
        server.stop()
    found = sinks.peers()["sentry"]
    for server in sentries:
        project = found.get(PEERS[server.config].name, {})
        record = totals["traces"][server.config]
        record["discarded"] = project.get("discarded", {})
        record["delivered_by_exit"] = project.get("traces", 0)


def trace_records(servers: list[Server], sinks: Sinks) -> dict:
    """Per configuration that traces: what its stand-in decoded, by path, beside what the server answered.

    For a peer, first the checks that it really instruments (its stand-in got the request span of
    every endpoint and, where the agent records them, SQL spans), then whether every request arrived.
    Ours with OTLP on (one vendor and all four) report under one service name: their rows are joint.
    """
    peers = sinks.peers()
    records = {}
    ours_served: Counter[str] = Counter()
    for server in servers:
        if server.config != STOCK and "otlp" in server.on:
            ours_served.update(server.log.access_by_path)
    for server in servers:
        if server.config in PEERS:
            peer = PEERS[server.config]
            found = _service_traces(peers, peer.stand_in, peer.name)
            served = Counter(server.log.access_by_path)
        elif server.config == STOCK:
            found, served = _service_traces(peers, "otlp", STOCK_SERVICE), Counter(server.log.access_by_path)
        elif "otlp" in server.on:
            found, served = _service_traces(peers, "otlp", OUR_SERVICE), ours_served
        else:
            continue
        by_path = {
            path: {**found["by_path"].get(path, {"traces": 0, "spans": 0, "sql_spans": 0}), "served": n}
            for path, n in served.items()
        }
        records[server.config] = {
            "by_path": by_path,
            "delivered": found["traces"],
            "served": sum(served.values()),
            "span_names": found.get("span_names", {}),
            "examples": found.get("examples", {}),
            "discarded": found.get("discarded", {}),
            "items": found.get("items", {}),
            "sql_statements": found.get("sql_statements"),
        }
        if server.config not in PEERS:
            continue
        peer = PEERS[server.config]
        for endpoint in server.settings.endpoints:
            path = ENDPOINTS[endpoint][1]
            row = by_path.get(path, {})
            server._check(f"instruments: a request span for {path}", True, row.get("traces", 0) > 0)
            if peer.records_sql:
                server._check(f"instruments: SQL spans for {path}", True, row.get("sql_spans", 0) > 0)
        check = _check("delivered: one trace per request served", sum(served.values()), found["traces"])
        check["finding"] = peer.may_drop  # a queue bounded to drop: its loss is what the run measures
        server.checks.append(check)
    return records


def stock_checks(stock: Server, stats: dict, xray_sent: int, totals: dict) -> None:
    """Stock's own loss: every request a server span, every sent segment received, every log line shipped.

    Its server is stopped first: watchtower ships what it holds when the worker exits.
    """
    served = stock.log.access_total
    spans = stats["server_spans_by_service"].get(STOCK_SERVICE, 0)
    stock._check("OTLP: one server span per request served", served, spans)
    totals["stock_spans_per_request"] = round(stats["spans_by_service"].get(STOCK_SERVICE, 0) / served, 2)
    segments = stats["segments_by_name"].get(STOCK_SERVICE, 0)
    # The stats request that read `xray_sent` is traced too: its own segment, if sampled, leaves after it answered.
    ok = xray_sent <= segments <= xray_sent + 1
    stock._check("X-Ray: segments received == segments sent (+ the stats request's)", xray_sent, segments, ok)
    totals["stock_xray_sampled_share"] = round(segments / served, 3) if served else None
    stock.stop()
    stock.log.read()  # up to the stats request, logged before the worker exited
    served = stock.log.access_total
    reader = stock.cloudwatch
    wait_until(lambda: reader.read() is not None and reader.events >= served, DRAIN_TIMEOUT, interval=0.5)
    stock._check("CloudWatch: one after_request log event per request served", served, reader.events)


def analyze(database_url: str) -> None:
    """Refresh PostgreSQL's planner statistics before each repeat.

    A new database that grows by thousands of cruds a repeat outruns autovacuum's analyze (a minute
    apart at the least): the planner, still expecting a handful of rows, sorted every crud for the
    home feed (p50 100 ms after ~16,000 posts, where a walk of the created_at index takes 0.2 ms).
    Before a repeat's first phase, so no phase pays for it.
    """
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute("ANALYZE")


def _check(what: str, expected, actual) -> dict:
    return {"check": what, "expected": expected, "actual": actual, "ok": expected == actual}


def run(settings: Settings, log=print) -> dict:
    """Start every configuration, run the interleaved schedule, check for loss; raw results."""
    load = LoadGenerator(settings.load_tool)
    started = time.monotonic()
    needs_sinks = any(INTEGRATIONS[c] or c in PEERS for c in settings.configs)
    venv_install_s = ensure_venv(log) if any(c in PEERS for c in settings.configs) else None
    sinks = Sinks() if needs_sinks else None
    servers: list[Server] = []
    postgres, cluster = find_server() if settings.database == "postgresql" else (None, None)
    databases: list[str] = []
    try:
        for config in settings.configs:
            if postgres:
                databases.append(create_database(postgres, "cruddur_bench"))
            server = Server(config, sinks, settings, databases[-1] if postgres else "")
            servers.append(server)
            server.start()
        log(f"  {len(servers)} servers up and warm ({time.monotonic() - started:.0f} s)")
        for repeat in range(settings.repeats):
            t0 = time.monotonic()
            shift = repeat % len(servers)
            order = servers[shift:] + servers[:shift]
            for database in databases:  # after the warm-up's and the last repeat's writes
                analyze(database)
            for endpoint in settings.endpoints:
                for server in order:
                    server.phase(endpoint, repeat, load)
            log(f"  repeat {repeat + 1}/{settings.repeats} done ({time.monotonic() - t0:.0f} s)")
        time.sleep(max(0.0, max(s.last_phase_end for s in servers) + GAP - time.monotonic()))
        if not drain(servers, sinks):
            log("  the sinks did not receive everything within the drain timeout")
        for server in servers:
            server.settle()
        totals = loss_checks(servers, sinks)
        sentry_reports(servers, sinks, totals)
    finally:
        for server in servers:
            server.stop()
        if sinks is not None:
            sinks.stop()
        for database in databases:
            drop_database(postgres, database)
        if cluster is not None:
            cluster.destroy()
    return {
        "meta": {
            "commit": _git_commit(),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": len(os.sched_getaffinity(0)),
            "load_tool": load.tool,
            "repeats": settings.repeats,
            "duration_s": settings.duration,
            "connections": settings.connections,
            "gunicorn_workers": 1,
            "database": settings.database,
            "elapsed_s": round(time.monotonic() - started, 1),
            "bench_venv_install_s": None if venv_install_s is None else round(venv_install_s, 1),
        },
        "samples": [vars(sample) for server in servers for sample in server.samples],
        "checks": [{"config": s.config, "checks": s.checks} for s in servers]
        + [{"config": "sinks", "checks": totals.pop("checks", [])}],
        "totals": totals,
    }


def _git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=False)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "cruddur"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
