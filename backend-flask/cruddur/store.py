"""The store: every SQL statement lives here. SQLite through the standard library."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from flask import Flask, current_app, g

from . import seed

log = logging.getLogger(__name__)

ACTIVITY_COLUMNS = """
  a.uuid, u.handle, u.display_name, a.message, a.created_at, a.expires_at,
  a.likes_count, a.replies_count, a.reposts_count, a.reply_to_activity_uuid
"""
MESSAGE_COLUMNS = "m.uuid, u.display_name, u.handle, m.message, m.created_at"


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with a fixed width, so text order is time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def new_uuid() -> str:
    """A random UUID as text."""
    return str(uuid.uuid4())


def connect(path: str) -> sqlite3.Connection:
    """Open a connection tuned for a multi-process web server."""
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


class Store:
    """Queries over one connection; every method is one unit of work."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def _execute(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        # Through a cursor, so an instrumented connection (OpenTelemetry) sees every statement.
        return self.conn.cursor().execute(sql, params)

    # -- schema ---------------------------------------------------------------------------------
    def create_schema(self) -> None:
        """Create the tables if they do not exist."""
        self.conn.executescript(resources.files(__package__).joinpath("schema.sql").read_text())

    def transaction(self):
        """A write transaction that takes the database lock up front (no upgrade deadlocks)."""
        return _Transaction(self)

    def is_seeded(self) -> bool:
        """Whether the seed data has been written."""
        row = self._execute("SELECT value FROM schema_meta WHERE key = 'seeded'").fetchone()
        return row is not None

    def mark_seeded(self, when: datetime) -> None:
        """Record that the seed data was written."""
        self._execute("INSERT INTO schema_meta (key, value) VALUES ('seeded', ?)", (iso(when),))

    # -- users ----------------------------------------------------------------------------------
    def user_by_handle(self, handle: str) -> sqlite3.Row | None:
        """The user with this handle, or None."""
        return self._execute("SELECT uuid, handle, display_name FROM users WHERE handle = ?", (handle,)).fetchone()

    def insert_user(self, handle: str, display_name: str, now: datetime) -> str:
        """Create a user and return its uuid."""
        user_uuid = new_uuid()
        self._execute(
            "INSERT INTO users (uuid, handle, display_name, created_at) VALUES (?, ?, ?, ?)",
            (user_uuid, handle, display_name, iso(now)),
        )
        return user_uuid

    # -- activities -----------------------------------------------------------------------------
    def _activities(self, where: str, params: tuple, limit: int) -> list[dict]:
        rows = self._execute(
            f"SELECT {ACTIVITY_COLUMNS} FROM activities a JOIN users u ON u.uuid = a.user_uuid "
            f"WHERE {where} ORDER BY a.created_at DESC, a.uuid DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [_activity(row) for row in rows]

    def home_activities(self, now: datetime, limit: int) -> list[dict]:
        """Top-level cruds that have not expired, newest first."""
        return self._activities("a.reply_to_activity_uuid IS NULL AND a.expires_at > ?", (iso(now),), limit)

    def user_activities(self, user_uuid: str, now: datetime, limit: int) -> list[dict]:
        """One user's unexpired top-level cruds, newest first."""
        return self._activities(
            "a.user_uuid = ? AND a.reply_to_activity_uuid IS NULL AND a.expires_at > ?",
            (user_uuid, iso(now)),
            limit,
        )

    def notification_activities(self, user_uuid: str, handle: str, now: datetime, limit: int):
        """Unexpired activities by others that reply to this user or mention @handle."""
        return self._activities(
            "a.user_uuid <> ? AND a.expires_at > ? AND ("
            " a.reply_to_activity_uuid IN (SELECT p.uuid FROM activities p WHERE p.user_uuid = ?)"
            " OR a.message LIKE ? ESCAPE '\\')",
            (user_uuid, iso(now), user_uuid, f"%@{_escape_like(handle)}%"),
            limit,
        )

    def search_activities(self, words: list[str], now: datetime, limit: int) -> list[dict]:
        """Unexpired activities whose message contains every word (case-insensitive)."""
        clauses = " AND ".join("LOWER(a.message) LIKE ? ESCAPE '\\'" for _ in words)
        params = tuple(f"%{_escape_like(w.lower())}%" for w in words)
        return self._activities(f"a.expires_at > ? AND {clauses}", (iso(now), *params), limit)

    def activity(self, activity_uuid: str, now: datetime) -> dict | None:
        """One unexpired activity, or None."""
        found = self._activities("a.uuid = ? AND a.expires_at > ?", (activity_uuid, iso(now)), 1)
        return found[0] if found else None

    def replies_to(self, parent_uuids: list[str], now: datetime) -> dict[str, list[dict]]:
        """Unexpired replies to each of these activities, oldest first, keyed by parent uuid."""
        by_parent: dict[str, list[dict]] = {uuid_: [] for uuid_ in parent_uuids}
        if not parent_uuids:
            return by_parent
        marks = ", ".join("?" for _ in parent_uuids)
        rows = self._execute(
            f"SELECT {ACTIVITY_COLUMNS} FROM activities a JOIN users u ON u.uuid = a.user_uuid "
            f"WHERE a.reply_to_activity_uuid IN ({marks}) AND a.expires_at > ? "
            "ORDER BY a.created_at, a.uuid",
            (*parent_uuids, iso(now)),
        ).fetchall()
        for row in rows:
            by_parent[row["reply_to_activity_uuid"]].append(_activity(row))
        return by_parent

    def insert_activity(
        self,
        user_uuid: str,
        message: str,
        now: datetime,
        expires_at: datetime,
        reply_to: str | None = None,
    ) -> str:
        """Store a crud (or a reply, keeping the parent's replies_count true); return its uuid."""
        activity_uuid = new_uuid()
        self._execute(
            "INSERT INTO activities (uuid, user_uuid, message, reply_to_activity_uuid,"
            " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
            (activity_uuid, user_uuid, message, reply_to, iso(now), iso(expires_at)),
        )
        if reply_to is not None:
            self._execute(
                "UPDATE activities SET replies_count = replies_count + 1 WHERE uuid = ?",
                (reply_to,),
            )
        return activity_uuid

    # -- messages -------------------------------------------------------------------------------
    def message_groups(self, user_uuid: str, limit: int) -> list[dict]:
        """The user's conversations, each with the other member and its latest message."""
        rows = self._execute(
            "SELECT mg.uuid, u.display_name, u.handle, m.message, m.created_at"
            " FROM message_groups mg"
            " JOIN users u ON u.uuid = CASE WHEN mg.user_a_uuid = ? THEN mg.user_b_uuid"
            "                          ELSE mg.user_a_uuid END"
            " JOIN messages m ON m.uuid = ("
            "   SELECT m2.uuid FROM messages m2 WHERE m2.message_group_uuid = mg.uuid"
            "   ORDER BY m2.created_at DESC, m2.uuid DESC LIMIT 1)"
            " WHERE ? IN (mg.user_a_uuid, mg.user_b_uuid)"
            " ORDER BY m.created_at DESC LIMIT ?",
            (user_uuid, user_uuid, limit),
        ).fetchall()
        return [dict(row) for row in rows]

    def message_group_between(self, user_uuid: str, other_uuid: str) -> str | None:
        """The uuid of the conversation between two users, or None."""
        a, b = sorted((user_uuid, other_uuid))
        row = self._execute(
            "SELECT uuid FROM message_groups WHERE user_a_uuid = ? AND user_b_uuid = ?", (a, b)
        ).fetchone()
        return row["uuid"] if row else None

    def insert_message_group(self, user_uuid: str, other_uuid: str, now: datetime) -> str:
        """Start a conversation between two users; return its uuid."""
        a, b = sorted((user_uuid, other_uuid))
        group_uuid = new_uuid()
        self._execute(
            "INSERT INTO message_groups (uuid, user_a_uuid, user_b_uuid, created_at) VALUES (?, ?, ?, ?)",
            (group_uuid, a, b, iso(now)),
        )
        return group_uuid

    def messages(self, group_uuid: str, limit: int) -> list[dict]:
        """A conversation's latest messages, oldest first."""
        rows = self._execute(
            f"SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.uuid = m.user_uuid"
            " WHERE m.message_group_uuid = ? ORDER BY m.created_at DESC, m.uuid DESC LIMIT ?",
            (group_uuid, limit),
        ).fetchall()
        return [dict(row) for row in reversed(rows)]

    def insert_message(self, group_uuid: str, user: sqlite3.Row, message: str, now: datetime) -> dict:
        """Store a message from `user` (a users row) and return it in the API's shape."""
        message_uuid = new_uuid()
        created_at = iso(now)
        self._execute(
            "INSERT INTO messages (uuid, message_group_uuid, user_uuid, message, created_at) VALUES (?, ?, ?, ?, ?)",
            (message_uuid, group_uuid, user["uuid"], message, created_at),
        )
        # Built from what was written, not read back: one statement (and one span) less per post.
        return {
            "uuid": message_uuid,
            "display_name": user["display_name"],
            "handle": user["handle"],
            "message": message,
            "created_at": created_at,
        }


class _Transaction:
    def __init__(self, store: Store):
        self.store = store

    def __enter__(self):
        self.store._execute("BEGIN IMMEDIATE")
        return self.store

    def __exit__(self, exc_type, exc, tb):
        self.store._execute("ROLLBACK" if exc_type else "COMMIT")
        return False


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def new_activity(
    user: sqlite3.Row, activity_uuid: str, message: str, now: datetime, expires_at: datetime, reply_to: str | None
) -> dict:
    """The API shape of an activity just inserted, built from what was written (no read-back)."""
    activity = {
        "uuid": activity_uuid,
        "handle": user["handle"],
        "display_name": user["display_name"],
        "message": message,
        "created_at": iso(now),
        "expires_at": iso(expires_at),
        "likes_count": 0,
        "replies_count": 0,
        "reposts_count": 0,
        "replies": [],
    }
    if reply_to is not None:
        activity["reply_to_activity_uuid"] = reply_to
    return activity


def _activity(row: sqlite3.Row) -> dict:
    activity = {
        "uuid": row["uuid"],
        "handle": row["handle"],
        "display_name": row["display_name"],
        "message": row["message"],
        "created_at": row["created_at"],
        "expires_at": row["expires_at"],
        "likes_count": row["likes_count"],
        "replies_count": row["replies_count"],
        "reposts_count": row["reposts_count"],
        "replies": [],
    }
    if row["reply_to_activity_uuid"] is not None:
        activity["reply_to_activity_uuid"] = row["reply_to_activity_uuid"]
    return activity


# -- Flask wiring ---------------------------------------------------------------------------------
class Connections:
    """One open connection per thread of a process, reused by every request that thread serves.

    Opening a SQLite connection per request (file open, WAL index, PRAGMAs, schema parse, and a
    checkpoint when the last one closes) cost about 15 % of a worker's CPU. A connection is
    never shared between threads, and a process forked after one was opened opens its own.
    """

    def __init__(self, path: str, extensions: dict):
        self.path = path
        # Read when a connection opens: tracing (set up after the store) may wrap connections.
        self.extensions = extensions
        self._local = threading.local()

    def get(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            conn = connect(self.path)
            instrument = self.extensions.get("cruddur.instrument_connection")
            local.conn = instrument(conn) if instrument else conn
            local.pid = os.getpid()
        return local.conn


def get_store() -> Store:
    """The request's store, on this thread's connection."""
    if "store" not in g:
        g.store = Store(current_app.extensions["cruddur.connections"].get())
    return g.store


def release_store(_exc=None) -> None:
    """End the request's use of the connection; a transaction left open (a bug) is rolled back."""
    store = g.pop("store", None)
    if store is not None and store.conn.in_transaction:
        store.conn.rollback()


@contextmanager
def _one_process_at_a_time(database_path: str):
    """Serialize schema setup across gunicorn workers starting together (a file lock beside the db).

    Switching a new database to WAL needs an exclusive lock that SQLite's busy timeout does not
    wait for, so two workers creating the same database could fail with "database is locked".
    """
    if database_path == ":memory:":
        yield
        return
    Path(database_path).parent.mkdir(parents=True, exist_ok=True)
    with open(f"{database_path}.init-lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def init_app(app: Flask, database_path: str, user_handle: str) -> None:
    """Create the schema, seed once, make sure the acting user exists, and register teardown."""
    app.extensions["cruddur.database_path"] = database_path
    app.extensions["cruddur.connections"] = Connections(database_path, app.extensions)
    app.teardown_appcontext(release_store)
    with _one_process_at_a_time(database_path):
        conn = connect(database_path)
        try:
            if database_path != ":memory:":
                conn.execute("PRAGMA journal_mode = WAL")
            store = Store(conn)
            store.create_schema()
            now = datetime.now(UTC)
            with store.transaction():
                if not store.is_seeded():
                    seed.write(store, now)
                    store.mark_seeded(now)
                    log.info("seeded the database at %s", database_path)
                if store.user_by_handle(user_handle) is None:
                    store.insert_user(user_handle, user_handle, now)
        finally:
            conn.close()
