"""Connections: one per thread for SQLite, a bounded pool per worker process for PostgreSQL.

Both are created on first use in the process that uses them (a gunicorn worker, after fork), never
at import or in the gunicorn master. `Outage` turns "the database cannot be reached" into a 503
and reports it once per interval, not once per request.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from ..errors import DatabaseUnavailable
from .dialect import (
    Database,
    check_alive,
    connect_sqlite,
    postgresql_kwargs,
    set_statement_timeout,
)

log = logging.getLogger(__name__)
INSTRUMENT = "cruddur.instrument_connection"  # set by telemetry/tracing.py when it is on
ROLLBAR = "cruddur.rollbar"
OUTAGE_REPORT_INTERVAL = 60.0  # seconds between two warnings / Rollbar items of one outage
RETRY_AFTER_SECONDS = 5
# How long the pool keeps retrying one lost connection before it gives up and lets the next
# request start afresh. Its backoff doubles from 1 s: left at the default (5 minutes), the app
# could wait a minute after PostgreSQL is back before trying again.
RECONNECT_SECONDS = 10.0


def _instrumented(conn, extensions: dict):
    # Read when a connection opens: tracing (set up after the store) may wrap connections.
    instrument = extensions.get(INSTRUMENT)
    return instrument(conn) if instrument else conn


class SQLiteConnections:
    """One open connection per thread of a process, reused by every request that thread serves.

    Opening a SQLite connection per request (file open, WAL index, PRAGMAs, schema parse, and a
    checkpoint when the last one closes) cost about 15 % of a worker's CPU. A connection is
    never shared between threads, and a process forked after one was opened opens its own.
    """

    def __init__(self, database: Database, extensions: dict):
        self.database = database
        self.extensions = extensions
        self._local = threading.local()

    def get(self, timeout: float | None = None):
        """This thread's connection, opened on first use."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.conn = _instrumented(connect_sqlite(self.database.path), self.extensions)
            local.pid = os.getpid()
        return local.conn

    def put(self, conn) -> None:
        """Nothing to do: the thread keeps its connection."""

    def close(self, timeout: float = 0) -> None:
        """Nothing pooled to close."""


class PostgresConnections:
    """A psycopg_pool per worker process: at most `size` connections, lent one per request.

    A connection is checked with one empty round trip before it is lent, so after a PostgreSQL
    restart the first request does not fail on a connection the server closed; while the server
    is down, `get` gives up after the connect timeout with PoolTimeout, which is an outage (503).
    """

    def __init__(self, database: Database, size: int, connect_timeout: float, statement_timeout: float, extensions):
        # The pool logs a warning for every failed reconnection attempt; Outage reports the outage.
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
        self.database = database
        self.size = size
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.extensions = extensions
        self._lock = threading.Lock()
        self._pool = None
        self._pid: int | None = None

    def _configure(self, conn) -> None:
        set_statement_timeout(conn, self.statement_timeout)
        _instrumented(conn, self.extensions)

    def pool(self):
        """This process's psycopg_pool.ConnectionPool, opened (in the background) on first use."""
        pid = os.getpid()
        if self._pid != pid:
            from psycopg_pool import ConnectionPool

            with self._lock:
                if self._pid != pid:
                    # A pool inherited through fork is the parent's: left alone, never closed here
                    # (closing would end the parent's sessions on the shared sockets).
                    self._pool = ConnectionPool(
                        self.database.url,
                        kwargs=postgresql_kwargs(self.connect_timeout),
                        min_size=1,
                        max_size=self.size,
                        timeout=self.connect_timeout,
                        configure=self._configure,
                        check=check_alive,
                        reconnect_timeout=RECONNECT_SECONDS,
                        name="cruddur",
                        open=True,
                    )
                    self._pid = pid
        return self._pool

    def get(self, timeout: float | None = None):
        """A connection for one request (PoolTimeout after `timeout`, default the connect timeout)."""
        return self.pool().getconn(timeout)

    def put(self, conn) -> None:
        """Give the connection back (the pool rolls back a transaction left open, drops a broken one)."""
        self.pool().putconn(conn)

    def close(self, timeout: float = 5.0) -> None:
        """Close this process's pool (at worker exit)."""
        if self._pool is not None and self._pid == os.getpid():
            self._pool.close(timeout)


class Outage:
    """Driver errors that mean "database unavailable", counted; reported once per interval."""

    def __init__(self, database: Database, extensions: dict, interval: float = OUTAGE_REPORT_INTERVAL):
        self.database = database
        self.extensions = extensions
        self.interval = interval
        self._lock = threading.Lock()
        self._reported_at: float | None = None
        self._since_report = 0
        self.down_since: float | None = None
        self.failures = 0

    def unavailable(self, error: BaseException) -> DatabaseUnavailable:
        """Count the error; warn and tell Rollbar if the interval has passed; return the 503."""
        now = time.monotonic()
        with self._lock:
            self.failures += 1
            if self.down_since is None:
                self.down_since = now
            report = self._reported_at is None or now - self._reported_at >= self.interval
            if report:
                self._reported_at, suppressed, self._since_report = now, self._since_report, 0
            else:
                self._since_report += 1
        if report:
            self._report(error, suppressed)
        return DatabaseUnavailable(retry_after=RETRY_AFTER_SECONDS)

    def _report(self, error: BaseException, suppressed: int) -> None:
        detail = self.database.clean(str(error).strip().splitlines()[0] if str(error).strip() else "")
        message = "database %s unavailable (%s: %s); answering 503"
        args = [self.database.redacted, type(error).__name__, detail]
        if suppressed:
            message += " (%d more since the last warning)"
            args.append(suppressed)
        log.warning(message, *args, extra={"database": self.database.dialect})
        reporter = self.extensions.get(ROLLBAR)
        if reporter is not None:
            reporter.report_message(
                f"database {self.database.redacted} unavailable: {type(error).__name__}: {detail}", "error"
            )

    def recovered(self) -> None:
        """A connection worked again: end the outage (one info line with its length).

        The report interval keeps running: a flapping database is still reported once per interval.
        """
        with self._lock:
            down_since, self.down_since = self.down_since, None
        if down_since is not None:
            log.info("database %s available again after %.1f s", self.database.redacted, time.monotonic() - down_since)
