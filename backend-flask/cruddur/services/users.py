"""Users: the Cruddur user a Cognito user acts as."""

from __future__ import annotations

import logging
from datetime import datetime

from ..store import Store

log = logging.getLogger(__name__)


def sign_in(store: Store, handle: str, cognito_user_id: str, display_name: str | None, now: datetime) -> None:
    """Make sure the user with this handle exists (a new user on first use, named `display_name` or
    the handle) and records this Cognito user; one read when both are already so."""
    user = store.user_by_handle(handle)
    if user is not None and user["cognito_user_id"] == cognito_user_id:
        return
    if user is not None and user["cognito_user_id"] is not None:
        # The pool's username now belongs to another Cognito user (the old one deleted, a new pool).
        log.warning("sign-in: @%s now signs in as another Cognito user", handle)
    store.sign_in_user(handle, display_name or handle, cognito_user_id, now)
    if user is None:
        log.info("sign-in: new user @%s", handle)
