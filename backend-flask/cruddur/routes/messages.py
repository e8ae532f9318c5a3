"""Direct message endpoints."""

from __future__ import annotations

from flask import Blueprint, jsonify

from ..auth import require_sign_in
from ..services import messages
from ..store import get_store
from . import acting_handle, json_body

bp = Blueprint("messages", __name__, url_prefix="/api")
bp.before_request(require_sign_in)  # every conversation is private to its two members


@bp.get("/message_groups")
def message_groups():
    """The acting user's conversations."""
    return jsonify(messages.message_groups(get_store(), acting_handle()))


@bp.get("/messages/@<handle>")
def conversation(handle):
    """The conversation with one user."""
    return jsonify(messages.messages_with(get_store(), acting_handle(), handle))


@bp.post("/messages")
def create():
    """Send a message as the acting user."""
    return jsonify(messages.create_message(get_store(), acting_handle(), json_body()))
