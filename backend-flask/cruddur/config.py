"""Configuration: the one place that reads the environment."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field, fields
from pathlib import Path

BACKEND_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BACKEND_DIR.parent

# Every variable the app itself reads (the SDKs also read their standard OTEL_* and AWS_* variables).
ENV_VARS = (
    "CRUDDUR_ENV",
    "CRUDDUR_TELEMETRY",
    "DATABASE_URL",
    "DATABASE_POOL_SIZE",
    "DATABASE_CONNECT_TIMEOUT",
    "DATABASE_STATEMENT_TIMEOUT",
    "GUNICORN_THREADS",
    "CRUDDUR_USER_HANDLE",
    "CRUDDUR_TRUSTED_PROXIES",
    "FRONTEND_URL",
    "BACKEND_URL",
    "OTEL_SERVICE_NAME",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_TRACES_EXPORTER",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    "OTEL_METRICS_EXPORTER",
    "OTEL_SEMCONV_STABILITY_OPT_IN",
    "OTEL_PYTHON_FLASK_EXCLUDED_URLS",
    "OTEL_PYTHON_EXCLUDED_URLS",
    "HONEYCOMB_API_KEY",
    "HONEYCOMB_TEAM",
    "HONEYCOMB_ENVIRONMENT",
    "AWS_XRAY_DAEMON_ADDRESS",
    "AWS_XRAY_URL",
    "CRUDDUR_XRAY_TRANSPORT",
    "CLOUDWATCH_LOG_GROUP",
    "CRUDDUR_CLOUDWATCH_TRANSPORT",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_COGNITO_USER_POOL_ID",
    "AWS_COGNITO_USER_POOL_CLIENT_ID",
    "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER",
    "ROLLBAR_ACCESS_TOKEN",
    "ROLLBAR_ENDPOINT",
    "ROLLBAR_ENVIRONMENT",
    "CRUDDUR_CODE_VERSION",
    "GUNICORN_GRACEFUL_TIMEOUT",
    "PROMETHEUS_MULTIPROC_DIR",
)

ENVIRONMENTS = ("development", "test", "production")
TELEMETRY_SWITCH = ("on", "off")
XRAY_TRANSPORTS = ("daemon", "otlp")  # X-Ray SDK -> daemon (UDP), or OpenTelemetry spans -> X-Ray's OTLP endpoint
CLOUDWATCH_TRANSPORTS = ("api", "otlp")  # watchtower -> PutLogEvents, or OTLP log records -> the Logs OTLP endpoint
HONEYCOMB_ENDPOINT = "https://api.honeycomb.io"
# Honeycomb files metrics under a dataset named by this header (spans are filed by service name).
HONEYCOMB_DATASET_HEADER = "x-honeycomb-dataset"
# gunicorn's own default: how long a worker has after SIGTERM before it is killed.
DEFAULT_GRACEFUL_TIMEOUT = 30
# Of that time, what the telemetry flushes at exit may not use: the request in flight finishes
# first, and the interpreter still has to exit.
SHUTDOWN_MARGIN_FRACTION = 0.25
SHUTDOWN_MARGIN_MIN_SECONDS = 2.0
# Cognito's signing keys: how long one fetch may take (a request waits for it), how long a fetched
# key set is used before it is fetched again, and how soon after a fetch an unknown `kid` may
# trigger another (so a stream of made-up kids cannot make every request fetch).
JWKS_TIMEOUT_SECONDS = 2.0
JWKS_LIFESPAN_SECONDS = 300.0
JWKS_REFETCH_COOLDOWN_SECONDS = 30.0


def _code_version() -> str:
    """The git commit the code runs from, or the package version when there is no checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=BACKEND_DIR,
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "0.1.0"
    return out.stdout.strip() or "0.1.0"


def _parse_headers(raw: str) -> dict[str, str]:
    """Parse the OTLP header list format `k1=v1,k2=v2` (values may be percent-encoded)."""
    from urllib.parse import unquote

    headers = {}
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            headers[key.strip().lower()] = unquote(value.strip())
    return headers


@dataclass
class Config:
    """Settings of one app instance; `Config.from_env()` reads them, tests pass their own."""

    env: str = "development"
    # "off": no trace context, no traceresponse, no integration (the benchmark's baseline).
    telemetry: str = "on"
    database_url: str = ""
    # PostgreSQL only: connections per worker process (0: one per worker thread) and timeouts
    database_pool_size: int = 0
    database_connect_timeout: float = 5.0  # seconds to connect, and to wait for a pooled connection
    database_statement_timeout: float = 10.0  # seconds a statement may run
    worker_threads: int = 1  # gunicorn threads per worker (GUNICORN_THREADS, read by gunicorn.conf.py too)
    seed_data: bool | None = None  # None: seed in development only (tests that want data say True)
    user_handle: str = "andrewbrown"
    frontend_url: str = "http://localhost:3000"
    backend_url: str = "http://localhost:4567"
    code_version: str = "0.1.0"
    max_content_length: int = 1024 * 1024
    # How many proxies in front append to X-Forwarded-For; 0 trusts none (the peer is the client).
    trusted_proxies: int = 0
    # gunicorn's graceful_timeout (gunicorn.conf.py reads the same variable)
    graceful_timeout: int = DEFAULT_GRACEFUL_TIMEOUT
    # Where gunicorn's workers keep their counters, so any worker can report the instance's sums
    prometheus_multiproc_dir: str = ""

    # OpenTelemetry
    service_name: str = "backend-flask"
    otlp_endpoint: str = ""  # base URL; traces go to <base>/v1/traces
    otlp_traces_endpoint: str = ""  # full URL, wins over otlp_endpoint
    otlp_headers: dict[str, str] = field(default_factory=dict)
    traces_exporter: str = ""  # "console" prints spans instead
    # The SDK's default (2,048) is under a second of spans for a busy worker; 8,192 spans are
    # about 16 MB at most and ride out a slow vendor for a few seconds before dropping.
    span_queue_size: int = 8192
    # Spans a batch, and CloudWatch's OTLP log records a batch. Not the specification's 512: encoding
    # 512 holds the interpreter for ~50 ms, and the requests waiting behind it doubled p99
    # (docs/performance.md); 128 cost the same CPU.
    span_batch_size: int = 128
    traces_sampler: str = ""  # OTEL_TRACES_SAMPLER: the local decision (telemetry/sampling.py)
    traces_sampler_arg: str = ""
    honeycomb_team: str = ""
    honeycomb_environment: str = ""
    # Metrics (the Flask instrumentation's HTTP server metrics), over OTLP beside the traces
    otlp_metrics_endpoint: str = ""  # full URL, wins over otlp_endpoint
    metrics_headers: dict[str, str] = field(default_factory=dict)  # otlp_headers + the metrics-only ones
    metrics_exporter: str = ""  # "none" turns metrics off
    # HTTP semantic conventions of the instrumentations: "http" is the stable set
    # (http.server.request.duration in seconds, url.path, http.request.method...).
    semconv_stability_opt_in: str = "http"
    # Comma-separated regular expressions of URLs the Flask instrumentation leaves untraced
    # (OTEL_PYTHON_FLASK_EXCLUDED_URLS, else OTEL_PYTHON_EXCLUDED_URLS); X-Ray leaves the same ones out.
    flask_excluded_urls: str = ""

    # X-Ray
    xray_daemon_address: str = ""
    xray_url: str = ""
    xray_transport: str = "daemon"

    # CloudWatch Logs
    cloudwatch_log_group: str = ""
    cloudwatch_transport: str = "api"
    aws_region: str = ""  # AWS_REGION, a fallback: boto3 itself reads only AWS_DEFAULT_REGION

    # Sign-in (Cognito): on when the pool and the app client are both set
    cognito_user_pool_id: str = ""
    cognito_client_id: str = ""
    cognito_endpoint: str = ""  # AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER: another (a local) endpoint
    aws_default_region: str = ""
    jwks_timeout: float = JWKS_TIMEOUT_SECONDS
    jwks_lifespan: float = JWKS_LIFESPAN_SECONDS
    jwks_refetch_cooldown: float = JWKS_REFETCH_COOLDOWN_SECONDS

    # Rollbar
    rollbar_access_token: str = ""
    rollbar_endpoint: str = ""
    rollbar_environment: str = ""

    @classmethod
    def from_env(cls, environ=None) -> Config:
        """Build the configuration from environment variables, with the documented defaults."""
        e = os.environ if environ is None else environ

        def get(name: str, default: str = "") -> str:
            assert name in ENV_VARS, name
            return (e.get(name) or default).strip()

        env = get("CRUDDUR_ENV", "development")
        if env not in ENVIRONMENTS:
            raise ValueError(f"CRUDDUR_ENV must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")
        telemetry = get("CRUDDUR_TELEMETRY", "on").lower()
        if telemetry not in TELEMETRY_SWITCH:
            raise ValueError(f"CRUDDUR_TELEMETRY must be on or off, not {telemetry!r}")
        trusted_proxies = get("CRUDDUR_TRUSTED_PROXIES", "0")
        if not (trusted_proxies.isascii() and trusted_proxies.isdigit()):
            raise ValueError(f"CRUDDUR_TRUSTED_PROXIES must be a whole number of proxies, not {trusted_proxies!r}")
        xray_transport = get("CRUDDUR_XRAY_TRANSPORT", "daemon").lower()
        if xray_transport not in XRAY_TRANSPORTS:
            raise ValueError(
                f"CRUDDUR_XRAY_TRANSPORT must be one of {', '.join(XRAY_TRANSPORTS)}, not {xray_transport!r}"
            )
        cloudwatch_transport = get("CRUDDUR_CLOUDWATCH_TRANSPORT", "api").lower()
        if cloudwatch_transport not in CLOUDWATCH_TRANSPORTS:
            raise ValueError(
                f"CRUDDUR_CLOUDWATCH_TRANSPORT must be one of {', '.join(CLOUDWATCH_TRANSPORTS)}, "
                f"not {cloudwatch_transport!r}"
            )
        headers = _parse_headers(get("OTEL_EXPORTER_OTLP_HEADERS"))
        endpoint = get("OTEL_EXPORTER_OTLP_ENDPOINT")
        honeycomb_key = get("HONEYCOMB_API_KEY")
        if honeycomb_key:
            endpoint = endpoint or HONEYCOMB_ENDPOINT
            headers.setdefault("x-honeycomb-team", honeycomb_key)
        service_name = get("OTEL_SERVICE_NAME", "backend-flask")
        metrics_headers = {**headers, **_parse_headers(get("OTEL_EXPORTER_OTLP_METRICS_HEADERS"))}
        if honeycomb_key:
            metrics_headers.setdefault(HONEYCOMB_DATASET_HEADER, f"{service_name}-metrics")
        return cls(
            env=env,
            telemetry=telemetry,
            database_url=get("DATABASE_URL"),
            database_pool_size=int(get("DATABASE_POOL_SIZE", "0")),
            database_connect_timeout=float(get("DATABASE_CONNECT_TIMEOUT", "5")),
            database_statement_timeout=float(get("DATABASE_STATEMENT_TIMEOUT", "10")),
            worker_threads=int(get("GUNICORN_THREADS", "1")),
            user_handle=get("CRUDDUR_USER_HANDLE", "andrewbrown"),
            trusted_proxies=int(trusted_proxies),
            frontend_url=get("FRONTEND_URL", "http://localhost:3000").rstrip("/"),
            backend_url=get("BACKEND_URL", "http://localhost:4567").rstrip("/"),
            code_version=get("CRUDDUR_CODE_VERSION") or _code_version(),
            graceful_timeout=int(get("GUNICORN_GRACEFUL_TIMEOUT") or DEFAULT_GRACEFUL_TIMEOUT),
            prometheus_multiproc_dir=get("PROMETHEUS_MULTIPROC_DIR"),
            service_name=service_name,
            otlp_endpoint=endpoint.rstrip("/"),
            otlp_traces_endpoint=get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            otlp_headers=headers,
            traces_exporter=get("OTEL_TRACES_EXPORTER").lower(),
            span_queue_size=int(get("OTEL_BSP_MAX_QUEUE_SIZE", "8192")),
            span_batch_size=int(get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "128")),
            traces_sampler=get("OTEL_TRACES_SAMPLER"),
            traces_sampler_arg=get("OTEL_TRACES_SAMPLER_ARG"),
            honeycomb_team=get("HONEYCOMB_TEAM"),
            honeycomb_environment=get("HONEYCOMB_ENVIRONMENT"),
            otlp_metrics_endpoint=get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
            metrics_headers=metrics_headers,
            metrics_exporter=get("OTEL_METRICS_EXPORTER").lower(),
            semconv_stability_opt_in=get("OTEL_SEMCONV_STABILITY_OPT_IN", "http"),
            flask_excluded_urls=get("OTEL_PYTHON_FLASK_EXCLUDED_URLS") or get("OTEL_PYTHON_EXCLUDED_URLS"),
            xray_daemon_address=get("AWS_XRAY_DAEMON_ADDRESS"),
            xray_url=get("AWS_XRAY_URL"),
            xray_transport=xray_transport,
            cloudwatch_log_group=get("CLOUDWATCH_LOG_GROUP"),
            cloudwatch_transport=cloudwatch_transport,
            aws_region=get("AWS_REGION"),
            cognito_user_pool_id=get("AWS_COGNITO_USER_POOL_ID"),
            cognito_client_id=get("AWS_COGNITO_USER_POOL_CLIENT_ID"),
            cognito_endpoint=get("AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER").rstrip("/"),
            aws_default_region=get("AWS_DEFAULT_REGION"),
            rollbar_access_token=get("ROLLBAR_ACCESS_TOKEN"),
            rollbar_endpoint=get("ROLLBAR_ENDPOINT"),
            rollbar_environment=get("ROLLBAR_ENVIRONMENT"),  # empty: CRUDDUR_ENV
        )

    @property
    def telemetry_on(self) -> bool:
        """Whether the app traces requests and may run integrations (CRUDDUR_TELEMETRY, default on)."""
        return self.telemetry != "off"

    @property
    def signin_on(self) -> bool:
        """Whether Cognito access tokens decide who acts (the pool and the app client are both set)."""
        return bool(self.cognito_user_pool_id and self.cognito_client_id)

    @property
    def cognito_region(self) -> str:
        """The pool's region: AWS_DEFAULT_REGION, else AWS_REGION, else the pool id's prefix
        (a Cognito pool id is `<region>_<id>`)."""
        prefix, sep, _ = self.cognito_user_pool_id.partition("_")
        return self.aws_default_region or self.aws_region or (prefix if sep else "")

    @property
    def cognito_issuer(self) -> str:
        """The `iss` of the pool's tokens (the same with a local endpoint: it stands in for AWS)."""
        return f"https://cognito-idp.{self.cognito_region}.amazonaws.com/{self.cognito_user_pool_id}"

    @property
    def cognito_jwks_url(self) -> str:
        """Where the pool's signing keys are: the issuer's, or the other endpoint's."""
        base = self.cognito_endpoint or f"https://cognito-idp.{self.cognito_region}.amazonaws.com"
        return f"{base}/{self.cognito_user_pool_id}/.well-known/jwks.json"

    @property
    def traces_url(self) -> str:
        """Where OTLP/HTTP trace export goes, or "" when export is off."""
        if self.otlp_traces_endpoint:
            return self.otlp_traces_endpoint
        return f"{self.otlp_endpoint}/v1/traces" if self.otlp_endpoint else ""

    @property
    def metrics_url(self) -> str:
        """Where OTLP/HTTP metric export goes (beside the traces), or "" when metrics are off."""
        if self.metrics_exporter == "none":
            return ""
        if self.otlp_metrics_endpoint:
            return self.otlp_metrics_endpoint
        return f"{self.otlp_endpoint}/v1/metrics" if self.otlp_endpoint else ""

    @property
    def shutdown_budget(self) -> float:
        """Seconds the telemetry flushes at exit may take together: graceful_timeout less a margin."""
        margin = max(SHUTDOWN_MARGIN_MIN_SECONDS, self.graceful_timeout * SHUTDOWN_MARGIN_FRACTION)
        return max(self.graceful_timeout - margin, 0.5)

    @property
    def database(self) -> str:
        """DATABASE_URL as the store takes it: `sqlite:///path` (the default under instance/) or
        `postgresql://...` (`postgres://` accepted). Other schemes are refused."""
        url = self.database_url
        if not url:
            return f"sqlite:///{BACKEND_DIR / 'instance' / f'cruddur-{self.env}.db'}"
        scheme, sep, rest = url.partition("://")
        if sep and scheme in ("postgresql", "postgres"):
            return f"postgresql://{rest}"
        if url.startswith("sqlite:///"):
            return url
        raise ValueError("DATABASE_URL must be sqlite:///path or postgresql://user:password@host:port/dbname")

    @property
    def seeds_database(self) -> bool:
        """Whether a new database gets the seed data (users, cruds, conversations): in development."""
        return self.env == "development" if self.seed_data is None else self.seed_data

    @property
    def pool_size(self) -> int:
        """PostgreSQL connections per worker: DATABASE_POOL_SIZE, else one per worker thread."""
        return max(1, self.database_pool_size or self.worker_threads)

    def replace(self, **changes) -> Config:
        """A copy with some settings changed."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Config(**values)
