"""Activities ("cruds"): feeds, search, posting and replies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from werkzeug.exceptions import NotFound

from ..errors import ValidationFailed
from ..store import Store, new_activity
from ..telemetry.otel.spans import span
from .validation import message_errors, stored_text, text_field

MAX_CHARS = 280
# A search term is a few words; SQLite refuses very long LIKE patterns and very many of them.
MAX_SEARCH_CHARS = 280
MAX_SEARCH_WORDS = 20
FEED_LIMIT = 100
TTLS = {
    "30-days": timedelta(days=30),
    "7-days": timedelta(days=7),
    "3-days": timedelta(days=3),
    "1-day": timedelta(days=1),
    "12-hours": timedelta(hours=12),
    "3-hours": timedelta(hours=3),
    "1-hour": timedelta(hours=1),
}


def _now() -> datetime:
    return datetime.now(UTC)


def _with_replies(store: Store, activities: list[dict], now: datetime) -> list[dict]:
    replies = store.replies_to([a["uuid"] for a in activities], now)
    for activity in activities:
        activity["replies"] = replies[activity["uuid"]]
    return activities


def home_activities(store: Store) -> list[dict]:
    """Everyone's unexpired cruds, newest first, each with its replies."""
    with span("home_activities") as current:
        now = _now()
        results = _with_replies(store, store.home_activities(now, FEED_LIMIT), now)
        current.set_attribute("app.now", now.isoformat())
        current.set_attribute("app.result_length", len(results))
        return results


def user_activities(store: Store, handle: str) -> list[dict]:
    """One user's unexpired cruds; 404 for an unknown handle."""
    user = store.user_by_handle(handle)
    if user is None:
        raise NotFound(f"No user has the handle @{handle}.")
    now = _now()
    return _with_replies(store, store.user_activities(user["uuid"], now, FEED_LIMIT), now)


def notification_activities(store: Store, acting_handle: str) -> list[dict]:
    """Replies to the acting user's cruds and cruds that mention them, newest first."""
    user = store.user_by_handle(acting_handle)
    now = _now()
    found = store.notification_activities(user["uuid"], acting_handle, now, FEED_LIMIT)
    return _with_replies(store, found, now)


def search_activities(store: Store, term: str | None) -> list[dict]:
    """Unexpired cruds containing every word of the term; 422 search_term_blank or _too_long."""
    words = (term or "").split()
    if not words:
        raise ValidationFailed(["search_term_blank"])
    if len(term) > MAX_SEARCH_CHARS or len(words) > MAX_SEARCH_WORDS:
        raise ValidationFailed(["search_term_too_long"])
    with span("search_activities", **{"app.search_words": len(words)}) as current:
        now = _now()
        results = _with_replies(store, store.search_activities(words, now, FEED_LIMIT), now)
        current.set_attribute("app.result_length", len(results))
        return results


def show_activity(store: Store, activity_uuid: str) -> dict:
    """One unexpired crud with its replies; 404 otherwise."""
    now = _now()
    activity = store.activity(activity_uuid, now)
    if activity is None:
        raise NotFound("That crud does not exist or has expired.")
    return _with_replies(store, [activity], now)[0]


def create_activity(store: Store, acting_handle: str, body: dict) -> dict:
    """Post a crud as the acting user; 422 with every applicable code."""
    message = stored_text(body, "message")
    ttl = text_field(body, "ttl")
    errors = message_errors(message, MAX_CHARS)
    if ttl not in TTLS:
        errors.append("ttl_blank")
    with span("create_activity", **{"app.ttl": str(ttl), "app.message_length": len(message or "")}) as current:
        if errors:
            current.set_attribute("app.errors", errors)
            raise ValidationFailed(errors)
        now = _now()
        expires_at = now + TTLS[ttl]
        # One INSERT, no BEGIN/COMMIT: a single statement is atomic on both databases (autocommit),
        # and on SQLite it takes the write lock before it reads, as BEGIN IMMEDIATE would.
        inserted = store.insert_activity_by(acting_handle, message, now, expires_at)
        if inserted is None:
            raise _acting_user_missing(acting_handle)
        activity_uuid, author = inserted
        current.set_attribute("app.activity_uuid", activity_uuid)
        return new_activity(author, activity_uuid, message, now, expires_at, None)


def reply_to_activity(store: Store, acting_handle: str, activity_uuid: str, body: dict) -> dict:
    """Reply to an unexpired crud as the acting user; the reply expires with its crud."""
    message = stored_text(body, "message")
    errors = message_errors(message, MAX_CHARS)
    now = _now()
    if errors:  # nothing is written: 404 for a crud that is not there, 422 otherwise
        if store.activity(activity_uuid, now) is None:
            raise NotFound("That crud does not exist or has expired.")
        raise ValidationFailed(errors)
    # Two writes, the reply and its crud's replies_count: a transaction, so neither is kept without
    # the other (a failure or an outage between them would leave the count wrong). Counting first
    # also checks that the crud exists and has not expired, and on PostgreSQL locks its row, so
    # concurrent replies to one crud add up.
    with store.transaction():
        expires = store.count_reply(activity_uuid, now)
        if expires is None:
            raise NotFound("That crud does not exist or has expired.")
        expires_at = datetime.fromisoformat(expires)
        inserted = store.insert_activity_by(acting_handle, message, now, expires_at, reply_to=activity_uuid)
        if inserted is None:
            raise _acting_user_missing(acting_handle)
    reply_uuid, author = inserted
    return new_activity(author, reply_uuid, message, now, expires_at, activity_uuid)


def _acting_user_missing(handle: str) -> Exception:
    # The acting user is made at startup (migrations) and users are never deleted: a database edited
    # by hand. A 500, as any bug; raised inside a transaction, it rolls the transaction back.
    return LookupError(f"the acting user @{handle} does not exist")
