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
    with store.transaction():
        other = _other_user(store, handle)
        if errors:
            raise ValidationFailed(errors)
        user = store.user_by_handle(acting_handle)
        group_uuid = store.message_group_between(user["uuid"], other["uuid"])
        if group_uuid is None:
            group_uuid = store.insert_message_group(user["uuid"], other["uuid"], now)
        return store.insert_message(group_uuid, user, message, now)
