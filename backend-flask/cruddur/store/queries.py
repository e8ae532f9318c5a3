"""The queries: every SQL statement of the app, written once for SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from datetime import datetime

from .dialect import Database, in_transaction
from .shapes import activity_row as _activity
from .shapes import iso, new_uuid

ACTIVITY_COLUMNS = """
  a.uuid, u.handle, u.display_name, a.message, a.created_at, a.expires_at,
  a.likes_count, a.replies_count, a.reposts_count, a.reply_to_activity_uuid
"""
MESSAGE_COLUMNS = "m.uuid, u.display_name, u.handle, m.message, m.created_at"


class Store:
    """Queries over one connection; every method is one unit of work."""

    def __init__(self, conn, database: Database, unavailable: Callable[[Exception], Exception] | None = None):
        """`conn` is a sqlite3 or psycopg connection of `database`; `unavailable(error)` turns an
        outage error of the driver into the exception to raise (default: the driver's own)."""
        self.conn = conn
        self.database = database
        self.unavailable = unavailable

    def _execute(self, sql: str, params: tuple = ()):
        # Through a cursor, so an instrumented connection (OpenTelemetry) sees every statement.
        try:
            cursor = self.conn.cursor()
            cursor.execute(self.database.sql(sql), params)
            return cursor
        except Exception as error:
            if self.unavailable is not None and self.database.is_unavailable(error):
                raise self.unavailable(error) from error
            raise

    def ping(self) -> None:
        """One trivial statement: raises when the database cannot answer."""
        self._execute("SELECT 1").fetchone()

    def transaction(self):
        """A write transaction (on SQLite it takes the write lock up front: no upgrade deadlocks)."""
        return _Transaction(self)

    def applied_migrations(self) -> set[str]:
        """The ids of the migrations yoyo-migrations recorded as applied (raises before its first run)."""
        return {row["migration_id"] for row in self._execute("SELECT migration_id FROM _yoyo_migration")}

    def is_seeded(self) -> bool:
        """Whether the seed data has been written."""
        row = self._execute("SELECT value FROM schema_meta WHERE key = 'seeded'").fetchone()
        return row is not None

    def mark_seeded(self, when: datetime) -> None:
        """Record that the seed data was written."""
        self._execute("INSERT INTO schema_meta (key, value) VALUES ('seeded', ?)", (iso(when),))

    # -- users ----------------------------------------------------------------------------------
    def user_by_handle(self, handle: str):
        """The user with this handle, or None."""
        if _unstorable(handle):
            return None
        return self._execute(
            "SELECT uuid, handle, display_name, cognito_user_id FROM users WHERE handle = ?", (handle,)
        ).fetchone()

    def users_by_handle(self, *handles: str) -> dict:
        """The users with these handles, by handle (one statement; a handle nobody has is missing)."""
        wanted = tuple(dict.fromkeys(h for h in handles if not _unstorable(h)))
        if not wanted:
            return {}
        marks = ", ".join("?" for _ in wanted)
        rows = self._execute(f"SELECT uuid, handle, display_name FROM users WHERE handle IN ({marks})", wanted)
        return {row["handle"]: row for row in rows.fetchall()}

    def insert_user(self, handle: str, display_name: str, now: datetime) -> str:
        """Create a user and return its uuid."""
        user_uuid = new_uuid()
        self._execute(
            "INSERT INTO users (uuid, handle, display_name, created_at) VALUES (?, ?, ?, ?)",
            (user_uuid, handle, display_name, iso(now)),
        )
        return user_uuid

    def ensure_user(self, handle: str, display_name: str, now: datetime) -> None:
        """Create the user unless one has this handle (several instances may try at once)."""
        self._execute(
            "INSERT INTO users (uuid, handle, display_name, created_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (handle) DO NOTHING",
            (new_uuid(), handle, display_name, iso(now)),
        )

    def sign_in_user(self, handle: str, display_name: str, cognito_user_id: str, now: datetime) -> None:
        """Record the Cognito user who signs in as `handle`, creating the user if there is none
        (one statement: two first requests at once make one user)."""
        self._execute(
            "INSERT INTO users (uuid, handle, display_name, cognito_user_id, created_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (handle) DO UPDATE SET cognito_user_id = excluded.cognito_user_id",
            (new_uuid(), handle, display_name, cognito_user_id, iso(now)),
        )

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
        if _unstorable(*words):
            return []
        clauses = " AND ".join("LOWER(a.message) LIKE ? ESCAPE '\\'" for _ in words)
        params = tuple(f"%{_escape_like(w.lower())}%" for w in words)
        return self._activities(f"a.expires_at > ? AND {clauses}", (iso(now), *params), limit)

    def activity(self, activity_uuid: str, now: datetime) -> dict | None:
        """One unexpired activity, or None."""
        if _unstorable(activity_uuid):
            return None
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

    def insert_activity_by(
        self,
        handle: str,
        message: str,
        now: datetime,
        expires_at: datetime,
        reply_to: str | None = None,
    ) -> tuple[str, dict] | None:
        """Store a crud (or a reply) by the user with this handle, in one statement; return its uuid
        and its author ({handle, display_name}), or None when no user has the handle.

        A reply's replies_count is not touched: `count_reply`, in the same transaction.
        """
        if _unstorable(handle):
            return None
        activity_uuid = new_uuid()
        # The author's display name comes back through RETURNING: a scalar subquery there is allowed on
        # SQLite (3.35+) and PostgreSQL, where a join is not (RETURNING sees only the inserted table).
        rows = self._execute(
            "INSERT INTO activities (uuid, user_uuid, message, reply_to_activity_uuid, created_at, expires_at)"
            " SELECT ?, uuid, ?, ?, ?, ? FROM users WHERE handle = ?"
            " RETURNING (SELECT u.display_name FROM users u WHERE u.uuid = activities.user_uuid) AS display_name",
            (activity_uuid, message, reply_to, iso(now), iso(expires_at), handle),
        ).fetchall()  # to the end: on SQLite the statement (and its write lock) ends with its last row
        if not rows:
            return None
        return activity_uuid, {"handle": handle, "display_name": rows[0]["display_name"]}

    def count_reply(self, parent_uuid: str, now: datetime) -> str | None:
        """Add one to an unexpired crud's replies_count; return its expires_at, or None (none such)."""
        if _unstorable(parent_uuid):
            return None
        rows = self._execute(
            "UPDATE activities SET replies_count = replies_count + 1 WHERE uuid = ? AND expires_at > ?"
            " RETURNING expires_at",
            (parent_uuid, iso(now)),
        ).fetchall()
        return rows[0]["expires_at"] if rows else None

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
        """Start a conversation between two users unless one exists; return its uuid.

        Two first messages at once between the same pair: on PostgreSQL both transactions may see
        no group; the second insert then waits for the first and does nothing, and reads its row.
        """
        self.ensure_message_group(user_uuid, other_uuid, now)
        return self.message_group_between(user_uuid, other_uuid)

    def ensure_message_group(self, user_uuid: str, other_uuid: str, now: datetime) -> None:
        """Start a conversation between two users unless one exists (see `insert_message_group`)."""
        a, b = sorted((user_uuid, other_uuid))
        self._execute(
            "INSERT INTO message_groups (uuid, user_a_uuid, user_b_uuid, created_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (user_a_uuid, user_b_uuid) DO NOTHING",
            (new_uuid(), a, b, iso(now)),
        )

    def messages(self, group_uuid: str, limit: int) -> list[dict]:
        """A conversation's latest messages, oldest first."""
        rows = self._execute(
            f"SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.uuid = m.user_uuid"
            " WHERE m.message_group_uuid = ? ORDER BY m.created_at DESC, m.uuid DESC LIMIT ?",
            (group_uuid, limit),
        ).fetchall()
        return [dict(row) for row in reversed(rows)]

    def insert_message(self, group_uuid: str, user, message: str, now: datetime) -> dict:
        """Store a message from `user` (a users row) and return it in the API's shape."""
        message_uuid = new_uuid()
        created_at = iso(now)
        self._execute(
            "INSERT INTO messages (uuid, message_group_uuid, user_uuid, message, created_at) VALUES (?, ?, ?, ?, ?)",
            (message_uuid, group_uuid, user["uuid"], message, created_at),
        )
        return _message(message_uuid, user, message, created_at)

    def insert_message_between(self, user, other_uuid: str, message: str, now: datetime) -> dict | None:
        """Store a message from `user` (a users row) in its conversation with `other_uuid`, in one
        statement; return it in the API's shape, or None when the two have no conversation yet."""
        a, b = sorted((user["uuid"], other_uuid))
        message_uuid = new_uuid()
        created_at = iso(now)
        cursor = self._execute(
            "INSERT INTO messages (uuid, message_group_uuid, user_uuid, message, created_at)"
            " SELECT ?, uuid, ?, ?, ? FROM message_groups WHERE user_a_uuid = ? AND user_b_uuid = ?",
            (message_uuid, user["uuid"], message, created_at, a, b),
        )
        return _message(message_uuid, user, message, created_at) if cursor.rowcount == 1 else None


class _Transaction:
    def __init__(self, store: Store):
        self.store = store

    def __enter__(self):
        self.store._execute(self.store.database.begin)
        return self.store

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.store._execute("COMMIT")
        elif in_transaction(self.store.conn):
            # When the connection is gone (an outage) the server has rolled back already; the
            # error that is propagating says more than the failed ROLLBACK would.
            with suppress(Exception):
                self.store._execute("ROLLBACK")
        return False


def _message(message_uuid: str, user, message: str, created_at: str) -> dict:
    # Built from what was written, not read back: one statement (and one span) less per post.
    return {
        "uuid": message_uuid,
        "display_name": user["display_name"],
        "handle": user["handle"],
        "message": message,
        "created_at": created_at,
    }


def _unstorable(*texts: str) -> bool:
    # No stored text holds a NUL (PostgreSQL's text cannot; the services refuse it), so a key or a
    # search word with one matches nothing; PostgreSQL would refuse it as a parameter.
    return any("\x00" in text for text in texts)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
