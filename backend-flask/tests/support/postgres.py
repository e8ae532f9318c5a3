"""A real PostgreSQL for the tests, and throwaway databases and clusters on it.

Where the server comes from, in this order:
1. ``TEST_DATABASE_URL`` (a URL whose user may create and drop databases);
2. a server answering on 127.0.0.1:5432 as ``postgres`` (trust authentication);
3. a throwaway cluster started here from the installed binaries (``initdb``/``pg_ctl``), as the
   ``postgres`` system user when running as root (PostgreSQL refuses to run as root).

Tests never touch a database they did not create: ``create_database`` makes one with a unique name
and ``drop_database`` drops it. Tests that stop and restart PostgreSQL use their own
``PostgresCluster`` on a random port, never the shared server. ``shared_server`` lets the processes
of one parallel run (pytest-xdist workers) use one server: a throwaway cluster is started once.
"""

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from tests.support.faulty_http import LOOPBACK

DEFAULT_SERVER = f"postgresql://postgres@{LOOPBACK}:5432/postgres"
SYSTEM_USER = "postgres"


def binary(name: str) -> str:
    """Path of a PostgreSQL server program: on PATH, else Debian's newest /usr/lib/postgresql/<v>/bin."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    for directory in versions:
        if (directory / name).is_file():
            return str(directory / name)
    raise FileNotFoundError(f"{name} not found: install Debian's postgresql (bin/install-postgresql)")


def answers(url: str, timeout: int = 2) -> bool:
    """Whether a PostgreSQL server accepts a connection at ``url``."""
    try:
        with psycopg.connect(url, connect_timeout=timeout):
            return True
    except psycopg.Error:
        return False


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` (credentials and query kept)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` set on its user (a trust-authentication server ignores it)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, f"{parts.username or 'postgres'}:{password}@{host}", parts.path, parts.query, ""))


def create_database(server_url: str, prefix: str = "cruddur_test") -> str:
    """Create a database with a unique name on the server; return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(server_url, name)


def drop_database(server_url: str, database_url: str) -> None:
    """Drop a database made by ``create_database`` (ending its sessions first)."""
    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class PostgresCluster:
    """A private PostgreSQL cluster in a temporary directory, on a free loopback port.

    ``stop()`` and ``start()`` are real server shutdowns and starts (``pg_ctl``), for outage tests.
    """

    def __init__(self, root: Path | None = None, port: int | None = None):
        """Configure; ``start`` (or ``with``) runs initdb the first time. With ``root`` and ``port``:
        the initialised cluster another process started there."""
        from tests.support.app_server import free_port

        self.port = port or free_port()
        self.root = root or Path(tempfile.mkdtemp(prefix="cruddur-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._initialised = root is not None

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", SYSTEM_USER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed: {result.stdout}{result.stderr}\n{log}")

    def _initdb(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, SYSTEM_USER, SYSTEM_USER)
        self._run(binary("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self._initialised = True

    @property
    def url(self) -> str:
        """The admin URL (user postgres, database postgres)."""
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/postgres"

    def start(self):
        """Start the server and wait until it accepts connections; return self."""
        if not self._initialised:
            self._initdb()
        options = f"-c listen_addresses={LOOPBACK} -p {self.port} -k {self.root} -c fsync=off"
        self._run(binary("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """Shut the server down (``fast``: disconnect clients, as a restart does; ``immediate``: crash)."""
        self._run(binary("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        """Stop (if running) and delete the cluster."""
        if self._initialised:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.destroy()


def find_server(environ=os.environ):
    """The server URL to create test databases on, and the cluster started for it (or None)."""
    url = environ.get("TEST_DATABASE_URL")
    if url:
        return url, None
    if answers(DEFAULT_SERVER):
        return DEFAULT_SERVER, None
    cluster = PostgresCluster().start()
    return cluster.url, cluster


@contextlib.contextmanager
def _locked(path: Path):
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def shared_server(directory: Path, environ=os.environ):
    """``find_server()``'s URL, shared by every process that passes the same ``directory``.

    The first process finds the server or starts a throwaway cluster, under a file lock, and
    records it with a count of its users; the last user to leave destroys the cluster.
    """
    directory.mkdir(parents=True, exist_ok=True)
    lock, state_file = directory / "postgres.lock", directory / "postgres.json"
    with _locked(lock):
        state = json.loads(state_file.read_text()) if state_file.exists() else None
        if state is None:
            url, cluster = find_server(environ)
            state = {"url": url, "users": 0, "root": None, "port": None}
            if cluster is not None:
                state.update(root=str(cluster.root), port=cluster.port)
        state["users"] += 1
        state_file.write_text(json.dumps(state))
    try:
        yield state["url"]
    finally:
        with _locked(lock):
            state = json.loads(state_file.read_text())
            state["users"] -= 1
            if state["users"] > 0:
                state_file.write_text(json.dumps(state))
            else:
                state_file.unlink()
                if state["root"]:
                    PostgresCluster(Path(state["root"]), state["port"]).destroy()
