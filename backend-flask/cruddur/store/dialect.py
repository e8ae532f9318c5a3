"""Everything that differs between SQLite and PostgreSQL, in one place.

The queries are written once, in SQL both databases run, with `?` placeholders; a Dialect turns
them into what its driver takes, opens its connections, and says which driver errors mean "the
database cannot be reached right now" (a 503) rather than a bug (a 500).

psycopg is imported only when PostgreSQL is used: on SQLite (`make run`) it would add about a
quarter to every worker's start.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
# SQLite errors that are the database's state, not the query's fault (a writer that held the lock
# past the busy timeout, a file that cannot be opened).
_SQLITE_UNAVAILABLE = ("database is locked", "unable to open database file", "disk i/o error")


@dataclass(frozen=True)
class Database:
    """A parsed DATABASE_URL: which dialect, and how to reach it."""

    dialect: str
    url: str  # as configured, with its password: never log or show it, use `redacted`
    path: str = ""  # SQLite only

    @classmethod
    def parse(cls, url: str) -> Database:
        """`sqlite:///path` or `postgresql://user:password@host:port/dbname?params`."""
        if url.startswith("sqlite:///"):
            return cls(SQLITE, url, url[len("sqlite:///") :])
        if url.startswith("postgresql://"):
            return cls(POSTGRESQL, url)
        raise ValueError("unsupported database URL scheme")

    @property
    def redacted(self) -> str:
        """The URL without its password (and without query parameters, which may hold one)."""
        if self.dialect == SQLITE:
            return self.url
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{parts.username}@{host}" if parts.username else host
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    @property
    def user(self) -> str:
        """The user in the URL ("" if none)."""
        return "" if self.dialect == SQLITE else unquote(urlsplit(self.url).username or "")

    @property
    def password(self) -> str:
        """The password in the URL ("" if none): what every log line and error text is cleaned of."""
        return "" if self.dialect == SQLITE else unquote(urlsplit(self.url).password or "")

    @property
    def yoyo_url(self) -> str:
        """The URL for yoyo-migrations, which names the psycopg 3 driver in the scheme."""
        return self.url if self.dialect == SQLITE else "postgresql+psycopg" + self.url[len("postgresql") :]

    @property
    def begin(self) -> str:
        """The statement that opens a write transaction.

        SQLite: IMMEDIATE takes the write lock up front, so two writers never deadlock upgrading a
        read lock. PostgreSQL locks rows as it writes them.
        """
        return "BEGIN IMMEDIATE" if self.dialect == SQLITE else "BEGIN"

    def sql(self, text: str) -> str:
        """A query in this driver's placeholder style."""
        return text if self.dialect == SQLITE else _format_style(text)

    def is_unavailable(self, error: BaseException) -> bool:
        """Whether a driver error means the database is unreachable or down, not a bad query."""
        if isinstance(error, sqlite3.OperationalError):
            return str(error).lower().startswith(_SQLITE_UNAVAILABLE)
        if self.dialect == POSTGRESQL:
            import psycopg

            # Connection refused or lost, PoolTimeout, server shutting down or starting up, statement timeout.
            return isinstance(error, psycopg.OperationalError)
        return False

    def clean(self, text: str) -> str:
        """Text (an error message) with the password, if any, cut out (as written in the URL too)."""
        raw = urlsplit(self.url).password if self.dialect != SQLITE else None
        for secret in {self.password, raw} - {None, ""}:
            text = text.replace(secret, "***")
        return text


@lru_cache(maxsize=256)
def _format_style(text: str) -> str:
    # The queries hold no literal `%` or `?` (patterns are parameters), so this is exact.
    return text.replace("?", "%s")


def connect_sqlite(path: str) -> sqlite3.Connection:
    """Open a SQLite connection tuned for a multi-process web server."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Looked up on the module at call time so OpenTelemetry's sqlite3 instrumentation can wrap it.
    conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 10000")
    # In WAL mode NORMAL never corrupts the database and loses nothing when the app crashes; only
    # a power cut can drop the last commits. FULL fsyncs every commit on the request path.
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def postgresql_kwargs(connect_timeout: float) -> dict:
    """Connection settings on top of the URL: autocommit (the store says BEGIN), rows as dicts."""
    from psycopg.rows import dict_row

    # libpq takes whole seconds and treats anything under 2 as 2.
    return {"autocommit": True, "row_factory": dict_row, "connect_timeout": max(2, round(connect_timeout))}


def connect_postgresql(database: Database, connect_timeout: float, statement_timeout: float):
    """One PostgreSQL connection (for migrations and scripts; requests use the pool)."""
    import psycopg

    conn = psycopg.connect(database.url, **postgresql_kwargs(connect_timeout))
    set_statement_timeout(conn, statement_timeout)
    return conn


def set_statement_timeout(conn, seconds: float) -> None:
    """Cancel any statement of this psycopg connection that runs longer than `seconds`."""
    import psycopg

    psycopg.Cursor(conn).execute(f"SET statement_timeout = {int(seconds * 1000)}")


def check_alive(conn) -> None:
    """The pool's check before lending a connection: one empty round trip, raising if it is gone.

    Through a plain cursor, so the check is not traced as a statement of the request.
    """
    import psycopg

    with psycopg.Cursor(conn) as cursor:
        cursor.execute("")


def in_transaction(conn) -> bool:
    """Whether a connection has a transaction open (or, for PostgreSQL, a failed one)."""
    if isinstance(conn, sqlite3.Connection):
        return conn.in_transaction
    from psycopg.pq import TransactionStatus

    return conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR)
