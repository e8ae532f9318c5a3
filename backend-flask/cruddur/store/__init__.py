"""The store: SQL on SQLite (the embedded default) or PostgreSQL, wired into Flask.

- `dialect.py`: what differs between the two databases (URLs, placeholders, outage errors);
- `connection.py`: connections per thread (SQLite) or a pool per worker (PostgreSQL), outages;
- `migrations.py` and `versions/`: the schema, applied by yoyo-migrations at startup;
- `queries.py`: every statement; `shapes.py`: rows in the API's shape.

A request takes a connection on its first query (`get_store()`) and gives it back at teardown.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager, suppress

from flask import Flask, current_app, g

from ..config import Config
from ..telemetry.core.shutdown import on_shutdown
from .connection import DatabaseDown, Outage, PostgresConnections, SQLiteConnections
from .dialect import SQLITE, Database, connect_postgresql, connect_sqlite, in_transaction
from .migrations import migrate
from .queries import Store
from .shapes import iso, new_activity

log = logging.getLogger(__name__)
HEALTH_TIMEOUT = 1.0  # seconds the health check waits for a pooled connection

__all__ = ["Store", "get_store", "init_app", "iso", "new_activity", "open_store"]


def get_store(timeout: float | None = None) -> Store:
    """The request's store, on a connection it holds until teardown; 503 when the database is down."""
    if "store" not in g:
        connections = current_app.extensions["cruddur.connections"]
        outage: Outage = current_app.extensions["cruddur.database_outage"]
        try:
            conn = connections.get(timeout)
        except Exception as error:
            if isinstance(error, DatabaseDown) or connections.database.is_unavailable(error):
                raise outage.unavailable(error) from error
            raise
        if outage.down_since is not None:
            outage.recovered()
        g.store = Store(conn, connections.database, outage.unavailable)
    return g.store


def release_store(_exc=None) -> None:
    """End the request's use of its connection; a transaction left open (a bug) is rolled back."""
    store = g.pop("store", None)
    if store is None:
        return
    if in_transaction(store.conn):
        with suppress(Exception):  # a lost connection has nothing to roll back
            store.conn.rollback()
    current_app.extensions["cruddur.connections"].put(store.conn)


def database_state() -> str:
    """ "ok" or "unavailable", for the health check (waits at most HEALTH_TIMEOUT for a connection)."""
    from ..errors import DatabaseUnavailable

    try:
        get_store(HEALTH_TIMEOUT).ping()
    except DatabaseUnavailable:
        return "unavailable"
    return "ok"


@contextmanager
def open_store(config: Config):
    """A store on its own connection, outside any request (scripts, tests); closed afterwards."""
    database = Database.parse(config.database)
    if database.dialect == SQLITE:
        conn = connect_sqlite(database.path)
    else:
        conn = connect_postgresql(database, config.database_connect_timeout, config.database_statement_timeout)
    try:
        yield Store(conn, database)
    finally:
        conn.close()


def init_app(app: Flask, config: Config) -> None:
    """Apply migrations (seeding in development), set up this process's connections, register teardown."""
    database = Database.parse(config.database)
    migrate(database, config.user_handle, config.seeds_database, config.database_connect_timeout)
    if database.dialect == SQLITE:
        connections = SQLiteConnections(database, app.extensions)
    else:
        connections = PostgresConnections(
            database,
            config.pool_size,
            config.database_connect_timeout,
            config.database_statement_timeout,
            app.extensions,
        )
    app.extensions["cruddur.database"] = database
    app.extensions["cruddur.connections"] = connections
    # First at worker exit (requests are done): PostgreSQL sees sessions end, not vanish.
    on_shutdown(app, 5, "database", connections.close)
    app.extensions["cruddur.database_outage"] = Outage(database, app.extensions)
    app.teardown_appcontext(release_store)
    log.info("database: %s %s", database.dialect, database.redacted)
