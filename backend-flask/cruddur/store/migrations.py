"""The schema: yoyo-migrations applies `versions/*.sql` in order, once, then seeds when asked.

Every worker of every instance runs `migrate` when it starts, so it must be safe to run many times
at once: one process at a time holds a lock (a PostgreSQL advisory lock, or a lock file beside the
SQLite database), applies what is missing and seeds; the others then find nothing to do. The lock
is released when its holder's connection or file closes, even if the process is killed.

`python -m cruddur.store.migrations` (`make db-migrate`) does the same on demand.

yoyo's own lock (a row in `yoyo_lock`) is not taken around the migrations: a process killed while
holding it would leave the row behind and block every later start until someone ran
`yoyo break-lock`. (yoyo takes it by itself only for a moment, to create its bookkeeping tables in
a new database.)
"""

from __future__ import annotations

import fcntl
import logging
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from .. import seed
from .dialect import SQLITE, Database, connect_postgresql, connect_sqlite
from .queries import Store

log = logging.getLogger(__name__)
# pg_advisory_lock takes a bigint: this one is "cruddur" in ASCII, for the schema of this database.
ADVISORY_LOCK_KEY = int.from_bytes(b"cruddur", "big")
MIGRATION_STATEMENT_TIMEOUT = 120.0  # seconds: waiting for the lock while another process migrates
VERSIONS = resources.files(__package__).joinpath("versions")


@contextmanager
def _locked(database: Database, connect_timeout: float):
    """A connection to `database`, held while no other process migrates it."""
    if database.dialect == SQLITE:
        if database.path != ":memory:":
            Path(database.path).parent.mkdir(parents=True, exist_ok=True)
            with open(f"{database.path}.init-lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                with closing(connect_sqlite(database.path)) as conn:
                    # WAL needs an exclusive lock that the busy timeout does not wait for:
                    # switched here, under the file lock, before anyone writes.
                    conn.execute("PRAGMA journal_mode = WAL")
                    yield conn
            return
        with closing(connect_sqlite(database.path)) as conn:
            yield conn
        return
    with closing(connect_postgresql(database, connect_timeout, MIGRATION_STATEMENT_TIMEOUT)) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        try:
            yield conn
        finally:
            if not conn.broken:
                conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))


def version_ids() -> list[str]:
    """The ids of the migrations in versions/ (yoyo's id is the file name without `.sql`)."""
    names = (entry.name for entry in VERSIONS.iterdir())
    return sorted(n[: -len(".sql")] for n in names if n.endswith(".sql") and not n.endswith(".rollback.sql"))


def _up_to_date(store: Store) -> bool:
    """Whether yoyo has applied every version here (the usual start): then yoyo is not even loaded."""
    try:
        applied = store.applied_migrations()
    except Exception:  # no _yoyo_migration table yet: a new database (a lost connection fails again in yoyo)
        return False
    return set(version_ids()) <= applied


def _apply(database: Database) -> list[str]:
    """Apply the migrations not applied yet (each in its own transaction); return their ids."""
    from yoyo import get_backend, read_migrations  # loaded only when there is something to apply

    migrations = read_migrations(str(VERSIONS))
    backend = get_backend(database.yoyo_url)
    with backend:  # closes yoyo's connection
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [migration.id for migration in pending]


def migrate(database: Database, user_handle: str, seed_data: bool, connect_timeout: float = 5.0) -> list[str]:
    """Bring the schema up to date, seed once if `seed_data`, and make sure the acting user exists.

    Returns the ids of the migrations this call applied (none when another process was first).
    """
    with _locked(database, connect_timeout) as conn:
        store = Store(conn, database)
        applied = [] if _up_to_date(store) else _apply(database)
        for migration_id in applied:
            log.info("applied migration %s to %s", migration_id, database.redacted)
        now = datetime.now(UTC)
        with store.transaction():
            if seed_data and not store.is_seeded():
                seed.write(store, now)
                store.mark_seeded(now)
                log.info("seeded the database %s", database.redacted)
            store.ensure_user(user_handle, user_handle, now)
    return applied


def main() -> int:
    """`make db-migrate`: apply the migrations to DATABASE_URL (seeding in development)."""
    from ..config import Config

    config = Config.from_env()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    database = Database.parse(config.database)
    applied = migrate(database, config.user_handle, config.seeds_database, config.database_connect_timeout)
    print(f"{database.redacted}: {len(applied)} migration(s) applied ({', '.join(applied) or 'up to date'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
