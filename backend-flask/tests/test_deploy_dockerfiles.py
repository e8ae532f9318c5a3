"""The Dockerfiles, checked statically (no Docker engine here): base images, pinning, users,
health checks, entrypoints and build contexts. The backend's HEALTHCHECK command itself is run
against a live app, since it is plain Python. Whether the images build is for a Docker host.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from werkzeug.serving import make_server

REPO = Path(__file__).resolve().parents[2]
BACKEND_DIR = REPO / "backend-flask"
FRONTEND_DIR = REPO / "frontend-react-js"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        logical.append(current)
        current = ""
    pairs = []
    for entry in logical:
        keyword, _, args = entry.partition(" ")
        pairs.append((keyword.upper(), args.strip()))
    return pairs


def stages(pairs: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Instructions split into build stages, each starting at its FROM."""
    result = []
    for keyword, args in pairs:
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, args))
    return result


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form CMD/HEALTHCHECK (after any --options)."""
    start = args.index("[")
    return json.loads(args[start:])


def ignored(dockerignore: Path, name: str) -> bool:
    """Whether a top-level path is excluded by a .dockerignore (enough of its syntax for this)."""
    result = False
    for line in dockerignore.read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/").removeprefix("**/")
        if fnmatch.fnmatch(name, pattern):
            result = not negate
    return result


BACKEND = instructions(BACKEND_DIR / "Dockerfile")
FRONTEND = instructions(FRONTEND_DIR / "Dockerfile")


def only(pairs, keyword):
    """Arguments of every instruction with this keyword."""
    return [args for k, args in pairs if k == keyword]


def test_backend_base_image_is_slim_python_of_the_supported_version():
    """One stage, python:3.11-slim (the version pyproject requires and CI runs)."""
    assert len(only(BACKEND, "FROM")) == 1
    image = only(BACKEND, "FROM")[0]
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", image), image
    assert 'requires-python = ">=3.11"' in (BACKEND_DIR / "pyproject.toml").read_text()


def test_backend_installs_the_pinned_requirements():
    """pip installs from requirements.txt, copied before the code, and every line there is pinned."""
    runs = only(BACKEND, "RUN")
    assert any(re.search(r"\bpip install\b.*-r requirements\.txt", r) for r in runs)
    assert not any(re.search(r"\bpip install\b(?!.*-r )", r) for r in runs), "no unpinned pip install"
    copies = only(BACKEND, "COPY")
    assert copies.index("requirements.txt ./") < copies.index(". ."), "dependencies layer before code"
    for line in (BACKEND_DIR / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[A-Za-z0-9_.+\-]+", line.strip()), line


def test_backend_runs_as_a_non_root_user():
    """The last USER is neither root nor uid 0, and it is created in the image."""
    users = only(BACKEND, "USER")
    assert users, "no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert any("useradd" in r and user in r for r in only(BACKEND, "RUN"))
    keywords = [k for k, _ in BACKEND]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")


def test_backend_serves_with_gunicorn_and_its_config():
    """CMD is exec form (SIGTERM reaches gunicorn) with gunicorn.conf.py and app:app."""
    cmd = exec_form(only(BACKEND, "CMD")[-1])
    assert cmd[0] == "gunicorn"
    assert cmd[cmd.index("--config") + 1] == "gunicorn.conf.py"
    assert cmd[-1] == "app:app"
    assert only(BACKEND, "EXPOSE") == ["4567"]
    # gunicorn.conf.py binds where the image's PORT (and the HEALTHCHECK) say.
    assert "PORT=4567" in " ".join(only(BACKEND, "ENV"))
    for port in ("4567", "5000"):
        bind = subprocess.run(
            [sys.executable, "-c", "exec(open('gunicorn.conf.py').read()); print(bind)"],
            cwd=BACKEND_DIR,
            env={"PORT": port},
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
        assert bind == f"0.0.0.0:{port}"


def test_backend_context_keeps_what_the_image_runs():
    """.dockerignore drops the venv, local databases and secrets, never the app itself."""
    ignore = BACKEND_DIR / ".dockerignore"
    for name in (".venv", "instance", ".env", "__pycache__", "tests"):
        assert ignored(ignore, name), name
    for name in ("app.py", "cruddur", "gunicorn.conf.py", "requirements.txt"):
        assert not ignored(ignore, name), name
        assert (BACKEND_DIR / name).exists(), name


def test_backend_copies_the_sampling_rules_from_the_aws_context():
    """aws/json/ lands beside backend-flask/ in the image, where the app looks for it."""
    copies = only(BACKEND, "COPY")
    assert "--from=aws json/ /app/aws/json/" in copies
    assert only(BACKEND, "WORKDIR") == ["/app/backend-flask"]
    from cruddur.telemetry.xray.rules import DEFAULT_RULE_FILES

    # In a checkout the rules are <repo>/aws/json; in the image /app/backend-flask's parent is /app.
    for path in DEFAULT_RULE_FILES:
        assert path.relative_to(REPO).parts[:2] == ("aws", "json")


@pytest.fixture
def live_app(app):
    """The app served over real HTTP on an ephemeral loopback port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    thread.join(timeout=5)


def healthcheck_commands() -> list[list[str]]:
    """The Dockerfile's HEALTHCHECK and the compose service's health check, as argv lists."""
    dockerfile = exec_form(only(BACKEND, "HEALTHCHECK")[0].split(" CMD ", 1)[1])
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    test = compose["services"]["backend-flask"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    return [dockerfile, test[1:]]


def test_healthcheck_is_the_same_in_the_dockerfile_and_compose():
    """One health check, two places."""
    dockerfile, compose = healthcheck_commands()
    assert dockerfile == compose
    assert "/api/health-check" in dockerfile[-1]
    options = only(BACKEND, "HEALTHCHECK")[0].split(" CMD ", 1)[0]
    assert "--timeout=" in options and "--interval=" in options


@pytest.mark.parametrize("which", ["dockerfile", "compose"])
def test_healthcheck_command_passes_on_a_healthy_app_and_fails_without_one(live_app, which):
    """Run the exact command (python -c ...) against the live app, then against a closed port."""
    argv = dict(zip(["dockerfile", "compose"], healthcheck_commands(), strict=True))[which]
    assert argv[0] == "python"
    argv = [sys.executable, *argv[1:]]
    ok = subprocess.run(argv, env={"PORT": str(live_app)}, capture_output=True, text=True, timeout=30, check=False)
    assert ok.returncode == 0, ok.stderr
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    down = subprocess.run(argv, env={"PORT": str(closed_port)}, capture_output=True, text=True, timeout=30, check=False)
    assert down.returncode != 0


def test_frontend_is_a_multi_stage_build_serving_the_static_bundle():
    """Node builds with the lock file; the final stage is nginx with only the built files."""
    build, *_, final = stages(FRONTEND)
    build_from = build[0][1]
    assert re.fullmatch(r"node:(\d+)[\w.\-]* AS build", build_from), build_from
    node_major = int(re.match(r"node:(\d+)", build_from).group(1))
    engines = json.loads((FRONTEND_DIR / "package.json").read_text())["engines"]["node"]
    assert node_major >= int(re.search(r"\d+", engines).group(0))
    build_runs = only(build, "RUN")
    assert "npm ci --no-audit --no-fund" in build_runs and "npm run build" in build_runs
    assert "build" in json.loads((FRONTEND_DIR / "package.json").read_text())["scripts"]
    assert only(build, "ARG")[0].startswith("VITE_BACKEND_URL")
    assert "nginx" in final[0][1] and "node" not in final[0][1]
    assert "--from=build /app/dist /usr/share/nginx/html" in only(final, "COPY")
    assert only(final, "EXPOSE") == ["3000"]
    assert only(final, "USER") and only(final, "USER")[-1] not in ("root", "0")
    assert "http://127.0.0.1:3000/" in only(final, "HEALTHCHECK")[0]


def test_frontend_nginx_serves_the_spa_on_3000():
    """Listen on 3000, fall back to index.html for client-side routes."""
    conf = (FRONTEND_DIR / "nginx.conf").read_text()
    assert re.search(r"^\s*listen 3000;", conf, re.M)
    assert "try_files $uri $uri/ /index.html;" in conf
    assert "COPY nginx.conf /etc/nginx/conf.d/default.conf" in [
        f"COPY {args}" for args in only(stages(FRONTEND)[-1], "COPY")
    ]


def test_frontend_context_excludes_host_modules_and_builds():
    """The build stage installs its own node_modules and builds its own dist."""
    ignore = FRONTEND_DIR / ".dockerignore"
    for name in ("node_modules", "dist", ".env"):
        assert ignored(ignore, name), name
    for name in ("package.json", "package-lock.json", "index.html", "src", "vite.config.js", "nginx.conf"):
        assert not ignored(ignore, name), name
        assert (FRONTEND_DIR / name).exists(), name
