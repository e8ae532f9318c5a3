"""docker-compose.yml, .env.example and .gitpod.yml, checked statically (no Docker engine here).

What is verified: the Compose Specification schema (offline, check-jsonschema's vendored copy),
the backend's environment against the variables the app really reads, Compose's variable
interpolation as Compose applies it, the sidecar wiring and that no secret is written inline.
What only a Docker host can verify: that images build, containers start, the daemon relays.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cruddur import create_app
from cruddur.config import ENV_VARS, Config

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
OTLP_OVERRIDE_FILE = REPO / "docker-compose.otlp.yml"
COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES = COMPOSE["services"]
BACKEND = SERVICES["backend-flask"]

# Read by boto3 itself, not by the app: region and credentials by boto3's standard resolution, and
# its standard endpoint overrides.
BOTO3_VARS = {
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS",
    "AWS_ENDPOINT_URL_XRAY",
}
SECRETS = {
    "HONEYCOMB_API_KEY",
    "ROLLBAR_ACCESS_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
}

_INTERPOLATION = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\})")


def interpolate(value: str, shell: dict[str, str]) -> str:
    """Compose's interpolation of `${VAR}`, `${VAR:-default}`, `${VAR-default}` and `$$`."""

    def replace(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group("name"), m.group("op"), m.group("arg") or ""
        if op == ":-":
            return shell.get(name) or arg
        if op == "-":
            return shell.get(name, arg)
        if op in (":+", "+"):
            return arg if (shell.get(name) if op == ":+" else name in shell) else ""
        if op in (":?", "?"):
            raise AssertionError(f"compose would refuse to start without {name}")
        return shell.get(name, "")

    return _INTERPOLATION.sub(replace, value)


def referenced_names(value: object) -> set[str]:
    """Variable names a compose value interpolates."""
    return {m.group("name") for m in _INTERPOLATION.finditer(str(value)) if m.group("name")}


def container_env(service: dict, shell: dict[str, str]) -> dict[str, str]:
    """The environment Compose gives the container: a name without a value passes through if set."""
    env = {}
    for name, value in service.get("environment", {}).items():
        if value is None:
            if name in shell:
                env[name] = shell[name]
        else:
            env[name] = interpolate(str(value), shell)
    return env


class RecordingEnviron(dict):
    """An environment that records every name looked up in it."""

    def __init__(self, *args, **kwargs):
        """Start with no lookups."""
        super().__init__(*args, **kwargs)
        self.read: set[str] = set()

    def get(self, key, default=None):
        """Record, then look up."""
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        """Record, then look up."""
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        """Record, then look up."""
        self.read.add(key)
        return super().__contains__(key)


def check_compose_schema(path):
    """check-jsonschema's offline Compose Specification check of one file."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_compose_file_matches_the_compose_specification_schema():
    """Validated offline against the Compose Specification JSON schema vendored by check-jsonschema."""
    result = check_compose_schema(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_can_fail(tmp_path):
    """The same check rejects a compose file with an unknown service key."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("    stop_grace_period:", "    stop_grace_periode:"))
    result = check_compose_schema(broken)
    assert result.returncode == 1
    assert "stop_grace_periode" in result.stdout + result.stderr


def test_env_vars_is_what_config_reads():
    """cruddur.config.ENV_VARS lists exactly the names Config.from_env looks up."""
    environ = RecordingEnviron()
    Config.from_env(environ)
    assert environ.read == set(ENV_VARS)


def test_backend_environment_names_exactly_the_variables_the_app_reads():
    """Compared set: cruddur.config.ENV_VARS plus the variables boto3 reads itself, no more, no less."""
    assert set(BACKEND["environment"]) == set(ENV_VARS) | BOTO3_VARS


def test_backend_environment_values_by_default(tmp_path):
    """With nothing set in the shell, every integration points where the bootcamp expects."""
    env = container_env(BACKEND, shell={})
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env and "OTEL_EXPORTER_OTLP_HEADERS" not in env
    assert env["OTEL_SERVICE_NAME"] == "backend-flask"
    assert env["GUNICORN_GRACEFUL_TIMEOUT"] == "30"
    assert env["AWS_XRAY_DAEMON_ADDRESS"] == "xray-daemon:2000"
    assert env["CLOUDWATCH_LOG_GROUP"] == "cruddur"
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["FRONTEND_URL"] == "http://localhost:3000"
    assert env["BACKEND_URL"] == "http://localhost:4567"
    assert not SECRETS & set(env), "unset secrets must not reach the container, not even empty"
    config = Config.from_env(env)
    assert config.traces_url == "", "without a Honeycomb key or an endpoint, trace export stays off"
    assert config.xray_daemon_address == "xray-daemon:2000"
    assert config.cloudwatch_log_group == "cruddur"
    assert config.rollbar_access_token == ""
    app = create_app(config.replace(database_url=f"sqlite:///{tmp_path / 'compose.db'}"))
    tracing = app.extensions["cruddur.integrations"]["opentelemetry"]
    assert not tracing.enabled and "HONEYCOMB_API_KEY" in tracing.reason  # the startup line says why
    grace = int(BACKEND["stop_grace_period"].removesuffix("s"))
    assert grace > config.graceful_timeout, "Docker must not kill workers that are still flushing"


def test_secrets_come_from_the_shell_only():
    """Secrets are passed through by name; set in the shell, they reach the app."""
    for name in SECRETS:
        assert BACKEND["environment"][name] is None, f"{name} must be passed through, not written inline"
    shell = {"HONEYCOMB_API_KEY": "hc-key", "ROLLBAR_ACCESS_TOKEN": "rb-token", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE"}
    env = container_env(BACKEND, shell)
    config = Config.from_env(env)
    assert config.traces_url == "https://api.honeycomb.io/v1/traces"
    assert config.otlp_headers == {"x-honeycomb-team": "hc-key"}
    assert config.rollbar_access_token == "rb-token"
    assert env["AWS_ACCESS_KEY_ID"] == "AKIDEXAMPLE"


def test_no_secret_is_written_anywhere_in_the_compose_file():
    """No literal that looks like a credential: AWS key ids, long hex or base64 tokens."""
    text = COMPOSE_FILE.read_text()
    assert not re.search(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b", text)
    assert not re.search(r"\b[0-9a-f]{32,}\b", text)
    assert not re.search(r"\b[A-Za-z0-9/+]{40}\b", text)


def test_env_example_documents_what_compose_consumes():
    """Every name in .env.example is used by compose; every secret and the region are listed, empty."""
    example = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"not NAME=value: {line!r}"
            example[name.strip()] = value.strip()
    consumed = set()
    for service in SERVICES.values():
        consumed |= referenced_names(yaml.safe_dump(service))
        consumed |= {name for name, value in service.get("environment", {}).items() if value is None}
    assert set(example) <= consumed, set(example) - consumed
    assert SECRETS | {"AWS_DEFAULT_REGION"} <= set(example)
    assert all(example[name] == "" for name in SECRETS)


def test_xray_daemon_sidecar():
    """The daemon listens where the backend sends segments, in local mode, with region and credentials."""
    daemon = SERVICES["xray-daemon"]
    image, _, tag = daemon["image"].partition(":")
    assert image == "amazon/aws-xray-daemon" and tag and tag != "latest"
    command = daemon["command"]
    assert isinstance(command, list) and command[0].startswith("-"), (
        "the image's entrypoint is /xray: arguments only, a leading word stops flag parsing"
    )
    assert "-o" in command
    assert command[command.index("-b") + 1] == "xray-daemon:2000"
    assert "2000:2000/udp" in daemon["ports"]
    host, port = container_env(BACKEND, {})["AWS_XRAY_DAEMON_ADDRESS"].split(":")
    assert (host, port) == ("xray-daemon", "2000")
    assert "xray-daemon" in BACKEND["depends_on"]
    env = container_env(daemon, {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"})
    assert env == {"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"}
    assert all(daemon["environment"][name] is None for name in SECRETS & set(daemon["environment"]))


def test_backend_service_builds_serves_and_checks_health():
    """Port 4567, the aws/ named context the Dockerfile copies from, and the health check route."""
    assert BACKEND["build"]["context"] == "./backend-flask"
    assert BACKEND["build"]["additional_contexts"] == {"aws": "./aws"}
    assert (REPO / "aws" / "json" / "xray.json").is_file()
    assert "COPY --from=aws json/" in (REPO / "backend-flask" / "Dockerfile").read_text()
    assert BACKEND["ports"] == ["4567:4567"]
    assert "/api/health-check" in " ".join(BACKEND["healthcheck"]["test"])
    volume = BACKEND["volumes"][0].split(":")
    assert volume[0] in COMPOSE["volumes"]
    assert volume[1] == "/data" and "DATABASE_URL=sqlite:////data/cruddur.db" in (
        REPO / "backend-flask" / "Dockerfile"
    ).read_text().replace(" ", "")


def test_db_service_is_postgres_with_a_volume_a_health_check_and_the_backend_waits_for_it():
    """The official image at a pinned major, data on a named volume, pg_isready, and the backend's
    DATABASE_URL pointing at it once it is healthy."""
    db = SERVICES["db"]
    image, _, tag = db["image"].partition(":")
    assert image == "postgres" and re.fullmatch(r"\d+(\.\d+)?(-[a-z0-9]+)?", tag), db["image"]
    volume, path = db["volumes"][0].split(":")
    assert volume in COMPOSE["volumes"] and path == "/var/lib/postgresql/data"
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert BACKEND["depends_on"]["db"] == {"condition": "service_healthy"}
    env = container_env(db, {})
    url = container_env(BACKEND, {})["DATABASE_URL"]
    assert url == f"postgresql://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@db:5432/{env['POSTGRES_DB']}"
    config = Config.from_env(container_env(BACKEND, {}))
    assert config.database == url and config.pool_size == 1
    rds = "postgresql://app:s3cret@cruddur.abc.us-east-1.rds.amazonaws.com:5432/cruddur?sslmode=require"
    assert Config.from_env(container_env(BACKEND, {"DATABASE_URL": rds, "GUNICORN_THREADS": "4"})).pool_size == 4


def test_frontend_service_serves_port_3000_with_the_backend_url_baked_in():
    """Vite inlines VITE_BACKEND_URL at build time; it follows BACKEND_URL like CORS does."""
    frontend = SERVICES["frontend-react-js"]
    assert frontend["build"]["context"] == "./frontend-react-js"
    assert frontend["ports"] == ["3000:3000"]
    arg = frontend["build"]["args"]["VITE_BACKEND_URL"]
    assert interpolate(arg, {}) == container_env(BACKEND, {})["BACKEND_URL"]
    assert interpolate(arg, {"BACKEND_URL": "https://4567-x.gitpod.io"}) == "https://4567-x.gitpod.io"


@pytest.mark.parametrize(
    ("value", "shell", "expected"),
    [
        ("${A:-d}", {}, "d"),
        ("${A:-d}", {"A": ""}, "d"),
        ("${A-d}", {"A": ""}, ""),
        ("x=${A}", {"A": "1"}, "x=1"),
        ("$${A}", {"A": "1"}, "${A}"),
        ("*${A:-h}*", {}, "*h*"),
    ],
)
def test_interpolation_follows_compose(value, shell, expected):
    """The interpolation used above behaves as Compose documents."""
    assert interpolate(value, shell) == expected


def test_gitpod_installs_both_and_opens_the_ports():
    """Tasks install backend and frontend; 3000 and 4567 are public, 2000 is declared."""
    gitpod = yaml.safe_load((REPO / ".gitpod.yml").read_text())
    init = "\n".join(task.get("init", "") for task in gitpod["tasks"])
    assert "make setup" in init
    ports = {p["port"]: p for p in gitpod["ports"]}
    assert ports[3000]["visibility"] == ports[4567]["visibility"] == "public"
    assert 2000 in ports and ports[2000].get("visibility", "private") == "private"
    text = (REPO / ".gitpod.yml").read_text()
    for name in ("HONEYCOMB_API_KEY", "ROLLBAR_ACCESS_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert f"gp env {name}=" in text
    before = gitpod["tasks"][0]["before"]
    for name in ("FRONTEND_URL", "BACKEND_URL", "VITE_BACKEND_URL", "AWS_XRAY_URL"):
        assert f"export {name}=" in before


def merge_override(base: dict, override: dict) -> dict:
    """Compose's merge of an override file: mappings merge key by key, the override's values win;
    sequences (such as `profiles`) of a service are combined."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_override(merged[key], value)
        elif isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = merged[key] + [item for item in value if item not in merged[key]]
        else:
            merged[key] = value
    return merged


def started_by_up(compose: dict, active_profiles: set[str]) -> set[str]:
    """Services `docker compose up` starts: those without `profiles`, or with an active one (Compose spec, profiles)."""
    return {
        name
        for name, service in compose["services"].items()
        if not service.get("profiles") or set(service["profiles"]) & active_profiles
    }


def test_the_otlp_override_matches_the_compose_specification_schema():
    result = check_compose_schema(OTLP_OVERRIDE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_compose_up_starts_the_daemon_by_default():
    """No profile on the daemon in the base file: plain `docker compose up` starts it, transports default."""
    assert "profiles" not in SERVICES["xray-daemon"]
    assert started_by_up(COMPOSE, set()) == set(SERVICES)
    env = container_env(BACKEND, {})
    assert (env["CRUDDUR_XRAY_TRANSPORT"], env["CRUDDUR_CLOUDWATCH_TRANSPORT"]) == ("daemon", "api")
    config = Config.from_env(env)
    assert (config.xray_transport, config.cloudwatch_transport) == ("daemon", "api")


def test_the_otlp_override_drops_the_daemon_and_switches_both_transports():
    """`-f docker-compose.yml -f docker-compose.otlp.yml up`: no daemon unless `--profile xray-daemon`."""
    merged = merge_override(COMPOSE, yaml.safe_load(OTLP_OVERRIDE_FILE.read_text()))
    assert merged["services"]["xray-daemon"]["profiles"] == ["xray-daemon"]
    assert started_by_up(merged, set()) == set(SERVICES) - {"xray-daemon"}
    assert started_by_up(merged, {"xray-daemon"}) == set(SERVICES)
    # The backend still starts without it: its dependency on the daemon is not required.
    dependency = merged["services"]["backend-flask"]["depends_on"]["xray-daemon"]
    assert dependency["required"] is False
    backend = merged["services"]["backend-flask"]
    assert set(backend["environment"]) == set(BACKEND["environment"])
    config = Config.from_env(container_env(backend, {}))
    assert (config.xray_transport, config.cloudwatch_transport) == ("otlp", "otlp")
    assert config.cloudwatch_log_group == "cruddur"


def test_the_transports_can_be_chosen_from_the_shell():
    env = container_env(BACKEND, {"CRUDDUR_XRAY_TRANSPORT": "otlp", "CRUDDUR_CLOUDWATCH_TRANSPORT": "otlp"})
    config = Config.from_env(env)
    assert (config.xray_transport, config.cloudwatch_transport) == ("otlp", "otlp")
