"""Seed data written once into a new database, so every page has content."""

from __future__ import annotations

from datetime import datetime, timedelta

USERS = (
    ("andrewbrown", "Andrew Brown"),
    ("bayko", "Andrew Bayko"),
    ("worf", "Worf"),
    ("garek", "Garek"),
    ("londo", "Londo Mollari"),
)

# (author, message, hours ago, ttl in days, replies as (author, message, hours ago))
ACTIVITIES = (
    (
        "andrewbrown",
        "Cloud is very fun!",
        2,
        30,
        (("worf", "This post has no honor!", 1),),
    ),
    ("bayko", "The future is very bright, it will be serverless.", 5, 30, ()),
    (
        "garek",
        "My dear doctor, I am just a simple tailor. @andrewbrown, your suit is ready.",
        8,
        30,
        (("londo", "Ah, Garek, you are never simple.", 7),),
    ),
    ("londo", "Only in Cruddur does a crud expire before the Centauri Republic does.", 20, 30, ()),
    ("worf", "Today is a good day to deploy.", 26, 30, ()),
)

# (other member, [(author, message, hours ago)]) -- conversations of andrewbrown
CONVERSATIONS = (
    (
        "bayko",
        (
            ("bayko", "Have you tried the new X-Ray console?", 30),
            ("andrewbrown", "Yes! The service map shows every call.", 29),
            ("bayko", "Nice, and the traces line up with Honeycomb?", 3),
        ),
    ),
    (
        "worf",
        (
            ("worf", "The daemon did not answer. I demand satisfaction.", 12),
            ("andrewbrown", "Start the xray-daemon sidecar first, Worf.", 11),
        ),
    ),
)


def write(store, now: datetime) -> None:
    """Insert the seed users, activities, replies and conversations (inside the caller's txn)."""
    users = {}
    for handle, display_name in USERS:
        existing = store.user_by_handle(handle)
        users[handle] = existing["uuid"] if existing else store.insert_user(handle, display_name, now)
    for author, message, hours, ttl_days, replies in ACTIVITIES:
        created = now - timedelta(hours=hours)
        expires = created + timedelta(days=ttl_days)
        parent = store.insert_activity(users[author], message, created, expires)
        for reply_author, reply_message, reply_hours in replies:
            store.insert_activity(
                users[reply_author],
                reply_message,
                now - timedelta(hours=reply_hours),
                expires,
                reply_to=parent,
            )
    for other, lines in CONVERSATIONS:
        group = store.insert_message_group(users["andrewbrown"], users[other], now)
        for author, message, hours in lines:
            store.insert_message(group, store.user_by_handle(author), message, now - timedelta(hours=hours))
