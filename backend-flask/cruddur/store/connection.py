"""Connections: one per thread for SQLite, a bounded pool per worker process for PostgreSQL.

Both are created on first use in the process that uses them (a gunicorn worker, after fork), never
at import or in the gunicorn master. Once a PostgreSQL connection attempt has failed, requests are
answered 503 at once while a background probe waits for the server to accept connections again.
`Outage` turns "the database cannot be reached" into a 503 and reports it once per interval, not
once per request.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import suppress

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
# The pool does not retry a failed connection attempt on its own schedule (its backoff doubles
# from 1 s, so a worker would wait seconds after PostgreSQL is back): with no reconnect time it
# gives up at once and calls reconnect_failed, which marks the database down; `Availability`
# retries instead.
RECONNECT_SECONDS = 0.0
PROBE_INTERVAL = 0.2  # seconds between two connection attempts of the probe while the database is down
WAIT_SLICE = 0.1  # a request waiting for a pooled connection looks this often whether it is down


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


class DatabaseDown(Exception):
    """No connection is tried: the last attempt failed and the probe has not connected since."""


class Availability:
    """Whether one process's pool is known to be unable to connect, and the probe that ends it.

    `lost()` marks the database down and starts the probe: one daemon thread per process, making
    one connection attempt (at most the connect timeout) every PROBE_INTERVAL. When one succeeds
    it has the pool check its idle connections (dropping those the server closed, so no request
    is lent one) and marks the database up. `doubt()` starts the probe without marking the
    database down: its first attempt decides. Requests never wait for the probe, and while the
    database is up nothing runs.
    """

    def __init__(self, connect, pool_check, interval: float = PROBE_INTERVAL):
        self._connect = connect  # one connection attempt, closed at once; raises if refused
        self._pool_check = pool_check
        self.interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._probe: threading.Thread | None = None
        self._losses = 0  # lost() calls: one during a probe's last attempt keeps it probing
        self.down = False
        self.reason = "a connection attempt failed"

    def lost(self) -> None:
        """A connection attempt failed: answer 503 until the probe connects."""
        with self._lock:
            self._losses += 1
            self.down = True
            self._start()

    def doubt(self) -> None:
        """No connection came in time (the server may be unreachable, or the pool only busy): probe."""
        with self._lock:
            self._start()

    def stop(self) -> None:
        """End the probe (at worker exit)."""
        self._stop.set()

    def _start(self) -> None:
        if self._probe is None and not self._stop.is_set():
            self._probe = threading.Thread(target=self._run, name="cruddur-database-probe", daemon=True)
            self._probe.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                losses = self._losses
            try:
                self._connect()
            except Exception as error:  # any failure is one more failed attempt; keep probing
                with self._lock:
                    self._losses += 1
                    self.down = True
                    self.reason = f"{type(error).__name__}: {str(error).strip()}"
                self._stop.wait(self.interval)
                continue
            if self.down:
                with suppress(Exception):  # the pool handles a broken connection itself
                    self._pool_check()
            with self._lock:
                if self._losses == losses:
                    self.down = False
                    self._probe = None
                    return


class PostgresConnections:
    """A psycopg_pool per worker process: at most `size` connections, lent one per request.

    A connection is checked with one empty round trip before it is lent, so after a PostgreSQL
    restart the first request does not fail on a connection the server closed. A failed
    connection attempt (the pool's reconnect_failed, or the probe's) marks the database down: `get`
    then raises DatabaseDown at once (503) until the `Availability` probe connects again. A
    request that got no connection within its timeout has the probe try one.
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
        self._availability: Availability | None = None
        self._pid: int | None = None

    def _configure(self, conn) -> None:
        set_statement_timeout(conn, self.statement_timeout)
        _instrumented(conn, self.extensions)

    def _probe_connect(self) -> None:
        import psycopg

        psycopg.connect(self.database.url, **postgresql_kwargs(self.connect_timeout)).close()

    def _open(self, pid: int) -> None:
        from psycopg_pool import ConnectionPool

        # A pool inherited through fork is the parent's: left alone, never closed here (closing
        # would end the parent's sessions on the shared sockets); so is its probe's state.
        availability = Availability(self._probe_connect, lambda: pool.check())
        pool = ConnectionPool(
            self.database.url,
            kwargs=postgresql_kwargs(self.connect_timeout),
            min_size=1,
            max_size=self.size,
            timeout=self.connect_timeout,
            configure=self._configure,
            check=check_alive,
            reconnect_timeout=RECONNECT_SECONDS,
            reconnect_failed=lambda _pool: availability.lost(),
            name="cruddur",
            open=False,
        )
        pool.open()  # after `pool` is bound: its first connection attempt may already call the probe
        self._pool, self._availability, self._pid = pool, availability, pid

    def pool(self):
        """This process's psycopg_pool.ConnectionPool, opened (in the background) on first use."""
        pid = os.getpid()
        if self._pid != pid:
            with self._lock:
                if self._pid != pid:
                    self._open(pid)
        return self._pool

    def get(self, timeout: float | None = None):
        """A connection for one request; DatabaseDown at once while the database is known to be down.

        Waits at most `timeout` (default the connect timeout) for a pooled connection, in short
        slices, so a request already waiting when another finds the database down gives up too.
        At the end of the wait, DatabaseDown too, and the probe tries a connection.
        """
        from psycopg_pool import PoolTimeout

        pool, availability = self.pool(), self._availability
        timeout = self.connect_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not availability.down:
            remaining = deadline - time.monotonic()
            try:
                # More than zero: the pool refuses a timeout of 0 even with a connection ready.
                return pool.getconn(max(min(WAIT_SLICE, remaining), 0.001))
            except PoolTimeout as error:
                if remaining <= WAIT_SLICE:
                    availability.doubt()
                    raise DatabaseDown(f"no connection within {timeout:.1f} s") from error
        raise DatabaseDown(availability.reason)

    def put(self, conn) -> None:
        """Give the connection back (the pool rolls back a transaction left open, drops a broken one)."""
        self.pool().putconn(conn)

    def close(self, timeout: float = 5.0) -> None:
        """Close this process's pool and end its probe (at worker exit)."""
        if self._pool is not None and self._pid == os.getpid():
            self._availability.stop()
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
