"""The API's shapes of stored rows (the same for a sqlite3.Row and a psycopg dict row)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with a fixed width, so text order is time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def new_uuid() -> str:
    """A random UUID as text."""
    return str(uuid.uuid4())


def new_activity(
    user, activity_uuid: str, message: str, now: datetime, expires_at: datetime, reply_to: str | None
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


def activity_row(row) -> dict:
    """An activities row (joined with its author) in the API shape."""
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
