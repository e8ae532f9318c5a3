"""Rollbar API stand-in: ``POST /api/1/item/`` (and ``/api/1/item_batch/``) stores the JSON payloads.

Replies like api.rollbar.com: ``{"err": 0, "result": {"id": null, "uuid": "..."}}``; in fault modes
``{"err": 1, "message": ...}`` with the fault's status. Point ``ROLLBAR_ENDPOINT`` at ``endpoint``.
"""

import json
import uuid

from tests.support.faulty_http import BadRequest, FaultyHTTPServer, Response
from tests.support.waiting import wait_for

API_PREFIX = "/api/1/"


class RollbarReceiver(FaultyHTTPServer):
    """Stores each item payload (``{"access_token": ..., "data": {...}}``) in arrival order."""

    name = "rollbar"

    def __init__(self, **kwargs):
        """Same arguments as ``FaultyHTTPServer``."""
        super().__init__(**kwargs)
        self._payloads = []
        self._item_headers = []

    @property
    def endpoint(self):
        """Base API URL ending in ``/api/1/``, for ``ROLLBAR_ENDPOINT`` / ``rollbar.init(endpoint=...)``."""
        return self.url + API_PREFIX

    def handle(self, request):
        """Store an item (or a batch of items) and answer with its uuid."""
        path = request.path.split("?")[0]
        if request.method != "POST" or path not in (API_PREFIX + "item/", API_PREFIX + "item_batch/"):
            return super().handle(request)
        try:
            document = json.loads(request.body)
        except ValueError as error:
            raise BadRequest(f"invalid JSON: {error}") from error
        payloads = document if isinstance(document, list) else [document]
        if not all(isinstance(p, dict) and isinstance(p.get("data"), dict) for p in payloads):
            return Response.json(422, {"err": 1, "message": "payload must have a 'data' object"})
        with self._lock:
            self._payloads.extend(payloads)
            self._item_headers.append(request.headers)
        uuids = [p["data"].get("uuid") or str(uuid.uuid4()) for p in payloads]
        result = {"id": None, "uuid": uuids[0]} if len(uuids) == 1 else [{"id": None, "uuid": u} for u in uuids]
        return Response.json(200, {"err": 0, "result": result})

    def fault_response(self, status):
        """Rollbar's error shape."""
        message = "rate limit exceeded" if status == 429 else "internal server error"
        return Response.json(status, {"err": 1, "message": message})

    def reset_data(self):
        """Forget stored items."""
        self._payloads.clear()
        self._item_headers.clear()

    # -- accessors -----------------------------------------------------------------------------

    def payloads(self):
        """Full payloads as posted: ``{"access_token": ..., "data": {...}}``."""
        with self._lock:
            return list(self._payloads)

    def items(self):
        """The ``data`` object of every stored item (``level``, ``body``, ``request``, ``custom``...)."""
        return [p["data"] for p in self.payloads()]

    @property
    def item_count(self):
        """How many items were stored."""
        with self._lock:
            return len(self._payloads)

    def headers(self):
        """Lower-cased headers of every accepted item POST (``x-rollbar-access-token``...)."""
        with self._lock:
            return list(self._item_headers)

    def wait_for_items(self, predicate=lambda item: True, count=1, timeout=10.0):
        """Wait until ``count`` items (``data`` objects) match ``predicate``; return them."""

        def matching():
            found = [item for item in self.items() if predicate(item)]
            return found if len(found) >= count else None

        return wait_for(matching, timeout, message=f"fewer than {count} matching Rollbar items at {self.url}")


def item_message(item):
    """The human text of an item: the message body, or ``Class: message`` of the raised exception."""
    body = item.get("body", {})
    if "message" in body:
        return body["message"].get("body")
    trace = body.get("trace") or (body.get("trace_chain") or [None])[0]
    if trace:
        exception = trace.get("exception", {})
        return f"{exception.get('class')}: {exception.get('message')}"
    return None
