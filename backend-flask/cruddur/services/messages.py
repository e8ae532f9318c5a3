"""Direct messages between the acting user and another user."""

from __future__ import annotations

from datetime import UTC, datetime

from werkzeug.exceptions import NotFound

from ..errors import ValidationFailed
from ..store import Store
from .validation import message_errors, stored_text, text_field

MAX_CHARS = 1024
LIMIT = 100


def _other_user(store: Store, handle: str | None):
    user = store.user_by_handle(handle) if handle else None
    if user is None:
        raise NotFound(f"No user has the handle @{handle}.")
    return user


def message_groups(store: Store, acting_handle: str) -> list[dict]:
    """The acting user's conversations, most recently active first."""
    user = store.user_by_handle(acting_handle)
    return store.message_groups(user["uuid"], LIMIT)


def messages_with(store: Store, acting_handle: str, handle: str) -> list[dict]:
    """The conversation with another user, oldest first; 404 for an unknown handle."""
    other = _other_user(store, handle)
    user = store.user_by_handle(acting_handle)
    group_uuid = store.message_group_between(user["uuid"], other["uuid"])
    return store.messages(group_uuid, LIMIT) if group_uuid else []


def create_message(store: Store, acting_handle: str, body: dict) -> dict:
    """Send a message from the acting user, starting the conversation if needed."""
    message = stored_text(body, "message")
    handle = text_field(body, "user_receiver_handle")
    errors = message_errors(message, MAX_CHARS)
    now = datetime.now(UTC)
    users = store.users_by_handle(acting_handle, handle) if handle else {}
    other = users.get(handle)
    if other is None:
        raise NotFound(f"No user has the handle @{handle}.")
    if errors:
        raise ValidationFailed(errors)
    user = users.get(acting_handle)
    if user is None:
        # Made at startup, never deleted: a database edited by hand, a 500 like any bug.
        raise LookupError(f"the acting user @{acting_handle} does not exist")
    # Into the pair's conversation if it exists: one INSERT, atomic on its own (autocommit), and
    # conversations are never deleted.
    sent = store.insert_message_between(user, other["uuid"], message, now)
    if sent is not None:
        return sent
    # The first message of a pair: the conversation and its message in one transaction, so a
    # failure leaves neither. Two first messages at once: see `Store.insert_message_group`; on
    # PostgreSQL the second insert waits for the first transaction, does nothing, and the message
    # statement after it (a new snapshot) finds the conversation.
    with store.transaction():
        store.ensure_message_group(user["uuid"], other["uuid"], now)
        sent = store.insert_message_between(user, other["uuid"], message, now)
        if sent is None:  # made or found just now, and never deleted: a bug (rolled back, a 500)
            raise LookupError("the conversation just started is missing")
    return sent
