"""Activity endpoints."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from ..auth import identify, signed_in
from ..services import activities
from ..store import get_store
from . import acting_handle, json_body

bp = Blueprint("activities", __name__, url_prefix="/api/activities")
bp.before_request(identify)  # feeds are public; a signed-in reader is still named in the traces


@bp.get("/home")
def home():
    """Everyone's cruds, newest first."""
    return jsonify(activities.home_activities(get_store()))


@bp.get("/notifications")
@signed_in
def notifications():
    """Replies to and mentions of the acting user."""
    return jsonify(activities.notification_activities(get_store(), acting_handle()))


@bp.get("/@<handle>")
def user_feed(handle):
    """One user's cruds."""
    return jsonify(activities.user_activities(get_store(), handle))


@bp.get("/search")
def search():
    """Cruds containing every word of ?term=."""
    return jsonify(activities.search_activities(get_store(), request.args.get("term")))


@bp.post("")
@signed_in
def create():
    """Post a crud as the acting user."""
    return jsonify(activities.create_activity(get_store(), acting_handle(), json_body()))


@bp.get("/<uuid:activity_uuid>")
def show(activity_uuid):
    """One crud with its replies."""
    return jsonify(activities.show_activity(get_store(), str(activity_uuid)))


@bp.post("/<uuid:activity_uuid>/reply")
@signed_in
def reply(activity_uuid):
    """Reply to a crud as the acting user."""
    body = json_body()
    return jsonify(activities.reply_to_activity(get_store(), acting_handle(), str(activity_uuid), body))
